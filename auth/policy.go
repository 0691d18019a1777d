package auth

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/infergate/infergate/oip"
)

// Principal is an authenticated caller: a tenant and the credential it
// showed. The Authenticator owns it and may hand the same *Principal to
// many requests at once; callers must not modify it. It stays usable
// after an Update but keeps answering with the grants it was made with.
type Principal struct {
	// Tenant is the tenant's name.
	Tenant string
	// ID names the credential: the API key's id, or "jwt:" and the
	// token's subject. It is public (logs and metrics may carry it).
	ID string

	t *tenantPolicy
}

// tenantPolicy is a tenant's grants compiled for quick reading.
type tenantPolicy struct {
	tenant Tenant
	// global are the global actions (admin, command, metrics) granted.
	global Action
	// every are the model actions granted on every model ("*").
	every Action
	// byModel are the model actions granted by model name.
	byModel map[string]Action
	// selectors grant model actions to the models whose labels match.
	selectors []selectorGrant
}

type selectorGrant struct {
	actions Action
	keys    []string
	values  []string
}

func (s *selectorGrant) matches(labels map[string]string) bool {
	for i, k := range s.keys {
		if v, ok := labels[k]; !ok || v != s.values[i] {
			return false
		}
	}
	return true
}

// TenantConfig returns the tenant as the snapshot gave it: its weight and
// quotas.
func (p *Principal) TenantConfig() Tenant { return p.t.tenant }

// Allowed reports whether p may do every action of a on the model named
// model whose labels are labels. ActionAdmin, ActionCommand and
// ActionMetrics are global: model and labels do not matter to them. An
// empty a is never allowed. Allowed allocates nothing.
func (p *Principal) Allowed(model string, labels map[string]string, a Action) bool {
	if p == nil || p.t == nil || a == 0 {
		return false
	}
	t := p.t
	have := t.global | t.every
	if have&a == a {
		return true
	}
	if a&^have&modelActions == 0 {
		// What is missing is global (or no action at all).
		return false
	}
	have |= t.byModel[model]
	if have&a == a {
		return true
	}
	for i := range t.selectors {
		s := &t.selectors[i]
		if s.actions&a&^have != 0 && s.matches(labels) {
			if have |= s.actions; have&a == a {
				return true
			}
		}
	}
	return false
}

// Authorize is Allowed returning an error: nil when allowed, else an
// *oip.Error of kind oip.KindPermissionDenied (403, PERMISSION_DENIED)
// naming the tenant, the action and, for model actions, the model.
func (p *Principal) Authorize(model string, labels map[string]string, a Action) error {
	if p.Allowed(model, labels, a) {
		return nil
	}
	tenant := ""
	if p != nil {
		tenant = p.Tenant
	}
	if a&modelActions == 0 {
		return oip.Errorf(oip.KindPermissionDenied, "tenant %q is not granted %s", tenant, a)
	}
	return oip.Errorf(oip.KindPermissionDenied, "tenant %q is not granted %s on model %q", tenant, a, model)
}

// compiled is a Snapshot made ready for the request path.
type compiled struct {
	keys    map[string]*keyEntry
	tenants map[string]*tenantPolicy
}

// keyEntry is a stored Key with the Principal it authenticates as.
type keyEntry struct {
	hash      [32]byte
	expires   time.Time
	revoked   time.Time
	principal Principal
}

// Validate reports what in s cannot be honoured: a tenant whose name is
// not a DNS label or appears twice, a key or grant naming a tenant s does
// not hold, two keys with one id, a grant of no known action, or of model
// actions on no model. The control plane's store should refuse such a
// snapshot; Authenticator.Update applies one anyway, leaving those entries
// out, so that a revocation is never held back by an unrelated mistake.
func (s *Snapshot) Validate() error {
	_, err := compile(s)
	return err
}

// compile builds the request path's view of s, leaving out (and
// reporting) the entries Validate describes.
func compile(s *Snapshot) (*compiled, error) {
	var errs []error
	c := &compiled{
		keys:    make(map[string]*keyEntry, len(s.Keys)),
		tenants: make(map[string]*tenantPolicy, len(s.Tenants)),
	}
	for _, t := range s.Tenants {
		if err := checkName(t.Name); err != nil {
			errs = append(errs, fmt.Errorf("tenant: %w", err))
			continue
		}
		if _, dup := c.tenants[t.Name]; dup {
			errs = append(errs, fmt.Errorf("tenant %q: listed twice", t.Name))
			continue
		}
		c.tenants[t.Name] = &tenantPolicy{tenant: t, byModel: map[string]Action{}}
	}
	dupKeys := map[string]bool{}
	for _, k := range s.Keys {
		t, ok := c.tenants[k.Tenant]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("key %s: unknown tenant %q", k.ID, k.Tenant))
			continue
		case len(k.ID) != keyIDLen:
			errs = append(errs, fmt.Errorf("key %q: id is not %d hex digits", k.ID, keyIDLen))
			continue
		case dupKeys[k.ID]:
			continue
		}
		if _, dup := c.keys[k.ID]; dup {
			// Neither copy is trusted: which one is meant is unknown.
			errs = append(errs, fmt.Errorf("key %s: listed twice; both left out", k.ID))
			delete(c.keys, k.ID)
			dupKeys[k.ID] = true
			continue
		}
		c.keys[k.ID] = &keyEntry{
			hash:      k.Hash,
			expires:   k.Expires,
			revoked:   k.Revoked,
			principal: Principal{Tenant: k.Tenant, ID: k.ID, t: t},
		}
	}
	for _, g := range s.Grants {
		t, ok := c.tenants[g.Tenant]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("grant %d: unknown tenant %q", g.ID, g.Tenant))
			continue
		case g.Actions&allActions == 0:
			errs = append(errs, fmt.Errorf("grant %d: no known action in %s", g.ID, g.Actions))
			continue
		case g.Actions&^allActions != 0:
			errs = append(errs, fmt.Errorf("grant %d: unknown actions %s left out", g.ID, g.Actions&^allActions))
		}
		t.global |= g.Actions & globalActions
		ma := g.Actions & modelActions
		if ma == 0 {
			continue
		}
		if len(g.Models) == 0 && len(g.Selector) == 0 {
			errs = append(errs, fmt.Errorf("grant %d: %s on no model (name models, \"*\" for all, or a selector)", g.ID, ma))
			continue
		}
		for _, m := range g.Models {
			if m == "*" {
				t.every |= ma
			} else {
				t.byModel[m] |= ma
			}
		}
		if len(g.Selector) > 0 {
			sg := selectorGrant{actions: ma}
			for k := range g.Selector {
				sg.keys = append(sg.keys, k)
			}
			slices.Sort(sg.keys)
			for _, k := range sg.keys {
				sg.values = append(sg.values, g.Selector[k])
			}
			t.selectors = append(t.selectors, sg)
		}
	}
	return c, errors.Join(errs...)
}
