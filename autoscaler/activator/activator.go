package activator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The errors Acquire returns, for the gateway to map to protocol errors
// (see the package documentation). Returned errors wrap them; test with
// errors.Is.
var (
	// ErrQueueFull means the model already holds Options.MaxQueue requests.
	ErrQueueFull = errors.New("activator: queue full")
	// ErrDeadline means the request's deadline passed while it was held.
	ErrDeadline = errors.New("activator: deadline exceeded while waiting for a ready replica")
	// ErrFailed means a replica of the model failed to start; the error
	// also wraps the reason given to Fail.
	ErrFailed = errors.New("activator: replica failed to start")
)

// Options configures an Activator. Zero fields take the documented
// defaults.
type Options struct {
	// MaxQueue bounds the requests held per model (default 1000).
	MaxQueue int
	// ContainerConcurrency is how many requests one ready replica takes at
	// once; 0 means unlimited, so any ready replica admits everything.
	ContainerConcurrency int
	// FailureHold is how long after Fail new requests that would be held
	// fail at once with the reason instead (default 5s); a SetCapacity
	// with ready replicas or Reset ends it sooner. Negative means until
	// then.
	FailureHold time.Duration
	// Poke signals demand for a model to the autoscaler; it is called on
	// every hold, outside the activator's locks, and must not block (nil:
	// no signal).
	Poke func(model string)
	// Registerer receives the metrics (default: a private registry, so
	// nothing is registered globally).
	Registerer prometheus.Registerer
}

// Activator admits or holds requests per model. Its methods are safe for
// concurrent use; it starts no goroutine.
type Activator struct {
	opts    Options
	metrics *metrics

	models atomic.Pointer[map[string]*model] // copy on write, under mu
	mu     sync.Mutex
}

// New returns an Activator for opts.
func New(opts Options) (*Activator, error) {
	switch {
	case opts.MaxQueue < 0:
		return nil, fmt.Errorf("activator: Options.MaxQueue %d is negative", opts.MaxQueue)
	case opts.ContainerConcurrency < 0:
		return nil, fmt.Errorf("activator: Options.ContainerConcurrency %d is negative", opts.ContainerConcurrency)
	}
	if opts.MaxQueue == 0 {
		opts.MaxQueue = 1000
	}
	if opts.FailureHold == 0 {
		opts.FailureHold = 5 * time.Second
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("activator: metrics: %w", err)
	}
	a := &Activator{opts: opts, metrics: m}
	empty := map[string]*model{}
	a.models.Store(&empty)
	return a, nil
}

// model is one model's admission state; the fields under mu change
// together.
type model struct {
	name     string
	a        *Activator
	requests atomic.Uint64
	mm       modelMetrics

	mu          sync.Mutex
	cc          int // containerConcurrency; -1: Options.ContainerConcurrency
	ready       int
	inFlight    int
	held        int
	head, tail  *waiter
	changed     chan struct{} // closed at the next SetCapacity, Fail or Reset; nil until asked for
	failed      error         // wraps ErrFailed and the reason; nil when not failed
	failedUntil time.Time     // zero: until cleared
	coldStart   time.Time     // first hold with no ready replica; zero outside a cold start
}

// waiter is one held request, linked in its model's queue while queued.
type waiter struct {
	prev, next *waiter
	queued     bool
	at         time.Time
	ch         chan error // receives nil (admitted) or the failure, once
}

// lookup returns model's state, creating it on first use.
func (a *Activator) lookup(name string) *model {
	if m, ok := (*a.models.Load())[name]; ok {
		return m
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	old := *a.models.Load()
	if m, ok := old[name]; ok {
		return m
	}
	m := &model{name: name, a: a, mm: a.metrics.forModel(name), cc: -1}
	next := maps.Clone(old) // old is never nil: New stores an empty map
	next[name] = m
	a.models.Store(&next)
	return m
}

// hasCapacity reports whether one more request may go. Called with mu held.
func (m *model) hasCapacity() bool {
	cc := m.cc
	if cc < 0 {
		cc = m.a.opts.ContainerConcurrency
	}
	return m.ready > 0 && (cc == 0 || m.inFlight < m.ready*cc)
}

// SetContainerConcurrency sets how many requests one of model's replicas
// takes at once (0: no limit), overriding Options.ContainerConcurrency for
// that model; KServe's spec.predictor.containerConcurrency. Requests over
// the limit wait in the model's queue. A negative cc restores the default.
func (a *Activator) SetContainerConcurrency(name string, cc int) {
	m := a.lookup(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cc = max(cc, -1)
	m.admit() // a higher limit may make room for held requests
}

// Acquire admits a request for model, holding it while the model has no
// ready replica with spare capacity. On success the caller must call
// release exactly once when the request is done with its replica; release
// frees the slot for the next held request. A second call of the same
// release is a no-op only until the slot is acquired again, so it is a
// bug, not a habit.
//
// Acquire returns at once with an error wrapping ErrQueueFull when the
// model's queue is full, and with one wrapping ErrFailed while the model
// is failed (see Fail). A held request leaves the queue with an error
// wrapping ErrDeadline (and context.DeadlineExceeded) when ctx's deadline
// passes, with ctx.Err() when ctx is cancelled otherwise, and with an error
// wrapping ErrFailed when Fail is called for the model.
func (a *Activator) Acquire(ctx context.Context, name string) (release func(), err error) {
	m := a.lookup(name)
	m.mu.Lock()
	if m.hasCapacity() {
		return m.admitNow(), nil
	}
	return m.hold(ctx)
}

// TryAcquire admits a request for model only if a ready replica has room
// now, and never holds it: ok is false otherwise, and nothing is counted.
// It lets a caller that needs a context only for waiting (a deadline and a
// timer per request) make one only when Acquire must hold.
func (a *Activator) TryAcquire(name string) (release func(), ok bool) {
	m := a.lookup(name)
	m.mu.Lock()
	if m.hasCapacity() {
		return m.admitNow(), true
	}
	m.mu.Unlock()
	return nil, false
}

// admitNow takes a slot for a request that found room. Called with mu
// held; it unlocks.
func (m *model) admitNow() func() {
	m.inFlight++
	m.mu.Unlock()
	m.requests.Add(1)
	return m.ticket()
}

// hold queues a request and waits. Called with m.mu held; it unlocks.
func (m *model) hold(ctx context.Context) (func(), error) {
	now := time.Now()
	if m.failed != nil {
		if m.failedUntil.IsZero() || now.Before(m.failedUntil) {
			err := m.failed
			m.mu.Unlock()
			m.mm.failed.Inc()
			return nil, err
		}
		m.failed = nil
	}
	if ctx.Err() != nil {
		m.mu.Unlock()
		return nil, m.ctxErr(ctx, 0)
	}
	if m.held >= m.a.opts.MaxQueue {
		m.mu.Unlock()
		m.mm.queueFull.Inc()
		return nil, fmt.Errorf("activator: model %q holds %d requests: %w", m.name, m.a.opts.MaxQueue, ErrQueueFull)
	}
	w := &waiter{at: now, ch: make(chan error, 1)}
	m.push(w)
	if m.ready == 0 && m.coldStart.IsZero() {
		m.coldStart = now
	}
	m.mm.depth.Set(float64(m.held))
	m.mu.Unlock()
	m.requests.Add(1)
	if poke := m.a.opts.Poke; poke != nil {
		poke(m.name)
	}

	select {
	case err := <-w.ch:
		if err != nil {
			return nil, err
		}
		m.mm.wait.Observe(time.Now().Sub(w.at).Seconds())
		return m.ticket(), nil
	case <-ctx.Done():
	}
	m.mu.Lock()
	if w.queued {
		m.remove(w)
		m.mm.depth.Set(float64(m.held))
		m.mu.Unlock()
		return nil, m.ctxErr(ctx, time.Now().Sub(w.at))
	}
	m.mu.Unlock()
	// Admitted or failed as ctx ended: the decision is already in ch.
	if err := <-w.ch; err != nil {
		return nil, err
	}
	m.release()
	return nil, m.ctxErr(ctx, time.Now().Sub(w.at))
}

// ctxErr turns ctx's end into Acquire's error and counts it.
func (m *model) ctxErr(ctx context.Context, waited time.Duration) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		m.mm.deadline.Inc()
		return fmt.Errorf("activator: model %q held %s: %w (%w)", m.name, waited, ErrDeadline, err)
	}
	m.mm.canceled.Inc()
	return err
}

// push appends w to the queue. Called with mu held.
func (m *model) push(w *waiter) {
	w.queued = true
	w.prev = m.tail
	if m.tail != nil {
		m.tail.next = w
	} else {
		m.head = w
	}
	m.tail = w
	m.held++
}

// remove unlinks w from the queue. Called with mu held.
func (m *model) remove(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		m.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		m.tail = w.prev
	}
	w.prev, w.next, w.queued = nil, nil, false
	m.held--
}

// admit hands free capacity to held requests in arrival order. Called with
// mu held.
func (m *model) admit() {
	n := m.held
	for m.head != nil && m.hasCapacity() {
		w := m.head
		m.remove(w)
		m.inFlight++
		w.ch <- nil
	}
	if m.held != n {
		m.mm.depth.Set(float64(m.held))
	}
}

// release frees one slot and hands it on.
func (m *model) release() {
	m.mu.Lock()
	m.inFlight--
	m.admit()
	m.mu.Unlock()
}

// ticket is one admitted request's release, pooled so that admission
// allocates nothing; fn is its release bound once.
type ticket struct {
	m        *model
	released atomic.Bool
	fn       func()
}

var tickets sync.Pool

func init() {
	// Set here, not in the declaration: ticket.release puts back into
	// tickets, which would make an initialization cycle.
	tickets.New = func() any {
		t := &ticket{}
		t.fn = t.release
		return t
	}
}

func (m *model) ticket() func() {
	t := tickets.Get().(*ticket)
	t.m = m
	t.released.Store(false)
	return t.fn
}

func (t *ticket) release() {
	if !t.released.CompareAndSwap(false, true) {
		return
	}
	m := t.m
	t.m = nil
	tickets.Put(t)
	m.release()
}

// SetCapacity reports that model has ready replicas ready now (ready
// meaning the runtime and the model report ready). More capacity admits
// held requests in arrival order at once. Ready replicas end a failure
// (see Fail) and a cold start, whose duration is observed. The owner of
// the replicas calls it on every change.
func (a *Activator) SetCapacity(name string, ready int) {
	m := a.lookup(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.signal()
	m.ready = max(ready, 0)
	if m.ready == 0 {
		return
	}
	m.failed = nil
	if !m.coldStart.IsZero() {
		m.mm.coldStart.Observe(time.Now().Sub(m.coldStart).Seconds())
		m.coldStart = time.Time{}
	}
	m.admit()
}

// Fail reports that a replica of model failed to start, for reason (the
// runtime's own words). Every request the model holds fails at once with
// an error wrapping ErrFailed and reason, and so do new requests that
// would be held, for Options.FailureHold or until SetCapacity reports
// ready replicas or Reset is called. Requests in flight are not touched.
func (a *Activator) Fail(name string, reason error) {
	until := time.Time{}
	if h := a.opts.FailureHold; h > 0 {
		until = time.Now().Add(h)
	}
	a.fail(name, reason, until)
}

// FailUntilReady is Fail for a model that will not come up by itself (its
// runtime gave up restarting): new requests that would be held fail at
// once with reason until SetCapacity reports ready replicas or Reset is
// called, however long that takes.
func (a *Activator) FailUntilReady(name string, reason error) {
	a.fail(name, reason, time.Time{})
}

// fail fails the held requests and those that would be held until until
// (zero: until cleared).
func (a *Activator) fail(name string, reason error, until time.Time) {
	if reason == nil {
		reason = errors.New("no reason given")
	}
	m := a.lookup(name)
	err := fmt.Errorf("activator: model %q: %w: %w", name, ErrFailed, reason)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.signal()
	m.failed = err
	m.failedUntil = until
	m.coldStart = time.Time{}
	for m.head != nil {
		w := m.head
		m.remove(w)
		w.ch <- err
		m.mm.failed.Inc()
	}
	m.mm.depth.Set(0)
}

// Forget fails the requests held for model with reason (see Fail), then
// drops the model's state and metrics: for a model (a revision) that is
// gone for good. A later request for the name starts afresh.
func (a *Activator) Forget(name string, reason error) {
	if _, ok := (*a.models.Load())[name]; !ok {
		return
	}
	a.Fail(name, reason)
	a.mu.Lock()
	defer a.mu.Unlock()
	old := *a.models.Load()
	next := maps.Clone(old)
	delete(next, name)
	a.models.Store(&next)
	a.metrics.forget(name)
}

// Reset ends a failure of model reported by Fail, so that new requests are
// held again (and poke the autoscaler), as when the owner retries a start.
func (a *Activator) Reset(name string) {
	m := a.lookup(name)
	m.mu.Lock()
	m.signal()
	m.failed = nil
	m.mu.Unlock()
}

// Changed returns a channel closed at the model's next SetCapacity, Fail
// or Reset: a caller that found no live replica where the activator counts
// one (a crash its owner has not reported yet) waits on it before it asks
// again, rather than being admitted to the same dead replica at once.
func (a *Activator) Changed(name string) <-chan struct{} {
	m := a.lookup(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.changed == nil {
		m.changed = make(chan struct{})
	}
	return m.changed
}

// signal closes the channel Changed gave out, if any. Called with mu held.
func (m *model) signal() {
	if m.changed != nil {
		close(m.changed)
		m.changed = nil
	}
}

// Concurrency returns model's requests in flight plus those held: the
// autoscaler's Observer reading.
func (a *Activator) Concurrency(name string) float64 {
	m, ok := (*a.models.Load())[name]
	if !ok {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return float64(m.inFlight + m.held)
}

// Requests returns how many requests for model were admitted or held since
// the Activator was made (those rejected at once are not counted), for the
// autoscaler's rps reading. Held requests count when they arrive, so a
// model at zero sees its demand.
func (a *Activator) Requests(name string) uint64 {
	m, ok := (*a.models.Load())[name]
	if !ok {
		return 0
	}
	return m.requests.Load()
}
