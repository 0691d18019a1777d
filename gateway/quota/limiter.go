package quota

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Limit is a token bucket and a cap on requests in flight. Zero fields
// mean no bound.
type Limit struct {
	// RatePerSecond is the bucket's refill rate, in requests per second.
	RatePerSecond float64
	// Burst is how many requests the bucket lets go at once after a
	// quiet spell; 0 means max(1, ceil(RatePerSecond)). It needs a rate.
	Burst int
	// MaxInFlight caps the requests admitted and not yet released.
	MaxInFlight int
}

// TenantLimit bounds one tenant's requests across all models.
type TenantLimit struct {
	Tenant string
	Limit
}

// ModelLimit bounds one model's requests across all tenants.
type ModelLimit struct {
	Model string
	Limit
}

// TenantModelLimit bounds one tenant's requests to one model.
type TenantModelLimit struct {
	Tenant, Model string
	Limit
}

// Limits is a Limiter's whole configuration. A tenant or model that is
// not named has no limit of its own (and a tenant not named in Tenants is
// labelled "" in the metrics, which keeps their cardinality to the
// configured tenants: list every tenant, with a zero Limit if need be).
type Limits struct {
	Tenants      []TenantLimit
	Models       []ModelLimit
	TenantModels []TenantModelLimit
}

// LimiterOptions configures a Limiter. Zero fields take the documented
// defaults.
type LimiterOptions struct {
	// Now is the clock the token buckets read (default time.Now). It is
	// read only for requests that meet a rate limit.
	Now func() time.Time
	// ConcurrencyRetryAfter is the Retry-After hint of a request refused
	// by a cap on requests in flight, which no clock can predict
	// (default 1s).
	ConcurrencyRetryAfter time.Duration
	// Metrics receives the refusal counts (default: metrics registered
	// nowhere).
	Metrics *Metrics
}

// Limiter admits or refuses requests by tenant and model: token buckets
// (requests per second with a burst) and caps on requests in flight, per
// tenant across all models, per model across all tenants, and per (tenant,
// model). It never waits: a refusal comes at once with the time to wait
// (see RefusedError). Its methods are safe for concurrent use; it starts no
// goroutine.
type Limiter struct {
	opts  LimiterOptions
	epoch time.Time // the buckets count nanoseconds from here

	snap atomic.Pointer[snapshot]
	mu   sync.Mutex // serializes Update
}

// snapshot is one configuration, immutable once stored. Its states are
// shared with the snapshots before and after it for the names they have
// in common, so that a swap keeps the buckets' levels and the counts of
// requests in flight.
type snapshot struct {
	tenants map[string]tenantEntry
	models  map[string]entry
}

// entry is one limit with the state it applies to.
type entry struct {
	lim limit
	st  *state
}

// tenantEntry is a tenant's limit and its per-model limits (nil if none).
type tenantEntry struct {
	entry
	models map[string]entry
}

// limit is a Limit in the units of the hot path.
type limit struct {
	interval    int64 // ns between requests at the rate; 0: no rate limit
	tolerance   int64 // (burst-1) * interval: how far ahead the bucket may run
	maxInFlight int64 // 0: no cap
	rate        float64
}

// state is what a limit counts. The bucket is a GCRA (generic cell rate
// algorithm) in one word: tat is the theoretical arrival time, in ns from
// the Limiter's epoch, of the next request at the steady rate. A request
// at now may go if max(tat, now) - now <= tolerance, and moves tat by one
// interval; giving the token back moves it back. That makes admission a
// compare-and-swap, with no lock, and gives the exact wait of a refused
// request.
type state struct {
	tat      atomic.Int64
	inFlight atomic.Int64
}

// NewLimiter returns a Limiter with no limits; Update sets them.
func NewLimiter(opts LimiterOptions) (*Limiter, error) {
	if opts.ConcurrencyRetryAfter < 0 {
		return nil, fmt.Errorf("quota: LimiterOptions.ConcurrencyRetryAfter %s is negative", opts.ConcurrencyRetryAfter)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ConcurrencyRetryAfter == 0 {
		opts.ConcurrencyRetryAfter = time.Second
	}
	if opts.Metrics == nil {
		opts.Metrics = unregistered()
	}
	l := &Limiter{opts: opts, epoch: opts.Now()}
	l.snap.Store(&snapshot{})
	return l, nil
}

// Update replaces the limits with lim, at once for requests admitted
// after it returns. Requests in flight stay counted against the limits of
// their tenant and model, so a lowered cap refuses new requests until
// enough of them are released; a bucket keeps its level across a change
// of rate. A name that Update drops loses its state, and one added later
// starts afresh. Update validates lim whole, and on error changes nothing;
// the error names the entry and the field.
func (l *Limiter) Update(lim Limits) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.snap.Load()
	next := &snapshot{
		tenants: make(map[string]tenantEntry, len(lim.Tenants)),
		models:  make(map[string]entry, len(lim.Models)),
	}
	for i, t := range lim.Tenants {
		what := fmt.Sprintf("Tenants[%d] (%q)", i, t.Tenant)
		if t.Tenant == "" {
			return fmt.Errorf("quota: %s: Tenant is empty", what)
		}
		if _, dup := next.tenants[t.Tenant]; dup {
			return fmt.Errorf("quota: %s: tenant named twice", what)
		}
		e, err := l.entry(what, t.Limit, old.tenants[t.Tenant].st)
		if err != nil {
			return err
		}
		next.tenants[t.Tenant] = tenantEntry{entry: e}
	}
	for i, m := range lim.Models {
		what := fmt.Sprintf("Models[%d] (%q)", i, m.Model)
		if m.Model == "" {
			return fmt.Errorf("quota: %s: Model is empty", what)
		}
		if _, dup := next.models[m.Model]; dup {
			return fmt.Errorf("quota: %s: model named twice", what)
		}
		e, err := l.entry(what, m.Limit, old.models[m.Model].st)
		if err != nil {
			return err
		}
		next.models[m.Model] = e
	}
	for i, tm := range lim.TenantModels {
		what := fmt.Sprintf("TenantModels[%d] (%q, %q)", i, tm.Tenant, tm.Model)
		switch {
		case tm.Tenant == "":
			return fmt.Errorf("quota: %s: Tenant is empty", what)
		case tm.Model == "":
			return fmt.Errorf("quota: %s: Model is empty", what)
		}
		te, ok := next.tenants[tm.Tenant]
		if !ok {
			// A per-model limit of a tenant with no limit of its own.
			te = tenantEntry{entry: entry{st: old.tenants[tm.Tenant].st}}
			if te.st == nil {
				te.st = new(state)
			}
		}
		if _, dup := te.models[tm.Model]; dup {
			return fmt.Errorf("quota: %s: tenant and model named twice", what)
		}
		e, err := l.entry(what, tm.Limit, old.tenants[tm.Tenant].models[tm.Model].st)
		if err != nil {
			return err
		}
		if te.models == nil {
			te.models = make(map[string]entry)
		}
		te.models[tm.Model] = e
		next.tenants[tm.Tenant] = te
	}
	l.snap.Store(next)
	return nil
}

// entry validates lim and pairs it with st, or new state if st is nil.
func (l *Limiter) entry(what string, lim Limit, st *state) (entry, error) {
	switch {
	case math.IsNaN(lim.RatePerSecond) || math.IsInf(lim.RatePerSecond, 0) || lim.RatePerSecond < 0:
		return entry{}, fmt.Errorf("quota: %s: RatePerSecond %v: want a finite number >= 0 (0: no bound)", what, lim.RatePerSecond)
	case lim.Burst < 0:
		return entry{}, fmt.Errorf("quota: %s: Burst %d is negative", what, lim.Burst)
	case lim.Burst > 0 && lim.RatePerSecond == 0:
		return entry{}, fmt.Errorf("quota: %s: Burst %d without a RatePerSecond", what, lim.Burst)
	case lim.MaxInFlight < 0:
		return entry{}, fmt.Errorf("quota: %s: MaxInFlight %d is negative", what, lim.MaxInFlight)
	}
	var c limit
	c.maxInFlight = int64(lim.MaxInFlight)
	if r := lim.RatePerSecond; r > 0 {
		burst := lim.Burst
		if burst == 0 {
			burst = int(min(math.Max(1, math.Ceil(r)), math.MaxInt32))
		}
		// A rate under one per 292 years is no rate at all; the interval
		// saturates rather than overflows.
		iv := min(float64(time.Second)/r, float64(math.MaxInt64/4))
		c.interval = max(int64(iv), 1)
		c.tolerance = int64(min(float64(burst-1)*float64(c.interval), float64(math.MaxInt64/4)))
		c.rate = r
	}
	if st == nil {
		st = new(state)
	}
	return entry{lim: c, st: st}, nil
}

// Ticket is one admitted request's hold on its limits. Release it exactly
// once, when the request is done; the zero Ticket's Release does nothing.
// A Ticket is a value, so admission allocates nothing; copying it and
// releasing both copies releases twice, which is a bug.
type Ticket struct {
	tenant, model, pair *state
}

// Release gives back the ticket's places in flight.
func (t Ticket) Release() {
	if t.tenant != nil {
		t.tenant.inFlight.Add(-1)
	}
	if t.model != nil {
		t.model.inFlight.Add(-1)
	}
	if t.pair != nil {
		t.pair.inFlight.Add(-1)
	}
}

// Admit admits a request of tenant for model against every limit that
// applies, or refuses it with a *RefusedError (oip.KindResourceExhausted,
// with RetryAfter). Admitted, it holds a place in flight under each of
// them until the Ticket is released. Caps on requests in flight are
// checked before buckets, so a request refused for concurrency takes no
// token, and a refused request gives back what it took.
//
// tenant is the authenticated tenant's name ("" when the gateway has no
// authentication) and model the routed model's: model labels the refusal
// counter as given, so it must not come from an unrouted request.
//
// Admit allocates nothing when it admits; it reads the clock only when a
// rate limit applies.
func (l *Limiter) Admit(tenant, model string) (Ticket, error) {
	return l.admit(tenant, model, time.Time{})
}

// AdmitAt is Admit at the given time, for tests and simulations. Times
// that run backwards make the buckets stricter, never looser.
func (l *Limiter) AdmitAt(tenant, model string, now time.Time) (Ticket, error) {
	if now.IsZero() {
		now = l.epoch // zero would mean "read the clock"
	}
	return l.admit(tenant, model, now)
}

// admit is Admit; a zero now means read the clock if a bucket needs it.
func (l *Limiter) admit(tenant, model string, now time.Time) (Ticket, error) {
	s := l.snap.Load()
	var es [numScopes]entry // by Scope; a nil st: no such limit
	te, knownTenant := s.tenants[tenant]
	es[ScopeTenant] = te.entry
	es[ScopeModel] = s.models[model]
	if te.models != nil {
		es[ScopeTenantModel] = te.models[model]
	}

	// Places in flight: taken under every limit found, capped or not, so
	// that a cap set by a later Update sees the requests already in
	// flight.
	for i := range es {
		e := &es[i]
		if e.st == nil {
			continue
		}
		if n := e.st.inFlight.Add(1); e.lim.maxInFlight > 0 && n > e.lim.maxInFlight {
			release(es[:i+1])
			return Ticket{}, l.refuse(tenant, model, knownTenant, Scope(i), ReasonConcurrency, float64(e.lim.maxInFlight), l.opts.ConcurrencyRetryAfter)
		}
	}

	var ns int64
	clocked := false
	for i := range es {
		e := &es[i]
		if e.st == nil || e.lim.interval == 0 {
			continue
		}
		if !clocked {
			if now.IsZero() {
				now = l.opts.Now()
			}
			ns, clocked = int64(now.Sub(l.epoch)), true
		}
		if wait, ok := e.take(ns); !ok {
			for j := range i {
				if p := &es[j]; p.st != nil && p.lim.interval != 0 {
					p.st.tat.Add(-p.lim.interval)
				}
			}
			release(es[:])
			return Ticket{}, l.refuse(tenant, model, knownTenant, Scope(i), ReasonRate, e.lim.rate, time.Duration(wait))
		}
	}
	return Ticket{tenant: es[ScopeTenant].st, model: es[ScopeModel].st, pair: es[ScopeTenantModel].st}, nil
}

// take takes a token from e's bucket at now (ns from the epoch), or
// returns how long until one is there.
func (e *entry) take(now int64) (wait int64, ok bool) {
	for {
		old := e.st.tat.Load()
		tat := max(old, now)
		if ahead := tat - now; ahead > e.lim.tolerance {
			return ahead - e.lim.tolerance, false
		}
		if e.st.tat.CompareAndSwap(old, tat+e.lim.interval) {
			return 0, true
		}
	}
}

// release gives back the places in flight taken under es.
func release(es []entry) {
	for i := range es {
		if es[i].st != nil {
			es[i].st.inFlight.Add(-1)
		}
	}
}

// refuse counts a refusal and returns its error.
func (l *Limiter) refuse(tenant, model string, knownTenant bool, s Scope, r Reason, lim float64, after time.Duration) error {
	label := tenant
	if !knownTenant {
		label = ""
	}
	l.opts.Metrics.refusal(label, model, s, r)
	return &RefusedError{Reason: r, Scope: s, Tenant: tenant, Model: model, Limit: lim, After: after}
}

// InFlight returns the requests in flight counted against tenant's limit
// (across models), model's and the pair's; -1 for a limit not configured.
// It is for tests and debugging.
func (l *Limiter) InFlight(tenant, model string) (t, m, tm int64) {
	s := l.snap.Load()
	get := func(e entry) int64 {
		if e.st == nil {
			return -1
		}
		return e.st.inFlight.Load()
	}
	te := s.tenants[tenant]
	return get(te.entry), get(s.models[model]), get(te.models[model])
}
