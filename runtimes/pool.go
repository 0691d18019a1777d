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
	// Logger receives readiness changes (default slog.Default()).
	Logger *slog.Logger
}

// Replica is one runtime endpoint in a pool, with the readiness the pool's
// prober last saw and the calls in flight on it.
type Replica struct {
	Client   Client
	ready    atomic.Bool
	draining atomic.Bool
	inflight atomic.Int64
	idle     chan struct{} // signalled when inflight drops to 0 while draining
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
// readiness, caches the model's metadata from the runtime, and picks a ready
// replica per call, round robin. (Load-aware choice and breakers come with
// the router.) A Pool is safe for concurrent use.
type Pool struct {
	opts     PoolOptions
	replicas atomic.Pointer[[]*Replica] // copy-on-write under mu
	mu       sync.Mutex
	next     atomic.Uint32
	md       atomic.Pointer[oip.ModelMetadata]
	mdMu     sync.Mutex // serializes metadata fetches
}

// NewPool returns a pool over clients, which may be empty when replicas are
// added later (a supervisor's, or none while scaled to zero). It starts no
// goroutine; call Run to probe readiness.
func NewPool(opts PoolOptions, clients []Client) (*Pool, error) {
	if opts.Model == "" {
		return nil, errors.New("runtimes: PoolOptions.Model is empty")
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = time.Second
	}
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	p := &Pool{opts: opts}
	rs := make([]*Replica, 0, len(clients))
	for _, c := range clients {
		rs = append(rs, newReplica(c))
	}
	p.replicas.Store(&rs)
	return p, nil
}

func newReplica(c Client) *Replica { return &Replica{Client: c, idle: make(chan struct{}, 1)} }

// Add puts a replica for c in the pool, not ready until a probe or SetReady
// says so, and returns it.
func (p *Pool) Add(c Client) *Replica {
	r := newReplica(c)
	p.mu.Lock()
	defer p.mu.Unlock()
	old := *p.replicas.Load()
	rs := append(append(make([]*Replica, 0, len(old)+1), old...), r)
	p.replicas.Store(&rs)
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
	old := *p.replicas.Load()
	rs := make([]*Replica, 0, len(old))
	for _, x := range old {
		if x != r {
			rs = append(rs, x)
		}
	}
	p.replicas.Store(&rs)
	return err
}

// Model returns the model's name at the runtimes.
func (p *Pool) Model() string { return p.opts.Model }

// Replicas returns the pool's replicas now; the slice must not be modified.
func (p *Pool) Replicas() []*Replica { return *p.replicas.Load() }

// Ready reports whether any replica has the model ready.
func (p *Pool) Ready() bool {
	for _, r := range p.Replicas() {
		if r.ready.Load() {
			return true
		}
	}
	return false
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
			p.opts.Logger.Warn("replica not ready", "model", p.opts.Model, "replica", addrOf(r.Client), "err", err)
		}
	}
}

func (p *Pool) refreshMetadata(ctx context.Context, c Client) {
	mctx, cancel := context.WithTimeout(ctx, p.opts.ProbeTimeout)
	defer cancel()
	md, err := c.ModelMetadata(mctx, p.opts.Model, p.opts.Version)
	if err != nil {
		p.opts.Logger.Warn("model metadata", "model", p.opts.Model, "err", err)
		return
	}
	p.md.Store(md)
}

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

// Do calls fn with a ready replica's client. When fn fails because the
// replica could not be reached (the request was never sent), the replica is
// marked not ready and the next one is tried, each at most once. With no
// ready replica Do returns an unavailable error naming the model.
func (p *Pool) Do(ctx context.Context, fn func(Client) error) error {
	rs := p.Replicas()
	n := len(rs)
	tried := false
	var last error
	start := 0
	if n > 0 {
		start = int(p.next.Add(1)) % n
	}
	for i := 0; i < n; i++ {
		r := rs[(start+i)%n]
		if !r.ready.Load() || r.draining.Load() {
			continue
		}
		r.inflight.Add(1)
		if r.draining.Load() { // Remove began between the checks
			r.done()
			continue
		}
		tried = true
		err := fn(r.Client)
		r.done()
		if err == nil || !errors.Is(err, ErrUnreachable) {
			return err
		}
		r.ready.Store(false)
		last = err
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if tried {
		return &oip.Error{Kind: oip.KindUnavailable, Msg: fmt.Sprintf("model %q: no replica could be reached", p.opts.Model), Err: last}
	}
	return &oip.Error{Kind: oip.KindUnavailable, Msg: fmt.Sprintf("model %q has no ready replica", p.opts.Model)}
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
