package bench

import (
	"sync/atomic"
	"time"
)

// The timeline keeps, for each interval of a run, a coarse latency
// histogram (8 buckets per power of two, within 6% of the exact value), an
// error count and the exact maximum. Workers record into it with atomic
// adds, without a lock and without allocating, except once per
// timelineChunk intervals when a chunk is made.
const (
	coarseSubBits = 3
	coarseSub     = 1 << coarseSubBits
	coarseBuckets = (maxValueBits-coarseSubBits)*coarseSub + coarseSub

	timelineChunkLen  = 64
	maxTimelineChunks = 1024

	// DefaultTimelineInterval is the timeline's resolution when a loop sets
	// none.
	DefaultTimelineInterval = 100 * time.Millisecond
)

type timelineSlot struct {
	counts [coarseBuckets]atomic.Uint32
	errors atomic.Uint32
	max    atomic.Int64
}

type timelineChunk [timelineChunkLen]timelineSlot

// timeline records latencies by the interval in which each request was
// sent (its intended time in an open loop). It is safe for concurrent use.
type timeline struct {
	interval time.Duration
	chunks   [maxTimelineChunks]atomic.Pointer[timelineChunk]
	used     atomic.Int64 // highest slot index recorded, plus one
}

func newTimeline(interval time.Duration) *timeline {
	if interval <= 0 {
		interval = DefaultTimelineInterval
	}
	return &timeline{interval: interval}
}

func coarseBucketOf(v int64) int { return logBucketOf(v, coarseSubBits) }

// slot returns the slot of interval idx, making its chunk if needed, or
// nil when idx is out of range.
func (tl *timeline) slot(idx int64) *timelineSlot {
	c := idx / timelineChunkLen
	if idx < 0 || c >= maxTimelineChunks {
		return nil
	}
	ch := tl.chunks[c].Load()
	if ch == nil {
		ch = new(timelineChunk)
		if !tl.chunks[c].CompareAndSwap(nil, ch) {
			ch = tl.chunks[c].Load()
		}
	}
	for {
		u := tl.used.Load()
		if idx < u || tl.used.CompareAndSwap(u, idx+1) {
			break
		}
	}
	return &ch[idx%timelineChunkLen]
}

func (s *timelineSlot) addMax(v int64) {
	for {
		m := s.max.Load()
		if v <= m || s.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// clampLatency is a latency as a histogram value.
func clampLatency(d time.Duration) int64 {
	return min(max(int64(d), 0), maxTrackable)
}

// record counts one request sent at offset from the start of the measured
// window: its latency, or an error. Offsets out of range are dropped.
func (tl *timeline) record(offset, latency time.Duration, failed bool) {
	if offset < 0 {
		return
	}
	s := tl.slot(int64(offset / tl.interval))
	if s == nil {
		return
	}
	if failed {
		s.errors.Add(1)
		return
	}
	v := clampLatency(latency)
	s.counts[coarseBucketOf(v)].Add(1)
	s.addMax(v)
}

// timelineAcc gathers one recorder shard's requests of the current
// interval without atomics, and adds them to the shared timeline when the
// shard moves to a later interval: workers on different cores then share
// no cache line per request. A request of an earlier interval (an open
// loop's late completion) goes to the timeline directly. An accumulator is
// guarded by its shard's lock.
type timelineAcc struct {
	idx    int64 // the interval gathered; -1 when empty
	counts [coarseBuckets]uint32
	errors uint32
	max    int64
	n      uint32
}

func (a *timelineAcc) record(tl *timeline, offset, latency time.Duration, failed bool) {
	if offset < 0 {
		return
	}
	idx := int64(offset / tl.interval)
	switch {
	case idx < a.idx:
		tl.record(offset, latency, failed)
		return
	case idx > a.idx:
		a.flush(tl)
		a.idx = idx
	}
	a.n++
	if failed {
		a.errors++
		return
	}
	v := clampLatency(latency)
	a.counts[coarseBucketOf(v)]++
	a.max = max(a.max, v)
}

// flush adds what a holds to tl and empties it.
func (a *timelineAcc) flush(tl *timeline) {
	if a.n == 0 {
		return
	}
	if s := tl.slot(a.idx); s != nil {
		for b, c := range a.counts {
			if c > 0 {
				s.counts[b].Add(c)
			}
		}
		s.errors.Add(a.errors)
		s.addMax(a.max)
	}
	*a = timelineAcc{idx: a.idx}
}

// TimePoint is what happened to the requests sent during one interval of a
// run.
type TimePoint struct {
	// Offset is the start of the interval from the start of the measured
	// window.
	Offset time.Duration `json:"offset_ns"`
	// Requests counts the requests sent in the interval that completed,
	// errors included; Errors those that failed.
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	// Latencies of the successful ones, from the coarse histogram (within
	// 6%), and the exact maximum.
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

// points summarizes the timeline into at most maxPoints points, merging
// neighbouring intervals when there are more, and returns them with the
// length of one point. It must not run concurrently with record.
func (tl *timeline) points(maxPoints int) ([]TimePoint, time.Duration) {
	n := tl.used.Load()
	if n == 0 || maxPoints <= 0 {
		return nil, tl.interval
	}
	k := (n + int64(maxPoints) - 1) / int64(maxPoints)
	out := make([]TimePoint, 0, (n+k-1)/k)
	var counts [coarseBuckets]uint64
	for start := int64(0); start < n; start += k {
		clear(counts[:])
		p := TimePoint{Offset: time.Duration(start) * tl.interval}
		var total uint64
		for idx := start; idx < min(start+k, n); idx++ {
			ch := tl.chunks[idx/timelineChunkLen].Load()
			if ch == nil {
				continue
			}
			s := &ch[idx%timelineChunkLen]
			for b := range counts {
				if c := s.counts[b].Load(); c > 0 {
					counts[b] += uint64(c)
					total += uint64(c)
				}
			}
			p.Errors += int64(s.errors.Load())
			p.Max = max(p.Max, time.Duration(s.max.Load()))
		}
		p.Requests = int64(total) + p.Errors
		p.P50 = coarseQuantile(&counts, total, 0.5, p.Max)
		p.P99 = coarseQuantile(&counts, total, 0.99, p.Max)
		out = append(out, p)
	}
	return out, time.Duration(k) * tl.interval
}

// coarseQuantile returns the middle of the bucket holding the q-quantile,
// capped at the exact maximum.
func coarseQuantile(counts *[coarseBuckets]uint64, total uint64, q float64, maxV time.Duration) time.Duration {
	if total == 0 {
		return 0
	}
	b := rankBucket(counts[:], total, q)
	if b < 0 {
		return maxV
	}
	lo, w := logBucketRange(b, coarseSubBits)
	return min(time.Duration(lo+w/2), maxV)
}
