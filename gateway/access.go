package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/infergate/infergate/auth"
	"github.com/infergate/infergate/gateway/quota"
	"github.com/infergate/infergate/gateway/tracing"
	"github.com/infergate/infergate/oip"
	"github.com/infergate/infergate/oip/rest"
	"github.com/valyala/fasthttp"
)

// Access control: who is calling (Options.Auth), whether they may do
// this to this model (their grants), whether their quotas and the
// model's let the request go now (quota.Limiter), and in what order
// tenants share a saturated revision (Route.Fair). A front door asks in
// that order, before the activator and the batcher; every refusal is an
// error its one writer answers in the protocol's form (401, 403, 429 with
// Retry-After; UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED).

// metadataAuthorization is the gRPC metadata key of the credential.
const metadataAuthorization = "authorization"

// accessLimits are the Limiter's inputs, from two sources: the tenants
// (UpdateAccess) and the routed models (SetModels).
type accessLimits struct {
	mu      sync.Mutex
	tenants []quota.TenantLimit
	models  []quota.ModelLimit
}

// authenticate returns the caller of a REST request from its
// Authorization header value: nil with no error when the gateway does not
// authenticate.
func (g *Gateway) authenticate(authorization []byte) (*auth.Principal, error) {
	if g.opts.Auth == nil {
		return nil, nil
	}
	return g.opts.Auth.Authenticate(authorization)
}

// principalKey keys a REST request's Principal in its user values, once
// serveREST has authenticated it before reading its body.
type principalKey struct{}

// restPrincipal returns the caller of a REST request: as serveREST found
// it, or from its Authorization header.
func (g *Gateway) restPrincipal(ctx *fasthttp.RequestCtx) (*auth.Principal, error) {
	if g.opts.Auth == nil {
		return nil, nil
	}
	if p, ok := ctx.UserValue(principalKey{}).(*auth.Principal); ok {
		return p, nil
	}
	return g.authenticate(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
}

// authenticateGRPC is authenticate for a gRPC call's metadata.
func (g *Gateway) authenticateGRPC(ctx context.Context) (*auth.Principal, error) {
	if g.opts.Auth == nil {
		return nil, nil
	}
	return g.opts.Auth.AuthenticateString(firstValue(ctx, metadataAuthorization))
}

// admit checks that p may do a on r's model and takes the request's
// place under the quotas; the caller releases the Ticket once the request
// is answered. p is nil when the gateway does not authenticate.
func (g *Gateway) admit(p *auth.Principal, r *route, a auth.Action) (quota.Ticket, error) {
	tenant := ""
	if p != nil {
		if err := p.Authorize(r.name, r.Labels, a); err != nil {
			return quota.Ticket{}, err
		}
		tenant = p.Tenant
	}
	return g.limiter.Admit(tenant, r.name)
}

// fairShare waits, when r is saturated, for r's fair queue to give the
// request a place (see Route.Fair), until deadline or the drain; the
// caller releases the Slot once the request is answered. It makes a
// context only for a request that must wait, and records the wait on tr
// as the queue stage.
// prio reads the request's OIP priority, which orders it among its
// tenant's waiting requests; it is read only for a request that waits.
func (g *Gateway) fairShare(ctx context.Context, p *auth.Principal, r *route, deadline time.Time, tr *tracing.Request, prio priorityOf) (quota.Slot, error) {
	if r.Fair == nil {
		return quota.Slot{}, nil
	}
	if s, ok := r.Fair.TryAcquire(); ok {
		return s, nil
	}
	tr.Begin(tracing.StageQueue)
	defer tr.End(tracing.StageQueue)
	tenant, weight := "", 1
	if p != nil {
		tenant, weight = p.Tenant, p.TenantConfig().Weight
	}
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	return r.Fair.Acquire(ctx, tenant, weight, prio.priority())
}

// priorityOf is where a request's OIP "priority" parameter is: a REST
// request's body (JSON, or a JSON header before binary tensors), or an
// encoded ModelInferRequest.
type priorityOf struct {
	rest  *fasthttp.Request
	proto []byte
}

func (p priorityOf) priority() uint64 {
	if p.rest == nil {
		return oip.PeekPriorityProto(p.proto)
	}
	body := p.rest.Body()
	jsonLen, _ := rest.HeaderLength(&p.rest.Header, len(body))
	return oip.PeekPriority(body, jsonLen)
}

// UpdateAccess swaps in the tenants, keys and grants requests are checked
// against (Options.Auth) and the tenants' quotas. Requests in flight keep
// their places. An error names entries left out (the rest applies).
func (g *Gateway) UpdateAccess(s auth.Snapshot) error {
	var err error
	if g.opts.Auth != nil {
		err = g.opts.Auth.Update(s)
	}
	tenants := make([]quota.TenantLimit, 0, len(s.Tenants))
	for _, t := range s.Tenants {
		tenants = append(tenants, quota.TenantLimit{Tenant: t.Name, Limit: quota.Limit{RatePerSecond: t.RatePerSecond, Burst: t.Burst, MaxInFlight: t.MaxInFlight}})
	}
	g.limits.mu.Lock()
	defer g.limits.mu.Unlock()
	old := g.limits.tenants
	g.limits.tenants = tenants
	if qerr := g.applyLimitsLocked(); qerr != nil {
		// The last good list stays: a bad one must not hold back the
		// models' limits, which SetModels applies with it.
		g.limits.tenants = old
		return errors.Join(err, fmt.Errorf("gateway: tenants' quotas not changed: %w", qerr))
	}
	return err
}

// setModelLimits takes the routed models' quotas (each model's first
// revision with one).
func (g *Gateway) setModelLimits(models []quota.ModelLimit) error {
	g.limits.mu.Lock()
	defer g.limits.mu.Unlock()
	g.limits.models = models
	return g.applyLimitsLocked()
}

func (g *Gateway) applyLimitsLocked() error {
	return g.limiter.Update(quota.Limits{Tenants: g.limits.tenants, Models: g.limits.models})
}

// errNoCredential is the answer to a request with no credential where one
// is required.
var _ = oip.KindUnauthenticated
