package gateway

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infergate/infergate/autoscaler/activator"
	"github.com/infergate/infergate/gateway/quota"
	"github.com/infergate/infergate/gateway/tracing"
	"github.com/infergate/infergate/oip"
)

// activate waits, when the route has an activator, until the model may take
// the request (a replica is ready and has room) or parent ends, and returns
// the release to call once the request is answered. The error is in oip
// form. A wait is recorded on tr as the activator stage.
func (r *route) activate(parent context.Context, deadline time.Time, tr *tracing.Request) (release func(), err error) {
	if r.Activator == nil {
		return noRelease, nil
	}
	// The common case, a replica with room, needs no context: one is made
	// (with its timer) only for a request that must wait.
	if release, ok := r.Activator.TryAcquire(r.Revision); ok {
		return release, nil
	}
	ctx, cancel := context.WithDeadline(parent, deadline)
	defer cancel()
	tr.Begin(tracing.StageActivator)
	defer tr.End(tracing.StageActivator)
	return r.activateCtx(ctx)
}

// activateTraced is activate for a caller with a context of its own.
func (r *route) activateTraced(ctx context.Context, tr *tracing.Request) (release func(), err error) {
	if r.Activator == nil {
		return noRelease, nil
	}
	if release, ok := r.Activator.TryAcquire(r.Revision); ok {
		return release, nil
	}
	tr.Begin(tracing.StageActivator)
	defer tr.End(tracing.StageActivator)
	return r.activateCtx(ctx)
}

func noRelease() {}

func (r *route) activateCtx(ctx context.Context) (release func(), err error) {
	if r.Activator == nil {
		return noRelease, nil
	}
	release, err = r.Activator.Acquire(ctx, r.Revision)
	if err != nil {
		return nil, activationError(r.Model, err)
	}
	return release, nil
}

// maxUnreachableTries bounds the tries of a request that found no live
// replica where the activator counted one.
const maxUnreachableTries = 3

// unreachableWait bounds how long such a request waits for the owner of
// the replicas to report a change before it asks the activator again.
const unreachableWait = 250 * time.Millisecond

// awaitReplica reports whether a request whose try number try failed with
// err should be tried again: it may be (see runtimes.Pool.MayRetry: every
// replica it tried refused the connection, or broke it before answering an
// idempotent request, or the pool had none: a replica that died, which its
// owner has not reported yet), the revision has an activator, and tries
// and deadline allow, and drain is not closed (the drain deadline).
// Before saying so it waits for the activator's next change of the
// revision's capacity (the owner reporting the loss), at most
// unreachableWait: the next activation then holds the request until a
// replica is ready again, instead of failing it as the README promises
// only for requests in flight on the dead process.
func (r *route) awaitReplica(err error, try int, deadline time.Time, drain <-chan struct{}) bool {
	if r.Activator == nil || try >= maxUnreachableTries || !r.Pool.MayRetry(err) {
		return false
	}
	wait := time.Until(deadline)
	if wait <= 0 {
		return false
	}
	t := time.NewTimer(min(wait, unreachableWait))
	defer t.Stop()
	select {
	case <-r.Activator.Changed(r.Revision):
	case <-t.C:
	case <-drain:
		return false
	}
	return time.Now().Before(deadline)
}

// metadata returns the revision's model metadata: what its runtime said
// last, or, before any runtime answered, the answer of a replica, woken
// through the activator like an infer request (a client that reads the
// metadata first, as Triton's clients and infergate bench do, can start
// against a model at zero) and waited for within ctx's deadline.
func (r *route) metadata(ctx context.Context) (*oip.ModelMetadata, error) {
	if md := r.Pool.CachedMetadata(); md != nil {
		return md, nil
	}
	release, err := r.activateCtx(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	return r.Pool.Metadata(ctx)
}

// activationError maps the activator's errors to the protocol's kinds.
func activationError(model string, err error) error {
	switch {
	case errors.Is(err, activator.ErrQueueFull):
		return &oip.Error{Kind: oip.KindUnavailable, Msg: "model \"" + model + "\": too many requests waiting for a replica; retry later", Err: err}
	case errors.Is(err, activator.ErrDeadline):
		return &oip.Error{Kind: oip.KindDeadlineExceeded, Msg: "model \"" + model + "\": no replica became ready before the request's deadline", Err: err}
	case errors.Is(err, activator.ErrFailed):
		return &oip.Error{Kind: oip.KindUnavailable, Msg: "model \"" + model + "\" failed to start", Err: err}
	}
	return err
}

// setRetryAfter tells a REST client held back by a full activator queue
// when to try again.
func setRetryAfter(ctx *fasthttp.RequestCtx, err error) {
	if d, ok := quota.RetryAfter(err); ok {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(quota.RetryAfterSeconds(d)))
	} else if errors.Is(err, activator.ErrQueueFull) {
		ctx.Response.Header.Set("Retry-After", "1")
	}
}
