package batcher

import (
	"container/heap"
	"time"

	"github.com/infergate/infergate/oip"
)

// itemState is where a request is; it changes only under Batcher.mu.
type itemState uint8

const (
	stateQueued    itemState = iota
	stateInFlight            // in a batch sent upstream
	stateAbandoned           // in flight, but the caller has given up
	stateDone                // answered
)

// result is a caller's answer, with when its batch's upstream call began,
// how long it took, and how many requests the batch held (see Timing).
type result struct {
	resp     *oip.InferResponse
	err      error
	sent     time.Time
	elapsed  time.Duration
	requests int
}

// answer returns r's answer, after filling t's upstream call (when t is
// not nil and r came from a call).
func (r *result) answer(t *Timing) (*oip.InferResponse, error) {
	if t != nil && !r.sent.IsZero() {
		t.Sent, t.Returned, t.Requests = r.sent, r.sent.Add(r.elapsed), r.requests
	}
	return r.resp, r.err
}

// item is one request known to the batcher. Its fields from done on are
// guarded by Batcher.mu, but for res, which its caller reads once done has
// delivered.
type item struct {
	req      *oip.InferRequest
	rows     int64
	alone    bool   // sent alone, unmerged: in the group of key ""
	level    int    // priority index, 0 the highest; delayedLevel once delayed
	seq      uint64 // arrival order
	enqueued time.Time
	deadline time.Time // the context's; zero when none
	timeout  time.Time // the queue policy's; zero when none or spent
	// done receives one value once res holds the answer (see answer).
	// A caller that sends its request itself (see Batcher.takeInline)
	// has none unless it must wait for its answer after all.
	done chan struct{}
	res  result

	state      itemState
	grp        *group
	prev, next *item // in grp.levels[level]
	heapIdx    int   // in Batcher.timeouts; -1 when not there
	bt         *batch
}

// answer gives it its result and wakes its caller; the channel is
// buffered, so it never blocks, whether or not the caller still waits.
// b.mu is held.
func (it *item) answer(r result) {
	it.res = r
	it.done <- struct{}{}
}

// expiry returns when the scheduler must next look at it: the earlier of
// its deadline and its queue timeout, or zero.
func (it *item) expiry() time.Time {
	return earliest(it.deadline, it.timeout)
}

// dueBy returns the time by which it must be answered to be of use: its
// deadline, or its queue timeout when that rejects.
func (it *item) dueBy(action TimeoutAction) time.Time {
	if action == TimeoutReject {
		return earliest(it.deadline, it.timeout)
	}
	return it.deadline
}

// earliest returns the earlier of two times, where zero means never.
func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

// list is an intrusive FIFO of items.
type list struct{ head, tail *item }

func (l *list) push(it *item) {
	it.prev, it.next = l.tail, nil
	if l.tail == nil {
		l.head = it
	} else {
		l.tail.next = it
	}
	l.tail = it
}

func (l *list) remove(it *item) {
	if it.prev == nil {
		l.head = it.next
	} else {
		it.prev.next = it.next
	}
	if it.next == nil {
		l.tail = it.prev
	} else {
		it.next.prev = it.prev
	}
	it.prev, it.next = nil, nil
}

// group holds the queued requests of one compatibility key, one FIFO per
// priority level and a last one for requests delayed by their queue
// policy. The group of requests sent alone has the key "" and is never
// merged.
type group struct {
	key    string
	levels []list
	n      int // queued items
	idx    int // in Batcher.groups; -1 when empty

	// What the hold rule (see Batcher.hold) knows of the group's traffic;
	// kept while an empty group stays cached.
	inFlight int           // requests upstream
	last     time.Time     // the latest arrival
	gap      time.Duration // moving average of the time between arrivals
	gaps     int           // gaps seen, up to gapWeight: gap is valid once it is 1
	// burstGap averages only the gaps within a period, between arrivals
	// with no batch of the group coming back in between: how fast callers
	// come back once answered, not how long the runtime took.
	burstGap  time.Duration
	burstGaps int
	back      time.Time // when a batch of the group last came back
	// peak is the most requests the group has had outstanding (queued or
	// upstream) since its last batch came back, prevPeak the most in the
	// period before: closed-loop callers whose answers came back are
	// expected back while fewer than those are outstanding.
	peak, prevPeak int
}

// gapWeight is the moving average's memory, in arrivals: each gap counts
// 1/gapWeight, so the average spans a few batches' arrivals and learns a
// new rate within a few dozen requests.
const gapWeight = 16

// arrive records an arrival at now, after the request was queued.
func (g *group) arrive(now time.Time) {
	if !g.last.IsZero() {
		d := max(now.Sub(g.last), 0)
		average(&g.gap, &g.gaps, d)
		if g.last.After(g.back) {
			average(&g.burstGap, &g.burstGaps, d)
		}
	}
	g.last = now
	g.peak = max(g.peak, g.outstanding())
}

// average adds d to the moving average avg of n samples, n counting up to
// gapWeight: below it the plain mean, so that the first samples are not
// weighed against nothing.
func average(avg *time.Duration, n *int, d time.Duration) {
	if *n < gapWeight {
		*n++
	}
	*avg += (d - *avg) / time.Duration(*n)
}

// outstanding returns the group's requests queued or upstream.
func (g *group) outstanding() int { return g.n + g.inFlight }

// population returns how many requests the group is expected to have
// outstanding: the most seen over its last two periods between batches
// coming back.
func (g *group) population() int { return max(g.peak, g.prevPeak) }

// returned records that a batch of n of the group's requests came back
// at now: a new period begins.
func (g *group) returned(n int, now time.Time) {
	g.inFlight -= n
	g.back = now
	g.prevPeak = g.peak
	g.peak = g.outstanding()
}

// gaveUp records that a queued request, still counted in g.n, is leaving
// because its caller gave up or its deadline passed: its caller is not
// expected back, so the population shrinks by one.
func (g *group) gaveUp() {
	out := g.outstanding() - 1
	g.peak = max(g.peak-1, out)
	g.prevPeak = max(g.prevPeak-1, out)
}

// maxCachedGroups bounds the groups kept for reuse once empty, so that a
// steady stream of requests does not allocate a group for each.
const maxCachedGroups = 64

// head returns the item the group would send first.
func (g *group) head() *item {
	for l := range g.levels {
		if h := g.levels[l].head; h != nil {
			return h
		}
	}
	return nil
}

// before reports whether a goes before b between groups: higher priority,
// then earlier arrival.
func before(a, b *item) bool {
	if a.level != b.level {
		return a.level < b.level
	}
	return a.seq < b.seq
}

// timeoutHeap orders queued items with an expiry by it, earliest first.
type timeoutHeap []*item

func (h timeoutHeap) Len() int           { return len(h) }
func (h timeoutHeap) Less(i, j int) bool { return h[i].expiry().Before(h[j].expiry()) }
func (h timeoutHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
func (h *timeoutHeap) Push(x any) {
	it := x.(*item)
	it.heapIdx = len(*h)
	*h = append(*h, it)
}
func (h *timeoutHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	it.heapIdx = -1
	return it
}

// enqueue adds it to the group of key (empty for a request sent alone),
// creating or reviving the group, and to the timeouts. b.mu is held.
func (b *Batcher) enqueue(it *item, key []byte) {
	g := b.byKey[string(key)]
	if g == nil {
		g = &group{key: string(key), levels: make([]list, b.opts.PriorityLevels+1), idx: -1}
		b.byKey[g.key] = g
	}
	if g.idx < 0 {
		g.idx = len(b.groups)
		b.groups = append(b.groups, g)
	}
	it.grp = g
	g.levels[it.level].push(it)
	g.n++
	g.arrive(it.enqueued)
	it.heapIdx = -1
	if !it.expiry().IsZero() {
		heap.Push(&b.timeouts, it)
	}
	b.queued++
	b.metrics.depth.Set(float64(b.queued))
}

// dequeue removes a queued item from its group and the timeouts, dropping
// the group when it empties. b.mu is held.
func (b *Batcher) dequeue(it *item) {
	g := it.grp
	g.levels[it.level].remove(it)
	g.n--
	it.grp = nil
	if it.heapIdx >= 0 {
		heap.Remove(&b.timeouts, it.heapIdx)
	}
	if g.n == 0 {
		last := b.groups[len(b.groups)-1]
		b.groups[g.idx] = last
		last.idx = g.idx
		b.groups[len(b.groups)-1] = nil
		b.groups = b.groups[:len(b.groups)-1]
		g.idx = -1
		if len(b.byKey) > maxCachedGroups {
			delete(b.byKey, g.key)
		}
	}
	b.queued--
	b.metrics.depth.Set(float64(b.queued))
}

// delay moves a queued item whose queue timeout passed behind every
// undelayed request, as TimeoutDelay says. b.mu is held.
func (b *Batcher) delay(it *item) {
	g := it.grp
	g.levels[it.level].remove(it)
	it.level = len(g.levels) - 1
	g.levels[it.level].push(it)
	it.timeout = time.Time{}
	if it.heapIdx >= 0 {
		if it.deadline.IsZero() {
			heap.Remove(&b.timeouts, it.heapIdx)
		} else {
			heap.Fix(&b.timeouts, it.heapIdx)
		}
	}
}
