package batcher

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/infergate/infergate/oip"
)

// Batcher merges compatible requests for one model into batches along
// dimension 0, sends each batch upstream with Options.Dispatch, and splits
// the answer back to the callers. Submit may be called from any number of
// goroutines, before Run starts and while it runs; Run runs the scheduler.
type Batcher struct {
	opts    Options
	metrics *metrics
	kick    chan struct{} // wakes the scheduler; buffered, never blocks

	mu       sync.Mutex
	byKey    map[string]*group // the non-empty groups, and a few empty ones for reuse
	groups   []*group          // the non-empty groups, in no order
	timeouts timeoutHeap
	queued   int
	arrivals uint64
	inFlight int
	running  bool
	stopped  bool
	runCtx   context.Context
	wg       sync.WaitGroup // dispatched batches
	service  serviceModel
	scratch  []*item

	// freeSince is when a batch slot last became free after all of them
	// were busy: a batch held for more requests counts its hold from then
	// (or from its oldest request's arrival, if later), not from the time
	// its requests spent waiting for a slot.
	freeSince time.Time

	// With PreserveOrdering: completed batches held until every batch
	// dispatched before them has been delivered.
	dispatched, delivered uint64
	held                  map[uint64]*batch

	// inline lists the batches in flight that their callers run (see
	// Submit), newest first: stop cancels them, as Run's context
	// cancels the others.
	inline *batch

	// armed is when Run's goroutine will look again at the latest (zero:
	// only when poked). Arrivals and completions make the decisions they
	// set off themselves (see scheduleNow), and poke Run only when it
	// must look sooner.
	armed time.Time
}

// batch is a set of requests sent upstream in one call.
type batch struct {
	// items' requests are read only until released is closed.
	items []*item
	grp   *group // the group it was taken from
	total int64
	seq   uint64
	ctx   context.Context
	// cancel is called when the call returns, or when waiting drops to zero.
	cancel context.CancelFunc
	// released is closed once the batch no longer reads the callers'
	// requests: when merged, or, for a request sent unchanged, when its
	// upstream call has returned.
	released chan struct{}
	waiting  int // callers still waiting
	results  []result

	// inline is set for a batch its caller runs in its own goroutine (see
	// Submit); such batches are listed in Batcher.inline until they
	// complete, so that stop can cancel them.
	inline     bool
	prev, next *batch // in Batcher.inline

	// A batch of one needs no allocation for its list of items or
	// results.
	one       [1]*item
	oneResult [1]result
}

// New returns a Batcher for one model configured by opts, with the
// defaults documented on Options applied. It fails if opts is invalid, the
// error naming the field, or if the metrics cannot be registered. It starts
// no goroutine: nothing is dispatched until Run runs.
func New(opts Options) (*Batcher, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer, opts.Model)
	if err != nil {
		return nil, fmt.Errorf("batcher: metrics: %w", err)
	}
	return &Batcher{
		opts:    opts,
		metrics: m,
		kick:    make(chan struct{}, 1),
		byKey:   make(map[string]*group),
		held:    make(map[uint64]*batch),
	}, nil
}

// Submit queues req to be sent upstream in a batch with compatible
// requests, waits, and returns req's own answer: the runtime's outputs for
// req's rows, with req's id.
//
// req is read, never modified, until Submit returns, and not after: the
// caller may reuse it at once (the gateway pools its requests). The
// response is the caller's; its output data may be sub-slices of a buffer
// shared with the other callers of the batch, each capped at its own rows,
// so appending to one never writes into another's.
//
// Errors, each an *oip.Error (or the upstream error unchanged):
//   - KindInvalidArgument at once for a request whose inputs cannot be
//     concatenated along dimension 0 (none, a repeated name, an invalid
//     datatype, no first dimension or one the inputs disagree on, data that
//     does not fill the shape), a "priority" or "timeout" parameter that is
//     not an integer, or a batch larger than MaxBatchSize under
//     OversizeReject;
//   - KindResourceExhausted at once when MaxQueueSize requests are queued;
//   - KindDeadlineExceeded when ctx's deadline or the request's queue
//     timeout passes while it is queued: it is then removed and never sent;
//   - KindCanceled when ctx is cancelled while it is queued: likewise;
//   - KindUnavailable when Run has stopped;
//   - the upstream error, or KindInternal when the runtime's answer does not
//     match the batch, for every request of the batch.
//
// When nothing is queued and a batch slot is free, a request that the
// rules say goes at once is sent from the calling goroutine, with a
// context derived from ctx (see DispatchFunc).
//
// When ctx ends while req's batch is upstream, Submit returns with
// KindDeadlineExceeded or KindCanceled as soon as the batch no longer
// reads req: at once for a merged batch, which goes on for the others (its
// upstream call is cancelled when no caller is left); for a request sent
// unchanged, once Dispatch has returned from the cancelled call.
func (b *Batcher) Submit(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error) {
	return b.SubmitTimed(ctx, req, nil)
}

// Timing is what SubmitTimed tells of a request's way through the
// batcher, for the caller's tracing and Server-Timing: its wait for its
// batch to leave is Enqueued to Sent, its batch's upstream call Sent to
// Returned.
type Timing struct {
	// Enqueued is when the request was queued; zero when it was refused
	// on arrival.
	Enqueued time.Time
	// Sent and Returned bound its batch's call of Options.Dispatch; both
	// are zero when the caller did not get the batch's answer (the
	// request was refused, expired or abandoned, or Run stopped).
	Sent, Returned time.Time
	// Requests is the number of callers' requests in its batch (1 for a
	// request that went alone); 0 when Sent is zero.
	Requests int
}

// SubmitTimed is Submit, filling t (when not nil) with the request's
// Timing. t is written only by the calling goroutine, before SubmitTimed
// returns.
func (b *Batcher) SubmitTimed(ctx context.Context, req *oip.InferRequest, t *Timing) (*oip.InferResponse, error) {
	if err := ctx.Err(); err != nil {
		b.countExpired(err)
		return nil, b.contextError(err, "on arrival for batching")
	}
	it, timeout, err := b.newItem(ctx, req)
	if err != nil {
		return nil, err
	}
	// The key is built here, on the stack: enqueue finds an existing group
	// without converting it to a string.
	var buf [256]byte
	key := buf[:0]
	if !it.alone {
		key = appendKey(key, req)
	}
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return nil, b.stoppedError()
	}
	if b.queued >= b.opts.MaxQueueSize {
		b.mu.Unlock()
		b.metrics.rejectedFull.Inc()
		return nil, oip.Errorf(oip.KindResourceExhausted, "model %q: batch queue is full (%d requests)", b.opts.Model, b.opts.MaxQueueSize)
	}
	now := time.Now()
	it.enqueued = now
	if timeout > 0 {
		it.timeout = now.Add(timeout)
	}
	if due := it.dueBy(b.opts.DefaultQueuePolicy.TimeoutAction); !due.IsZero() && !now.Before(due) {
		b.mu.Unlock()
		b.metrics.expired.Inc()
		return nil, b.contextError(context.DeadlineExceeded, "on arrival for batching")
	}
	b.arrivals++
	it.seq = b.arrivals
	b.enqueue(it, key)
	if t != nil {
		t.Enqueued = now
	}
	if bt := b.takeInline(ctx, it, now); bt != nil {
		b.mu.Unlock()
		return b.runInline(ctx, it, bt, t)
	}
	it.done = make(chan struct{}, 1)
	kick := b.scheduleNow(now)
	b.mu.Unlock()
	if kick {
		b.poke()
	}

	select {
	case <-it.done:
		return it.res.answer(t)
	case <-ctx.Done():
		return b.abandon(ctx, it, t)
	}
}

// takeInline takes it, just queued, out of the queue as a batch of its
// own for its caller to send, when the scheduler would send it at once
// anyway: Run is running, nothing else is queued (so nothing of higher
// priority or earlier arrival is passed over), a batch slot is free, and
// the policy says it goes now (see ready). This saves the hand-offs from
// the caller to the scheduler, to a goroutine for the call and back, which
// are most of what batching adds to the latency of a lone request. It
// returns nil when the scheduler must decide. b.mu is held.
func (b *Batcher) takeInline(ctx context.Context, it *item, now time.Time) *batch {
	if !b.running || b.queued != 1 || b.inFlight >= b.limit() || b.runCtx.Err() != nil {
		return nil
	}
	if n, _ := b.ready(it.grp, now); n != 1 {
		return nil
	}
	bt := b.take(it.grp, 1, now)
	bt.ctx, bt.cancel = context.WithCancel(ctx)
	bt.inline = true
	bt.next = b.inline
	if b.inline != nil {
		b.inline.prev = bt
	}
	b.inline = bt
	b.wg.Add(1)
	return bt
}

// runInline sends bt, which takeInline made of it alone, in the caller's
// goroutine, and returns its answer as Submit does. The call's context is
// derived from the caller's, so it has the caller's deadline and values
// and ends when the caller gives up; stop cancels it when Run ends. Submit
// returns once the call has returned, as it does for any request sent
// unchanged, and, when the caller gave up meanwhile, with the error it
// would have had from the scheduler's goroutine.
func (b *Batcher) runInline(ctx context.Context, it *item, bt *batch, t *Timing) (*oip.InferResponse, error) {
	b.execute(bt)
	b.mu.Lock()
	if err := ctx.Err(); err != nil {
		if it.state == stateInFlight { // held back for PreserveOrdering
			it.state = stateAbandoned
			bt.waiting--
		}
		b.mu.Unlock()
		return nil, b.contextError(err, "while its batch was upstream")
	}
	if it.state == stateDone {
		b.mu.Unlock()
		return bt.oneResult[0].answer(t)
	}
	// Held back for PreserveOrdering until the batches sent before it
	// are delivered: wait like a queued caller.
	it.done = make(chan struct{}, 1)
	b.mu.Unlock()
	select {
	case <-it.done:
		return it.res.answer(t)
	case <-ctx.Done():
		return b.abandon(ctx, it, t)
	}
}

// newItem checks req and reads what scheduling needs from it: its rows,
// whether it goes alone, its priority level, its deadline, and its queue
// timeout, returned as a duration (zero for none) since the arrival time is
// not known yet.
func (b *Batcher) newItem(ctx context.Context, req *oip.InferRequest) (*item, time.Duration, error) {
	if req == nil {
		return nil, 0, oip.Errorf(oip.KindInvalidArgument, "no request")
	}
	it := &item{req: req, heapIdx: -1}
	if unbatchable(req) {
		it.alone = true
		it.rows = 1
		if len(req.Inputs) > 0 && len(req.Inputs[0].Shape) > 0 && req.Inputs[0].Shape[0] > 0 {
			it.rows = req.Inputs[0].Shape[0]
		}
	} else {
		rows, err := checkRequest(req)
		if err != nil {
			return nil, 0, err
		}
		it.rows = rows
		if rows > b.opts.MaxBatchSize {
			if b.opts.OversizePolicy == OversizeReject {
				b.metrics.rejectedOversize.Inc()
				return nil, 0, oip.Errorf(oip.KindInvalidArgument, "model %q: batch size %d is larger than the max batch size %d", b.opts.Model, rows, b.opts.MaxBatchSize)
			}
			it.alone = true
		}
	}
	level, err := b.level(req.Parameters)
	if err != nil {
		return nil, 0, err
	}
	it.level = level
	timeout, err := b.queueTimeout(req.Parameters)
	if err != nil {
		return nil, 0, err
	}
	if d, ok := ctx.Deadline(); ok {
		it.deadline = d
	}
	return it, timeout, nil
}

// level returns the priority index of a request with parameters ps.
func (b *Batcher) level(ps oip.Parameters) (int, error) {
	def := b.opts.DefaultPriority - 1
	p, ok := ps.Get(oip.ParamPriority)
	if !ok {
		return def, nil
	}
	v, ok := ps.Int64(oip.ParamPriority)
	switch {
	case !ok && p.Kind == oip.ParamUint64:
		return def, nil // above MaxInt64: out of range
	case !ok:
		return 0, oip.Errorf(oip.KindInvalidArgument, "parameter %q must be an integer", oip.ParamPriority)
	case v < 1 || v > int64(b.opts.PriorityLevels):
		return def, nil
	}
	return int(v - 1), nil
}

// queueTimeout returns the queue timeout of a request with parameters ps,
// or zero for none.
func (b *Batcher) queueTimeout(ps oip.Parameters) (time.Duration, error) {
	qp := b.opts.DefaultQueuePolicy
	if !qp.AllowTimeoutOverride {
		return qp.DefaultTimeout, nil
	}
	p, ok := ps.Get(oip.ParamTimeout)
	if !ok {
		return qp.DefaultTimeout, nil
	}
	v, ok := ps.Int64(oip.ParamTimeout)
	switch {
	case !ok && p.Kind == oip.ParamUint64:
		return qp.DefaultTimeout, nil // longer than any default
	case !ok || v < 0:
		return 0, oip.Errorf(oip.KindInvalidArgument, "parameter %q must be a non-negative integer of microseconds", oip.ParamTimeout)
	case v == 0 || v > math.MaxInt64/int64(time.Microsecond):
		return qp.DefaultTimeout, nil
	}
	d := time.Duration(v) * time.Microsecond
	if qp.DefaultTimeout > 0 && qp.DefaultTimeout < d {
		return qp.DefaultTimeout, nil
	}
	return d, nil
}

// abandon handles a caller whose ctx ended while it waited.
func (b *Batcher) abandon(ctx context.Context, it *item, t *Timing) (*oip.InferResponse, error) {
	err := ctx.Err()
	b.mu.Lock()
	switch it.state {
	case stateQueued:
		waited := time.Now().Sub(it.enqueued)
		it.grp.gaveUp()
		b.dequeue(it)
		it.state = stateDone
		b.mu.Unlock()
		b.countExpired(err)
		b.poke() // one request and one caller fewer: the group may go now
		return nil, b.contextError(err, "after "+waited.String()+" queued for batching")
	case stateInFlight:
		it.state = stateAbandoned
		bt := it.bt
		if bt.waiting--; bt.waiting == 0 {
			bt.cancel()
		}
		b.mu.Unlock()
		<-bt.released
		return nil, b.contextError(err, "while its batch was upstream")
	case stateDone:
		// Answered while we took the lock: the answer is in the channel.
		b.mu.Unlock()
		<-it.done
		return it.res.answer(t)
	}
	b.mu.Unlock()
	return nil, b.contextError(err, "while its batch was upstream")
}

func (b *Batcher) countExpired(err error) {
	if errors.Is(err, context.DeadlineExceeded) {
		b.metrics.expired.Inc()
	}
}

// contextError describes a request that ended with ctx error err; when
// says when, as in "deadline exceeded <when>".
func (b *Batcher) contextError(err error, when string) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &oip.Error{Kind: oip.KindDeadlineExceeded, Msg: fmt.Sprintf("model %q: deadline exceeded %s", b.opts.Model, when), Err: err}
	}
	return &oip.Error{Kind: oip.KindCanceled, Msg: fmt.Sprintf("model %q: request cancelled %s", b.opts.Model, when), Err: err}
}

func (b *Batcher) stoppedError() error {
	return oip.Errorf(oip.KindUnavailable, "model %q: batcher is stopped", b.opts.Model)
}

func (b *Batcher) poke() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// Run runs the scheduler until ctx is done: with Submit and the batches
// coming back, it dispatches batches as the policy in the package comment
// says, expires queued requests, and hands answers back. Each batch's
// Dispatch runs in a goroutine of its own, with a context derived from
// ctx, but for a request its caller sends (see Submit). No request is
// sent before Run starts. When ctx is done, Run answers every queued
// request with KindUnavailable, waits for the batches in flight (whose
// contexts are then cancelled) to be answered, and returns nil; Submit then
// fails with KindUnavailable. Run may be called once.
func (b *Batcher) Run(ctx context.Context) error {
	b.mu.Lock()
	if b.running {
		b.mu.Unlock()
		return errors.New("batcher: Run called more than once")
	}
	b.running = true
	b.runCtx = ctx
	b.mu.Unlock()

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		b.mu.Lock()
		now := time.Now()
		wake := b.schedule(now)
		b.armed = wake
		b.mu.Unlock()
		if !wake.IsZero() {
			timer.Reset(wake.Sub(now))
		}
		select {
		case <-ctx.Done():
			timer.Stop()
			b.stop()
			return nil
		case <-b.kick:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// stop answers every queued request and waits for the batches in flight.
func (b *Batcher) stop() {
	b.mu.Lock()
	b.stopped = true
	for bt := b.inline; bt != nil; bt = bt.next {
		bt.cancel()
	}
	for len(b.groups) > 0 {
		it := b.groups[0].head()
		b.dequeue(it)
		it.state = stateDone
		it.answer(result{err: b.stoppedError()})
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// scheduleNow makes the scheduling decision at now in the calling
// goroutine, on an arrival or a completion, rather than waking Run's
// goroutine for it: it dispatches what is ready and reports whether Run
// must be poked to look again sooner than its timer says. b.mu is held.
func (b *Batcher) scheduleNow(now time.Time) (kick bool) {
	if !b.running || b.runCtx.Err() != nil {
		return true // Run decides, or stops
	}
	wake := b.schedule(now)
	return !wake.IsZero() && (b.armed.IsZero() || wake.Before(b.armed))
}

// limit returns how many batches may be in flight.
func (b *Batcher) limit() int {
	if b.opts.MaxBatchesInFlight == nil {
		return 1
	}
	return max(b.opts.MaxBatchesInFlight(), 1)
}

// schedule expires what is due, dispatches every batch that is ready while
// the in-flight limit allows, highest priority first, and returns when it
// must look again (zero: only when something happens). b.mu is held.
func (b *Batcher) schedule(now time.Time) time.Time {
	b.expire(now)
	var wake time.Time
	limit := b.limit()
	for b.inFlight < limit && len(b.groups) > 0 {
		wake = time.Time{}
		var best *group
		bestN := 0
		for _, g := range b.groups {
			n, w := b.ready(g, now)
			if n == 0 {
				wake = earliest(wake, w)
				continue
			}
			if best == nil || before(g.head(), best.head()) {
				best, bestN = g, n
			}
		}
		if best == nil {
			break
		}
		b.dispatch(best, bestN, now)
	}
	if b.inFlight >= limit {
		wake = time.Time{} // a completion will wake us
	}
	if len(b.timeouts) > 0 {
		wake = earliest(wake, b.timeouts[0].expiry())
	}
	return wake
}

// expire answers the queued requests whose deadline, or whose queue
// timeout under TimeoutReject, has passed, and delays those whose queue
// timeout has passed under TimeoutDelay. b.mu is held.
func (b *Batcher) expire(now time.Time) {
	action := b.opts.DefaultQueuePolicy.TimeoutAction
	for len(b.timeouts) > 0 {
		it := b.timeouts[0]
		if now.Before(it.expiry()) {
			return
		}
		pastDeadline := !it.deadline.IsZero() && !now.Before(it.deadline)
		if !pastDeadline && action == TimeoutDelay {
			b.delay(it)
			continue
		}
		waited := now.Sub(it.enqueued)
		it.grp.gaveUp()
		b.dequeue(it)
		it.state = stateDone
		b.metrics.expired.Inc()
		var err error
		if pastDeadline {
			err = b.contextError(context.DeadlineExceeded, "after "+waited.String()+" queued for batching")
		} else {
			err = &oip.Error{Kind: oip.KindDeadlineExceeded, Msg: fmt.Sprintf("model %q: queue timeout exceeded after %s queued for batching", b.opts.Model, waited)}
		}
		it.answer(result{err: err})
	}
}
