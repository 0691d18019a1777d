package quota

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/oip"
)

// FairQueueOptions configures a FairQueue. Zero fields take the documented
// defaults.
type FairQueueOptions struct {
	// Model names the queue's model in metrics and errors.
	Model string
	// Capacity is how many requests may pass at once at first (see
	// SetCapacity); 0 means no bound.
	Capacity int
	// MaxQueue bounds the requests waiting (default 1000); one more is
	// refused with ErrQueueFull.
	MaxQueue int
	// PriorityLevels is the number of priority levels, 1 the highest, as
	// in Triton (default 3).
	PriorityLevels int
	// DefaultPriority is the level of a request that names none, or names
	// one outside [1, PriorityLevels] (default the middle level,
	// (PriorityLevels+1)/2).
	DefaultPriority int
	// RetryAfter is the Retry-After hint of a request refused because the
	// queue is full (default 1s).
	RetryAfter time.Duration
	// Metrics receives the queue's metrics (default: metrics registered
	// nowhere).
	Metrics *Metrics
}

// maxPriorityLevels bounds PriorityLevels: a dequeue scans the levels.
const maxPriorityLevels = 64

// FairQueue shares one model's capacity among tenants when the model is
// saturated. While fewer than Capacity requests are in flight and none
// waits, a request passes at once: one compare-and-swap, no lock, no
// allocation. Otherwise it waits in its tenant's sub-queue, ordered by
// priority level then arrival, and a released place goes to the tenant
// chosen by weighted fair queuing (self-clocked: each backlogged tenant's
// next request has the virtual finish time max(V, the tenant's last
// finish) + 1/weight, the smallest is served, and V becomes its finish).
// A tenant of weight 2 thus gets twice the places of a tenant of weight 1
// while both wait, and a light tenant waits for at most about one
// release, whatever the backlog of a heavy one.
//
// Its methods are safe for concurrent use; it starts no goroutine:
// waiters block on their own channel, and releases hand places on.
type FairQueue struct {
	opts FairQueueOptions

	// state is in flight (low 32 bits) and waiting (high 32 bits), in one
	// word so that the pass-through path decides on both with one CAS.
	// The waiting count changes only under mu, and while it is not zero
	// nothing but mu's holder changes the word; see release.
	state    atomic.Uint64
	capacity atomic.Int64 // <= 0: no bound; stored under mu

	mu      sync.Mutex
	tenants map[string]*tenantQueue
	backlog []*tenantQueue // a heap of the tenants with waiters, by (finish, seq)
	vtime   uint64         // V, the finish time of the last request served
	seq     uint64         // orders equal finish times by when they were given

	waiters sync.Pool // of *waiter
	wait    prometheus.Observer
	metrics *Metrics
}

const (
	one        = 1
	waitingOne = 1 << 32
	countMask  = 1<<32 - 1
)

func inFlight(s uint64) int64 { return int64(s & countMask) }
func waiting(s uint64) int64  { return int64(s >> 32) }

// virtualScale is the virtual time of one request at weight 1. It is a
// multiple of 1..16 and of 10^6 (the largest weight the tenants' store
// takes), so that common weights give exact, deterministic finish times.
const virtualScale = 720_720 * 1_000_000

// rebaseAt is the virtual time past which the queue moves every finish
// time back, so that they never overflow.
const rebaseAt = 1 << 62

// tenantQueue is one tenant's waiters and its place in the fair queuing.
// Its fields are under the FairQueue's mu.
type tenantQueue struct {
	name   string
	step   uint64       // virtualScale / weight
	levels []waiterList // by priority level, 0 the highest
	n      int          // waiters in levels
	last   uint64       // finish time of its last request served
	finish uint64       // finish time of its next request, while waiting
	seq    uint64       // when finish was given
	idx    int          // index in backlog, -1 when none waits
	gauge  prometheus.Gauge
}

type waiterList struct{ head, tail *waiter }

// waiter is one waiting request. Waiters are pooled with their channels,
// per FairQueue: a channel made in one testing/synctest bubble must not be
// used in another, and a queue lives in one.
type waiter struct {
	prev, next *waiter
	t          *tenantQueue
	level      int
	queued     bool          // linked in t.levels[level]; under mu
	ch         chan struct{} // receives once when given a place
}

// NewFairQueue returns a FairQueue for opts.
func NewFairQueue(opts FairQueueOptions) (*FairQueue, error) {
	switch {
	case opts.Capacity < 0:
		return nil, fmt.Errorf("quota: FairQueueOptions.Capacity %d is negative", opts.Capacity)
	case opts.MaxQueue < 0:
		return nil, fmt.Errorf("quota: FairQueueOptions.MaxQueue %d is negative", opts.MaxQueue)
	case opts.MaxQueue > countMask:
		return nil, fmt.Errorf("quota: FairQueueOptions.MaxQueue %d is over %d", opts.MaxQueue, countMask)
	case opts.PriorityLevels < 0 || opts.PriorityLevels > maxPriorityLevels:
		return nil, fmt.Errorf("quota: FairQueueOptions.PriorityLevels %d is outside [0, %d]", opts.PriorityLevels, maxPriorityLevels)
	case opts.RetryAfter < 0:
		return nil, fmt.Errorf("quota: FairQueueOptions.RetryAfter %s is negative", opts.RetryAfter)
	}
	if opts.MaxQueue == 0 {
		opts.MaxQueue = 1000
	}
	if opts.PriorityLevels == 0 {
		opts.PriorityLevels = 3
	}
	if opts.DefaultPriority == 0 {
		opts.DefaultPriority = (opts.PriorityLevels + 1) / 2
	}
	if opts.DefaultPriority < 1 || opts.DefaultPriority > opts.PriorityLevels {
		return nil, fmt.Errorf("quota: FairQueueOptions.DefaultPriority %d is outside [1, PriorityLevels %d]", opts.DefaultPriority, opts.PriorityLevels)
	}
	if opts.RetryAfter == 0 {
		opts.RetryAfter = time.Second
	}
	if opts.Metrics == nil {
		opts.Metrics = unregistered()
	}
	q := &FairQueue{
		opts:    opts,
		tenants: make(map[string]*tenantQueue),
		metrics: opts.Metrics,
		wait:    opts.Metrics.wait.WithLabelValues(opts.Model),
	}
	q.waiters.New = func() any { return &waiter{ch: make(chan struct{}, 1)} }
	q.capacity.Store(int64(opts.Capacity))
	return q, nil
}

// Slot is one admitted request's place in a FairQueue. Release it exactly
// once, when the request is done with the model; the next waiter takes
// the place. The zero Slot's Release does nothing. A Slot is a value, so
// admission allocates nothing; copying it and releasing both copies
// releases twice, which is a bug.
type Slot struct{ q *FairQueue }

// Release gives the place back, to the next waiter if one waits.
func (s Slot) Release() {
	if s.q != nil {
		s.q.release()
	}
}

// SetCapacity sets how many requests may pass at once (the model's ready
// replicas times the requests each takes; 0 means no bound). A rise
// admits waiters at once, in fair order; a fall lets the requests in
// flight finish and admits no one until they are below it.
//
// With no ready replica a capacity of 0 would hold every request here,
// away from the activator that wakes the model: give at least one
// replica's worth.
func (q *FairQueue) SetCapacity(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.capacity.Store(int64(max(n, 0)))
	for q.serveOne() {
	}
}

// Capacity returns how many requests may pass at once (0: no bound).
func (q *FairQueue) Capacity() int { return int(q.capacity.Load()) }

// InFlight returns the requests admitted and not yet released.
func (q *FairQueue) InFlight() int { return int(inFlight(q.state.Load())) }

// Waiting returns the requests waiting now.
func (q *FairQueue) Waiting() int { return int(waiting(q.state.Load())) }

// TryAcquire admits a request at once if there is room and no one waits,
// and never waits: ok is false otherwise, and nothing is counted. It lets
// a caller make a context (a deadline and its timer) only for a request
// that must wait in Acquire.
func (q *FairQueue) TryAcquire() (Slot, bool) {
	c := q.capacity.Load()
	for {
		s := q.state.Load()
		if waiting(s) != 0 || (c > 0 && inFlight(s) >= c) {
			return Slot{}, false
		}
		if q.state.CompareAndSwap(s, s+one) {
			return Slot{q}, true
		}
	}
}

// Acquire admits a request of tenant, at once if there is room and no one
// waits, and otherwise when fair queuing gives it a place. weight is the
// tenant's share against other tenants (below 1 means 1); priority is the
// request's OIP "priority" parameter (1 the highest; 0, or a level past
// PriorityLevels, means DefaultPriority) and orders the request only among
// its tenant's.
//
// Acquire returns at once with a *RefusedError wrapping ErrQueueFull (kind
// oip.KindResourceExhausted, with RetryAfter) when MaxQueue requests wait,
// and, when ctx ends while the request waits, an error of ctx's kind
// wrapping ctx.Err(), having left the queue. On success the caller must
// Release the Slot exactly once.
func (q *FairQueue) Acquire(ctx context.Context, tenant string, weight int, priority uint64) (Slot, error) {
	if s, ok := q.TryAcquire(); ok {
		return s, nil
	}
	return q.acquireSlow(ctx, tenant, weight, priority)
}

// acquireSlow decides under mu whether the request passes, is refused, or
// waits, and waits.
func (q *FairQueue) acquireSlow(ctx context.Context, tenant string, weight int, priority uint64) (Slot, error) {
	q.mu.Lock()
	c := q.capacity.Load()
	for {
		s := q.state.Load()
		// Under mu a waiter means no room (release and SetCapacity hand
		// room to waiters first), so a newcomer never passes one.
		if waiting(s) == 0 && (c <= 0 || inFlight(s) < c) {
			if q.state.CompareAndSwap(s, s+one) {
				q.mu.Unlock()
				return Slot{q}, nil
			}
			continue
		}
		if waiting(s) >= int64(q.opts.MaxQueue) {
			q.mu.Unlock()
			q.metrics.refusal(tenant, q.opts.Model, ScopeModel, ReasonQueueFull)
			return Slot{}, &RefusedError{Reason: ReasonQueueFull, Scope: ScopeModel, Tenant: tenant, Model: q.opts.Model,
				Limit: float64(q.opts.MaxQueue), After: q.opts.RetryAfter}
		}
		if err := ctx.Err(); err != nil {
			q.mu.Unlock()
			return Slot{}, q.ctxErr(err, 0)
		}
		if q.state.CompareAndSwap(s, s+waitingOne) {
			break
		}
	}
	w := q.waiters.Get().(*waiter)
	q.push(w, tenant, weight, priority)
	q.mu.Unlock()
	start := time.Now()

	select {
	case <-w.ch:
		w.t = nil
		q.waiters.Put(w)
		q.wait.Observe(time.Since(start).Seconds())
		return Slot{q}, nil
	case <-ctx.Done():
	}
	q.mu.Lock()
	if w.queued {
		q.remove(w)
		q.state.Add(^uint64(waitingOne - 1)) // minus one waiting
		q.mu.Unlock()
		w.t = nil
		q.waiters.Put(w)
		return Slot{}, q.ctxErr(ctx.Err(), time.Since(start))
	}
	q.mu.Unlock()
	// Given a place as ctx ended: the send is already in ch. The place
	// goes on to the next waiter rather than to a request nobody awaits.
	<-w.ch
	w.t = nil
	q.waiters.Put(w)
	q.release()
	return Slot{}, q.ctxErr(ctx.Err(), time.Since(start))
}

// ctxErr is Acquire's error for a request whose context ended.
func (q *FairQueue) ctxErr(err error, waited time.Duration) error {
	kind := oip.KindCanceled
	if errors.Is(err, context.DeadlineExceeded) {
		kind = oip.KindDeadlineExceeded
	}
	return oip.Errorf(kind, "model %q: the request waited %s in the model's fair queue: %w", q.opts.Model, waited.Round(time.Millisecond), err)
}

// push queues w for tenant. Called with mu held, and the waiting count
// already raised.
func (q *FairQueue) push(w *waiter, tenant string, weight int, priority uint64) {
	t := q.tenants[tenant]
	if t == nil {
		t = &tenantQueue{
			name:   tenant,
			levels: make([]waiterList, q.opts.PriorityLevels),
			idx:    -1,
			gauge:  q.metrics.queued.WithLabelValues(q.opts.Model, tenant),
		}
		q.tenants[tenant] = t
	}
	t.step = virtualScale / uint64(max(weight, 1))
	level := q.opts.DefaultPriority - 1
	if priority >= 1 && priority <= uint64(q.opts.PriorityLevels) {
		level = int(priority) - 1
	}
	w.t, w.level, w.queued = t, level, true
	l := &t.levels[level]
	w.prev, w.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = w
	} else {
		l.head = w
	}
	l.tail = w
	t.n++
	t.gauge.Inc()
	if t.n == 1 {
		// The tenant starts waiting: its finish time counts from now
		// (V) or from its last, whichever is later, so that idling
		// saves no credit.
		t.finish = max(q.vtime, t.last) + t.step
		t.seq = q.nextSeq()
		q.heapPush(t)
	}
}

// remove unlinks w, which is queued. Called with mu held; the caller
// lowers the waiting count.
func (q *FairQueue) remove(w *waiter) {
	t := w.t
	l := &t.levels[w.level]
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		l.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		l.tail = w.prev
	}
	w.prev, w.next, w.queued = nil, nil, false
	t.n--
	t.gauge.Dec()
	if t.n == 0 {
		q.heapRemove(t.idx)
	}
}

// serveOne gives one place to the next waiter, if one waits and there is
// room for it, and reports whether it did. Called with mu held.
func (q *FairQueue) serveOne() bool {
	c := q.capacity.Load()
	for {
		s := q.state.Load()
		if waiting(s) == 0 || (c > 0 && inFlight(s) >= c) {
			return false
		}
		if q.state.CompareAndSwap(s, s-waitingOne+one) {
			break
		}
	}
	q.handOff()
	return true
}

// handOff takes the next waiter by fair queuing out of the queue and
// wakes it; the caller has moved its count from waiting to in flight.
// Called with mu held.
func (q *FairQueue) handOff() {
	t := q.backlog[0]
	var w *waiter
	for i := range t.levels {
		if w = t.levels[i].head; w != nil {
			break
		}
	}
	q.vtime = t.finish
	t.last = t.finish
	q.remove(w) // the tenant leaves the backlog if w was its last
	if t.n > 0 {
		t.finish = t.last + t.step
		t.seq = q.nextSeq()
		q.heapFix(t.idx)
	}
	if q.vtime > rebaseAt {
		q.rebase()
	}
	w.ch <- struct{}{}
}

// release frees a place: to the next waiter if one waits and the capacity
// allows, else back to the pool of room.
func (q *FairQueue) release() {
	for {
		s := q.state.Load()
		if waiting(s) != 0 {
			break
		}
		if inFlight(s) == 0 {
			return // released more often than admitted: a bug of the caller's
		}
		if q.state.CompareAndSwap(s, s-one) {
			return
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	c := q.capacity.Load()
	for {
		s := q.state.Load()
		if waiting(s) != 0 && (c <= 0 || inFlight(s) <= c) {
			// The place passes straight on: in flight stays as it is.
			if q.state.CompareAndSwap(s, s-waitingOne) {
				q.handOff()
				return
			}
			continue
		}
		if inFlight(s) == 0 {
			return
		}
		if q.state.CompareAndSwap(s, s-one) {
			return
		}
	}
}

func (q *FairQueue) nextSeq() uint64 {
	q.seq++
	return q.seq
}

// rebase moves V and every finish time back by V, keeping their order.
// Called with mu held.
func (q *FairQueue) rebase() {
	base := q.vtime
	for _, t := range q.tenants {
		t.last -= min(t.last, base)
		if t.idx >= 0 {
			t.finish -= min(t.finish, base)
		}
	}
	q.vtime = 0
}

// The backlog heap, by (finish, seq): written out rather than through
// container/heap to keep the interface calls off the queue's lock.

func (q *FairQueue) less(i, j int) bool {
	a, b := q.backlog[i], q.backlog[j]
	if a.finish != b.finish {
		return a.finish < b.finish
	}
	return a.seq < b.seq
}

func (q *FairQueue) swap(i, j int) {
	h := q.backlog
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}

func (q *FairQueue) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !q.less(j, i) {
			break
		}
		q.swap(i, j)
		j = i
	}
}

func (q *FairQueue) down(i int) bool {
	i0, n := i, len(q.backlog)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && q.less(r, l) {
			j = r
		}
		if !q.less(j, i) {
			break
		}
		q.swap(i, j)
		i = j
	}
	return i > i0
}

func (q *FairQueue) heapPush(t *tenantQueue) {
	t.idx = len(q.backlog)
	q.backlog = append(q.backlog, t)
	q.up(t.idx)
}

func (q *FairQueue) heapRemove(i int) {
	n := len(q.backlog) - 1
	t := q.backlog[i]
	if i != n {
		q.swap(i, n)
	}
	q.backlog[n] = nil
	q.backlog = q.backlog[:n]
	if i != n {
		q.heapFix(i)
	}
	t.idx = -1
}

func (q *FairQueue) heapFix(i int) {
	if !q.down(i) {
		q.up(i)
	}
}
