package batcher

import (
	"context"
	"slices"
	"time"

	"github.com/infergate/infergate/oip"
)

// candidate is the batch a group would send now: its requests in dispatch
// order, as many as fit in MaxBatchSize without skipping one.
type candidate struct {
	items      []*item // aliases Batcher.scratch until dispatched
	rows       int64
	saturated  bool      // MaxBatchSize reached, or the next request does not fit
	preferredN int       // requests in the longest prefix of a preferred size
	oldest     time.Time // earliest arrival
	due        time.Time // earliest dueBy; zero when none
}

// fill returns g's candidate. The group of requests sent alone yields its
// first request only. b.mu is held.
func (b *Batcher) fill(g *group) candidate {
	c := candidate{items: b.scratch[:0]}
	action := b.opts.DefaultQueuePolicy.TimeoutAction
	maxRows := b.opts.MaxBatchSize
levels:
	for l := range g.levels {
		for it := g.levels[l].head; it != nil; it = it.next {
			if g.key == "" && len(c.items) == 1 {
				break levels
			}
			if g.key != "" && c.rows+it.rows > maxRows {
				c.saturated = true
				break levels
			}
			c.items = append(c.items, it)
			c.rows += it.rows
			if slices.Contains(b.opts.PreferredBatchSizes, c.rows) {
				c.preferredN = len(c.items)
			}
			if c.oldest.IsZero() || it.enqueued.Before(c.oldest) {
				c.oldest = it.enqueued
			}
			c.due = earliest(c.due, it.dueBy(action))
		}
	}
	if c.rows >= maxRows {
		c.saturated = true
	}
	b.scratch = c.items[:0]
	return c
}

// ready returns how many requests of g's candidate go now, or 0 and when
// that may change. A slot for a batch in flight is free. The rules, the
// first that holds deciding:
//
//  1. a request sent alone goes at once;
//  2. a candidate that cannot grow (MaxBatchSize reached, or the next
//     queued request does not fit) goes whole;
//  3. otherwise the longest prefix of a preferred size goes;
//  4. the candidate goes whole once waiting longer would miss its earliest
//     deadline: when now is past that deadline less the service time
//     learned for its size;
//  5. it waits while b.hold says more requests are coming soon;
//  6. otherwise it goes whole: waiting could only delay it.
//
// b.mu is held.
func (b *Batcher) ready(g *group, now time.Time) (int, time.Time) {
	c := b.fill(g)
	switch {
	case g.key == "":
		return len(c.items), time.Time{}
	case c.saturated:
		return len(c.items), time.Time{}
	case c.preferredN > 0:
		return c.preferredN, time.Time{}
	}
	var wake time.Time
	if !c.due.IsZero() {
		at := c.due.Add(-b.service.estimate(c.rows))
		if !now.Before(at) {
			return len(c.items), time.Time{}
		}
		wake = at
	}
	until, ok := b.hold(g, &c, now)
	if !ok {
		return len(c.items), time.Time{}
	}
	return 0, earliest(wake, until)
}

// hold reports whether g's candidate c, which could go now, should wait
// for more requests, and until when at most. It waits only while all of
// these hold:
//
//   - its hold so far is within the budget: the smaller of MaxQueueDelay
//     and the service time learned for its size (MaxQueueDelay alone
//     until a batch has come back), counted from when a slot became free
//     or from its oldest request's arrival, whichever is later. Waiting
//     longer than the batch takes to serve cannot pay, and a request that
//     waited for a busy slot was not held.
//   - a request is expected within what is left of the budget: the
//     group's learned mean time between arrivals is shorter than that.
//   - fewer requests are outstanding (queued or upstream) than the group
//     has had over its last two periods between batches coming back:
//     callers whose answers just came back, as closed-loop clients' do
//     together, are about to send again. When all of them are in, the
//     batch goes at once.
//   - fewer requests are in the batch than are expected within the
//     runtime's fixed cost per batch (the a of a + b·n), at the rate
//     learned between arrivals with no batch coming back in between (the
//     rate at which answered callers come back). Sending k rows now
//     serves k per a + b·k of the slot's time; waiting w for λw more
//     serves k + λw per w + a + b·(k + λw), which is more exactly when
//     λ·a > k. When the callers come back slowly (a busy CPU answers and
//     reads them one by one), the batch goes with those in, and the rest
//     come back while it is served instead of leaving the runtime idle.
//
// So a lone client (one outstanding, as many as ever) never waits, nor
// does traffic too sparse to bring a request within the service time.
// b.mu is held.
func (b *Batcher) hold(g *group, c *candidate, now time.Time) (time.Time, bool) {
	budget := b.opts.MaxQueueDelay
	if b.service.known() {
		budget = min(budget, b.service.estimate(c.rows))
	}
	if budget <= 0 || g.gaps == 0 || g.outstanding() >= g.population() {
		return time.Time{}, false
	}
	if g.burstGaps > 0 && b.service.known() && time.Duration(len(c.items))*g.burstGap >= b.service.fixed() {
		return time.Time{}, false
	}
	from := c.oldest
	if b.freeSince.After(from) {
		from = b.freeSince
	}
	// Waiting stops when what is left of the budget no longer exceeds the
	// mean gap: then fewer than one more arrival is expected.
	until := from.Add(budget - g.gap)
	if !now.Before(until) {
		return time.Time{}, false
	}
	return until, true
}

// dispatch takes the first n requests of g's candidate out of the queue and
// sends them upstream as one batch in a goroutine. b.mu is held.
func (b *Batcher) dispatch(g *group, n int, now time.Time) {
	bt := b.take(g, n, now)
	bt.ctx, bt.cancel = b.batchContext(bt)
	b.wg.Add(1)
	go b.execute(bt)
}

// take takes the first n requests of g's candidate out of the queue into a
// batch, counts it in flight and records its metrics; the caller gives it
// a context and runs it. b.mu is held.
func (b *Batcher) take(g *group, n int, now time.Time) *batch {
	c := b.fill(g)
	bt := &batch{
		grp:      g,
		seq:      b.dispatched,
		released: make(chan struct{}),
	}
	if n == 1 {
		bt.one[0] = c.items[0]
		bt.items = bt.one[:]
	} else {
		bt.items = slices.Clone(c.items[:n])
	}
	b.dispatched++
	for _, it := range bt.items {
		b.dequeue(it)
		it.state = stateInFlight
		it.bt = bt
		bt.total += it.rows
		b.metrics.queueDelay.Observe(now.Sub(it.enqueued).Seconds())
	}
	clear(c.items) // the scratch must not keep requests alive
	b.metrics.batchSize.Observe(float64(bt.total))
	bt.waiting = n
	g.inFlight += n
	b.inFlight++
	return bt
}

// batchContext returns the context of a batch run by the scheduler:
// derived from Run's, with the latest of its callers' deadlines when all
// of them have one.
func (b *Batcher) batchContext(bt *batch) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, it := range bt.items {
		if it.deadline.IsZero() {
			return context.WithCancel(b.runCtx)
		}
		if it.deadline.After(latest) {
			latest = it.deadline
		}
	}
	return context.WithDeadline(b.runCtx, latest)
}

// execute makes the upstream call of bt and hands its answer back. A batch
// of one is sent and answered unchanged; a larger one is merged and split.
func (b *Batcher) execute(bt *batch) {
	defer b.wg.Done()
	single := len(bt.items) == 1
	req := bt.items[0].req
	var (
		ids  []string // the merged requests' ids and rows, to split by
		rows []int64
	)
	if !single {
		reqs := make([]*oip.InferRequest, len(bt.items))
		ids, rows = make([]string, len(bt.items)), make([]int64, len(bt.items))
		for i, it := range bt.items {
			reqs[i], ids[i], rows[i] = it.req, it.req.ID, it.rows
		}
		req = merge(reqs, bt.total)
		close(bt.released) // the callers may reuse their requests now
	}
	start := time.Now()
	resp, err := b.opts.Dispatch(bt.ctx, req)
	elapsed := time.Now().Sub(start)
	bt.cancel()
	if single {
		close(bt.released)
	}

	results := bt.oneResult[:]
	if !single {
		results = make([]result, len(bt.items))
	}
	for i := range results {
		results[i].sent, results[i].elapsed, results[i].requests = start, elapsed, len(bt.items)
	}
	ok := err == nil && resp != nil
	switch {
	case err != nil:
		for i := range results {
			results[i].err = err
		}
	case resp == nil:
		err := oip.Errorf(oip.KindInternal, "model %q: runtime returned no response and no error", b.opts.Model)
		for i := range results {
			results[i].err = err
		}
	case single:
		results[0].resp = resp
	default:
		if err := checkResponse(resp, bt.total, req.Outputs, b.opts.Model); err != nil {
			ok = false
			b.opts.Logger.Warn("batcher: runtime answer does not match the batch; failing every request in it",
				"model", b.opts.Model, "requests", len(bt.items), "rows", bt.total, "error", err)
			for i := range results {
				results[i].err = err
			}
			break
		}
		for i, r := range split(resp, ids, rows) {
			results[i].resp = r
		}
	}
	b.complete(bt, results, ok, elapsed)
}

// complete frees bt's slot, learns from its service time, starts a new
// period of its group (see hold), and delivers its answers, in dispatch
// order under PreserveOrdering.
func (b *Batcher) complete(bt *batch, results []result, ok bool, elapsed time.Duration) {
	b.mu.Lock()
	now := time.Now()
	if b.inFlight >= b.limit() {
		b.freeSince = now
	}
	b.inFlight--
	if bt.inline {
		b.unlistInline(bt)
	}
	bt.grp.returned(len(bt.items), now)
	if ok {
		b.service.observe(bt.total, elapsed)
	}
	bt.results = results
	if !b.opts.PreserveOrdering {
		deliver(bt)
	} else {
		b.held[bt.seq] = bt
		for {
			next, found := b.held[b.delivered]
			if !found {
				break
			}
			delete(b.held, b.delivered)
			deliver(next)
			b.delivered++
		}
	}
	// A free slot matters only when something is queued: a lone caller's
	// completion then wakes nobody.
	kick := b.queued > 0 && b.scheduleNow(now)
	b.mu.Unlock()
	if kick {
		b.poke()
	}
}

// unlistInline removes bt from Batcher.inline. b.mu is held.
func (b *Batcher) unlistInline(bt *batch) {
	if bt.prev == nil {
		b.inline = bt.next
	} else {
		bt.prev.next = bt.next
	}
	if bt.next != nil {
		bt.next.prev = bt.prev
	}
	bt.prev, bt.next = nil, nil
}

// deliver hands each caller of bt its result; the channels are buffered,
// so it never blocks, whether or not the caller still waits. A caller that
// sent its request itself (see Submit) has no channel: it reads its
// result from bt once it sees it done. b.mu is held.
func deliver(bt *batch) {
	for i, it := range bt.items {
		it.state = stateDone
		it.bt = nil
		if it.done != nil {
			it.answer(bt.results[i])
		}
	}
}
