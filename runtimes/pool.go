package runtimes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infergate/infergate/oip"
)

// PoolOptions configures a Pool. Zero fields take the documented defaults.
type PoolOptions struct {
	// Model and Version name the model at the runtimes. Model is required.
	Model   string
	Version string
	// ProbeInterval is how often Run asks each replica whether the model is
	// ready (default 1s).
	ProbeInterval time.Duration
	// ProbeTimeout bounds one probe (default 1s).
	ProbeTimeout time.Duration
	// Logger receives readiness changes and ejections (default
	// slog.Default()).
	Logger *slog.Logger

	// BreakerFailures is the run of consecutive failures that opens a
	// replica's circuit breaker (default 5; negative: no breaker).
	// Failures are 5xx-class: unavailable, unreachable, internal, deadline
	// exceeded. Client errors (invalid argument, not found, too large,
	// unimplemented, and any runtime answer with a 4xx status or a gRPC
	// code that blames the request) count as successes; canceled, resource
	// exhausted and the HTTP statuses 408 and 429 count as neither. While
	// no ready replica is healthy, calls go to the ready ones whatever
	// their breakers say (panic routing, panic.go).
	BreakerFailures int
	// BreakerOpenTimeout is how long an open breaker rejects calls before
	// it half-opens (default 5s).
	BreakerOpenTimeout time.Duration
	// BreakerHalfOpenRequests is how many calls a half-open breaker lets
	// through at once; that many successes close it and one failure opens
	// it again (default 1).
	BreakerHalfOpenRequests int

	// EjectFailures is the run of consecutive failures, counted as for the
	// breaker, that ejects a replica (default 5; negative: no ejection).
	EjectFailures int
	// BaseEjectionTime is how long a first ejection lasts; the n-th lasts n
	// times as long, and each BaseEjectionTime a replica then spends back
	// in the pool takes one off n (default 30s).
	BaseEjectionTime time.Duration
	// MaxEjectionTime caps one ejection (default 300s, and at least
	// BaseEjectionTime).
	MaxEjectionTime time.Duration
	// MaxEjectionPercent bounds the share of the pool's replicas ejected at
	// once (default 50; above 100 means 100). Whatever it says, the last
	// replica able to take calls is never ejected.
	MaxEjectionPercent int

	// RetryBudgetPercent bounds the retries in flight to this percentage
	// of the pool's active calls (default 20; negative: 0, leaving only
	// MinRetryConcurrency).
	RetryBudgetPercent float64
	// MinRetryConcurrency is the number of retries in flight the budget
	// always allows, however few calls are active (default 3; negative:
	// 0). Both budget fields negative turn retries off.
	MinRetryConcurrency int
	// NonIdempotent says that running a call twice may do harm: Do then
	// retries only calls that never reached a runtime (ErrUnreachable).
	// By default a model is taken as idempotent, and unavailable answers
	// (503) and connections broken before an answer are retried too.
	NonIdempotent bool

	// Now is the clock for ejections and deadlines (default time.Now).
	// Breakers keep gobreaker's own clock, time.Now.
	Now func() time.Time
	// Seed, when not zero, makes the replica choice a deterministic
	// sequence for a sequential caller (tests). Zero uses the runtime's
	// per-thread random source.
	Seed uint64

	// HashBalanceFactor is c in DoKey's bounded load: a replica takes a
	// keyed call only while its calls in flight are below
	// ceil(c*(T+1)/m), T being the calls in flight on the m replicas able
	// to take calls (default 1.25; must be above 1, or NewPool fails).
	// Lower keeps load more even and moves more calls off their key's
	// replica under load; math.Inf(1) lifts the bound (plain consistent
	// hashing). See sticky.go.
	HashBalanceFactor float64
}

// setDefaults fills opts' zero fields with the documented defaults.
func (o *PoolOptions) setDefaults() {
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = time.Second
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.BreakerFailures == 0 {
		o.BreakerFailures = 5
	}
	if o.BreakerOpenTimeout <= 0 {
		o.BreakerOpenTimeout = 5 * time.Second
	}
	if o.BreakerHalfOpenRequests <= 0 {
		o.BreakerHalfOpenRequests = 1
	}
	if o.EjectFailures == 0 {
		o.EjectFailures = 5
	}
	if o.BaseEjectionTime <= 0 {
		o.BaseEjectionTime = 30 * time.Second
	}
	if o.MaxEjectionTime <= 0 {
		o.MaxEjectionTime = 300 * time.Second
	}
	o.MaxEjectionTime = max(o.MaxEjectionTime, o.BaseEjectionTime)
	switch {
	case o.MaxEjectionPercent <= 0:
		o.MaxEjectionPercent = 50
	case o.MaxEjectionPercent > 100:
		o.MaxEjectionPercent = 100
	}
	switch {
	case o.RetryBudgetPercent == 0:
		o.RetryBudgetPercent = 20
	case o.RetryBudgetPercent < 0:
		o.RetryBudgetPercent = 0
	}
	switch {
	case o.MinRetryConcurrency == 0:
		o.MinRetryConcurrency = 3
	case o.MinRetryConcurrency < 0:
		o.MinRetryConcurrency = 0
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HashBalanceFactor == 0 {
		o.HashBalanceFactor = 1.25
	}
}

// validate reports the first option, after defaults, that has no meaning.
func (o *PoolOptions) validate() error {
	if !(o.HashBalanceFactor > 1) { // NaN too
		return fmt.Errorf("runtimes: PoolOptions.HashBalanceFactor is %v, want above 1", o.HashBalanceFactor)
	}
	return nil
}

// Replica is one runtime endpoint in a pool, with the readiness the pool's
// prober last saw, the calls in flight on it, and its health as the pool's
// calls found it (breaker, ejection).
type Replica struct {
	Client Client

	// Read on every choice, written rarely.
	ready        atomic.Bool
	draining     atomic.Bool
	ejectedUntil atomic.Int64  // PoolOptions.Now UnixNano; 0 when not ejected
	brk          *breaker      // nil when breakers are off
	idle         chan struct{} // signalled when inflight drops to 0 while draining

	// Under Pool.ejectMu.
	ejections    int   // the multiplier of the next ejection time
	lastEjectEnd int64 // when the last ejection ended or ends (UnixNano)

	// Written by every call; kept off the line above.
	_        [64]byte
	inflight atomic.Int64
	calls    atomic.Uint64 // calls started, to break ties between equals
	fails    atomic.Int32  // consecutive failures, reset by a success
	ejectRun atomic.Int32  // the same, also reset by an ejection
}

// Ready reports whether the last probe or call found the model ready there.
func (r *Replica) Ready() bool { return r.ready.Load() }

// SetReady records readiness seen by someone else (a supervisor's probe).
func (r *Replica) SetReady(ok bool) { r.ready.Store(ok) }

// InFlight returns the number of calls in flight on the replica.
func (r *Replica) InFlight() int64 { return r.inflight.Load() }

func (r *Replica) done() {
	if r.inflight.Add(-1) == 0 && r.draining.Load() {
		select {
		case r.idle <- struct{}{}:
		default:
		}
	}
}

// Pool is the set of runtime replicas serving one model. It probes them for
// readiness, caches the model's metadata from the runtime, and chooses a
// replica per call: power of two choices on calls in flight, among replicas
// that are ready, not draining, not ejected as outliers and whose circuit
// breaker is not open (see balance.go, breaker.go, outlier.go), or for
// DoKey the replica a key hashes to, within a bounded load (sticky.go); a
// call that failed before the runtime could act is retried on another
// replica within a retry budget (retry.go). A Pool is safe for concurrent
// use.
type Pool struct {
	opts     PoolOptions
	set      atomic.Pointer[replicaSet] // copy-on-write under mu
	mu       sync.Mutex
	md       atomic.Pointer[oip.ModelMetadata]
	mdMu     sync.Mutex // serializes metadata fetches
	rng      rng
	now      func() time.Time
	ejectMu  sync.Mutex   // serializes ejection decisions
	retrying atomic.Int64 // retry attempts in flight
	inPanic  atomic.Bool  // the last choice was made in panic (panic.go)
	stats    struct {
		ejections, breakerOpens, retries, budgetExhausted, panicRouted atomic.Uint64
	}
}

// NewPool returns a pool over clients, which may be empty when replicas are
// added later (a supervisor's, or none while scaled to zero). It starts no
// goroutine; call Run to probe readiness.
func NewPool(opts PoolOptions, clients []Client) (*Pool, error) {
	if opts.Model == "" {
		return nil, errors.New("runtimes: PoolOptions.Model is empty")
	}
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	p := &Pool{opts: opts, now: opts.Now}
	if opts.Seed != 0 {
		p.rng.seeded = true
		p.rng.state.Store(opts.Seed)
	}
	rs := make([]*Replica, 0, len(clients))
	for _, c := range clients {
		rs = append(rs, p.newReplica(c))
	}
	p.publish(rs)
	return p, nil
}

func (p *Pool) newReplica(c Client) *Replica {
	r := &Replica{Client: c, idle: make(chan struct{}, 1)}
	if p.opts.BreakerFailures > 0 {
		r.brk = newBreaker(p.opts.Model+"@"+addrOf(c), &p.opts, func() {
			p.stats.breakerOpens.Add(1)
			p.opts.Logger.Warn("replica circuit breaker open", "model", p.opts.Model, "replica", addrOf(c))
		})
	}
	return r
}

// Add puts a replica for c in the pool, not ready until a probe or SetReady
// says so, and returns it.
func (p *Pool) Add(c Client) *Replica {
	r := p.newReplica(c)
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.Replicas()
	// Start level with the busiest, or ties would send the newcomer every
	// call of a quiet pool until it caught up.
	for _, x := range old {
		r.calls.Store(max(r.calls.Load(), x.calls.Load()))
	}
	rs := append(append(make([]*Replica, 0, len(old)+1), old...), r)
	p.publish(rs)
	return r
}

// Remove drains r: it takes no new call at once, and Remove waits until
// its calls in flight finish or ctx is done, then takes it out of the pool
// and returns ctx's error if the drain was cut short. The caller closes
// r.Client.
func (p *Pool) Remove(ctx context.Context, r *Replica) error {
	r.draining.Store(true)
	r.ready.Store(false)
	var err error
	for r.inflight.Load() > 0 {
		select {
		case <-r.idle:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err != nil {
			break
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.Replicas()
	rs := make([]*Replica, 0, len(old))
	for _, x := range old {
		if x != r {
			rs = append(rs, x)
		}
	}
	p.publish(rs)
	return err
}

// Model returns the model's name at the runtimes.
func (p *Pool) Model() string { return p.opts.Model }

// Replicas returns the pool's replicas now; the slice must not be modified.
func (p *Pool) Replicas() []*Replica { return p.set.Load().rs }

// Ready reports whether any replica has the model ready.
func (p *Pool) Ready() bool {
	for _, r := range p.Replicas() {
		if r.ready.Load() {
			return true
		}
	}
	return false
}

// ReadyCount returns how many replicas are ready.
func (p *Pool) ReadyCount() int {
	n := 0
	for _, r := range p.Replicas() {
		if r.ready.Load() {
			n++
		}
	}
	return n
}

// Run probes every replica each ProbeInterval until ctx is done, and always
// returns nil then. When a replica turns ready the pool refreshes its cached
// metadata, so a model that changed behind the runtime is seen again.
func (p *Pool) Run(ctx context.Context) error {
	t := time.NewTicker(p.opts.ProbeInterval)
	defer t.Stop()
	for {
		p.Probe(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Probe asks every replica once whether the model is ready.
func (p *Pool) Probe(ctx context.Context) {
	for _, r := range p.Replicas() {
		if r.draining.Load() {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, p.opts.ProbeTimeout)
		ok, err := r.Client.ModelReady(pctx, p.opts.Model, p.opts.Version)
		cancel()
		was := r.ready.Swap(ok && err == nil)
		switch {
		case ok && err == nil && !was:
			p.opts.Logger.Info("replica ready", "model", p.opts.Model, "replica", addrOf(r.Client))
			p.refreshMetadata(ctx, r.Client)
		case !(ok && err == nil) && was:
			p.opts.Logger.Warn("replica not ready", "model", p.opts.Model, "replica", addrOf(r.Client), "err", Detail(err))
		}
	}
}

func (p *Pool) refreshMetadata(ctx context.Context, c Client) {
	mctx, cancel := context.WithTimeout(ctx, p.opts.ProbeTimeout)
	defer cancel()
	md, err := c.ModelMetadata(mctx, p.opts.Model, p.opts.Version)
	if err != nil {
		p.opts.Logger.Warn("model metadata", "model", p.opts.Model, "replica", addrOf(c), "err", Detail(err))
		return
	}
	p.md.Store(md)
}

// CachedMetadata returns the model's metadata as a runtime last reported
// it, or nil when none has yet; it asks no runtime. The returned value
// must not be modified.
func (p *Pool) CachedMetadata() *oip.ModelMetadata { return p.md.Load() }

// Metadata returns the model's metadata as the runtime reported it, from the
// cache when present. The returned value must not be modified.
func (p *Pool) Metadata(ctx context.Context) (*oip.ModelMetadata, error) {
	if md := p.md.Load(); md != nil {
		return md, nil
	}
	p.mdMu.Lock()
	defer p.mdMu.Unlock()
	if md := p.md.Load(); md != nil {
		return md, nil
	}
	var last error
	err := p.Do(ctx, func(c Client) error {
		md, err := c.ModelMetadata(ctx, p.opts.Model, p.opts.Version)
		if err != nil {
			last = err
			return err
		}
		p.md.Store(md)
		return nil
	})
	if err != nil {
		if last != nil {
			return nil, last
		}
		return nil, err
	}
	return p.md.Load(), nil
}

// Do calls fn with the client of a replica chosen for the call, and
// returns fn's error. When fn fails in a way that running it again on
// another replica cannot harm (see retry.go), and the retry budget and ctx
// allow, Do calls fn again with another replica's client, each replica at
// most once; fn must therefore leave what it reuses (a request body) fit
// for another call. A replica that could not be reached is marked not
// ready. With no replica able to take the call, Do returns an unavailable
// error naming the model.
//
// Do reads ctx only to decide retries: fn itself carries the deadline to
// the runtime.
func (p *Pool) Do(ctx context.Context, fn func(Client) error) error {
	return p.do(ctx, p.Replicas(), ringWalk{}, fn)
}

// do is Do and DoKey over the replica set rs: w chooses each replica by
// the ring when it has one, else by power of two choices.
func (p *Pool) do(ctx context.Context, rs []*Replica, w ringWalk, fn func(Client) error) error {
	var (
		t     tried
		last  error
		retry bool // this attempt holds a place in the retry budget
	)
	for {
		r, done := p.take(rs, &t, w)
		if r == nil {
			if retry {
				p.releaseRetry()
			}
			break
		}
		if retry {
			p.stats.retries.Add(1)
		}
		err := p.call(rs, r, done, fn)
		if retry {
			p.releaseRetry()
			retry = false
		}
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrUnreachable) && r.ready.Swap(false) {
			// Errors name no address (they may reach a client): say here
			// which replica it was and what the transport said.
			p.opts.Logger.Warn("replica unreachable; not ready until a probe finds it ready",
				"model", p.opts.Model, "replica", addrOf(r.Client), "err", Detail(err))
		}
		if !p.retryable(r, err) {
			return err
		}
		last = err
		if !p.beforeDeadline(ctx) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return p.lastError(last, "and the deadline has passed")
		}
		if t.count() >= len(rs) {
			break
		}
		if !p.acquireRetry(rs) {
			return p.lastError(last, "and the retry budget is spent")
		}
		retry = true
	}
	if last != nil {
		return p.lastError(last, "")
	}
	return p.noReplicaError()
}

// take chooses a replica for a call, by w's ring when it has one, skipping
// those in t and adding the one it returns, counts the call in flight on
// it, and passes the breaker's first step. When no replica may take the
// call because none is healthy, it chooses in panic (panic.go). It returns
// nil when no replica may take the call.
func (p *Pool) take(rs []*Replica, t *tried, w ringWalk) (*Replica, func(error)) {
	mark := t.count()
	for range len(rs) {
		var i int
		if w.ring != nil {
			i = p.pickKey(rs, w, t, false)
		} else {
			i = p.pick(rs, t, false)
		}
		if i < 0 {
			break
		}
		t.add(i)
		r := rs[i]
		r.inflight.Add(1)
		r.calls.Add(1)
		if r.draining.Load() { // Remove began after the choice
			r.done()
			continue
		}
		if r.brk == nil {
			p.leftPanic()
			return r, nil
		}
		done, ok := r.brk.before()
		if !ok { // half-open and already probing, or open again
			r.done()
			continue
		}
		if done == nil { // closed: a healthy replica, not a probe
			p.leftPanic()
		}
		return r, done
	}
	if !p.panicking(rs) {
		return nil, nil
	}
	// The replicas this choice turned away may take the call in panic;
	// those tried by earlier attempts of the call may not.
	t.truncate(mark)
	return p.takePanic(rs, t, w)
}

// errAbandoned is the outcome a breaker gets for a call that ended without
// an answer (fn panicked): it counts neither way.
var errAbandoned = &oip.Error{Kind: oip.KindCanceled, Msg: "call abandoned"}

// call runs fn on r and records what its error says about r.
func (p *Pool) call(rs []*Replica, r *Replica, done func(error), fn func(Client) error) error {
	finished := false
	defer func() {
		if !finished { // fn panicked: free the replica and a half-open slot
			r.done()
			if done != nil {
				done(errAbandoned)
			}
		}
	}()
	err := fn(r.Client)
	finished = true
	r.done()
	p.observe(rs, r, done, err)
	return err
}

// observe records a call's outcome on r: its runs of failures (for the
// breaker and for ejection) and the breaker's second step.
func (p *Pool) observe(rs []*Replica, r *Replica, done func(error), err error) {
	o := classify(err)
	endedRun := false
	switch o {
	case outcomeOK:
		if r.fails.Load() != 0 {
			endedRun = r.fails.Swap(0) != 0
			r.ejectRun.Store(0)
		}
	case outcomeFailure:
		r.fails.Add(1)
		p.noteFailure(rs, r)
	}
	if r.brk != nil {
		r.brk.after(done, err, o, endedRun)
	}
}

// lastError is the error Do returns when it stops retrying after last:
// last itself when the runtime answered, or an unavailable error naming the
// model when no replica could be reached.
func (p *Pool) lastError(last error, why string) error {
	if !errors.Is(last, ErrUnreachable) {
		return last
	}
	msg := fmt.Sprintf("model %q: no replica could be reached", p.opts.Model)
	if why != "" {
		msg += " " + why
	}
	return &oip.Error{Kind: oip.KindUnavailable, Msg: msg, Err: last}
}

// noReplicaError says why no replica could take a call.
func (p *Pool) noReplicaError() error {
	for _, r := range p.Replicas() {
		if r.ready.Load() && !r.draining.Load() {
			return &oip.Error{Kind: oip.KindUnavailable, Msg: fmt.Sprintf("model %q: every ready replica's circuit breaker is open", p.opts.Model)}
		}
	}
	return &oip.Error{Kind: oip.KindUnavailable, Msg: fmt.Sprintf("model %q has no ready replica", p.opts.Model), Err: ErrNoReplica}
}

// PoolStats counts what the pool did to keep calls off sick replicas, for
// the gateway to export. Counters only grow; Ejected and BreakersOpen are
// the state when Stats was called.
type PoolStats struct {
	Ejections            uint64 // replicas ejected as outliers
	BreakerOpens         uint64 // circuit breakers opened (again after a failed half-open probe too)
	Retries              uint64 // retry attempts started on another replica
	RetryBudgetExhausted uint64 // retries the budget refused
	// PanicRouted counts calls sent in panic: to a replica whose breaker
	// was open or half-open, or that was ejected, because no ready replica
	// was healthy (see panic.go).
	PanicRouted  uint64
	Ejected      int // replicas ejected now
	BreakersOpen int // replicas whose breaker is open now
}

// Stats returns the pool's counters.
func (p *Pool) Stats() PoolStats {
	s := PoolStats{
		Ejections:            p.stats.ejections.Load(),
		BreakerOpens:         p.stats.breakerOpens.Load(),
		Retries:              p.stats.retries.Load(),
		RetryBudgetExhausted: p.stats.budgetExhausted.Load(),
		PanicRouted:          p.stats.panicRouted.Load(),
	}
	now := p.now().UnixNano()
	for _, r := range p.Replicas() {
		if r.ejected(now) {
			s.Ejected++
		}
		if r.brk != nil && r.brk.open() {
			s.BreakersOpen++
		}
	}
	return s
}

// Close closes every replica's client.
func (p *Pool) Close() error {
	var errs []error
	for _, r := range p.Replicas() {
		errs = append(errs, r.Client.Close())
	}
	return errors.Join(errs...)
}

func addrOf(c Client) string {
	if a, ok := c.(interface{ Addr() string }); ok {
		return a.Addr()
	}
	return "?"
}
