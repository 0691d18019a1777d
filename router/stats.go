package router

import (
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// Outcome classifies one answered request for a revision's health.
type Outcome uint8

// The outcomes. A client error (HTTP 4xx, INVALID_ARGUMENT, NOT_FOUND...)
// is the caller's fault and never counts against a revision; a server
// error (5xx, UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED) does.
const (
	OutcomeOK Outcome = iota
	OutcomeClientError
	OutcomeServerError
)

// Latencies are counted in log-linear buckets: 8 per power of two of
// nanoseconds, so a bucket is at most 12.5% wide, from 1 ns to 2^41 ns
// (36 minutes); longer ones land in the last bucket.
const (
	subBits    = 3
	subBuckets = 1 << subBits
	maxExp     = 40
	// NumBuckets is the length of Counts.Latency.
	NumBuckets = (maxExp - subBits + 2) * subBuckets
)

// Stats counts a revision's requests: what progressive rollouts judge and
// what metrics export. Record is lock-free and allocation-free; the zero
// value is ready to use. Counters only grow: readers take a Snapshot and
// subtract an earlier one to judge a window.
type Stats struct {
	inFlight atomic.Int64
	// idle is the channel Idle handed out, nil when no one waits; End
	// closes it when the count reaches zero. idleMu orders the two.
	idle         atomic.Pointer[chan struct{}]
	idleMu       sync.Mutex
	requests     atomic.Uint64
	clientErrors atomic.Uint64
	serverErrors atomic.Uint64
	latency      [NumBuckets]atomic.Uint64
}

// Begin counts a request the revision took and has not answered yet;
// End, once it is answered. InFlight tells an owner retiring a revision
// when the requests that chose it are done, whichever routing table they
// chose it from.
func (s *Stats) Begin() { s.inFlight.Add(1) }

// End undoes one Begin.
func (s *Stats) End() {
	// A load of a nil pointer is all it costs while no one waits.
	if s.inFlight.Add(-1) == 0 && s.idle.Load() != nil {
		s.wakeIdle()
	}
}

// Idle returns a channel closed once no request is in flight: closed
// already when none is now. A request begun after it closed does not
// reopen it; call Idle again to wait for the next time.
func (s *Stats) Idle() <-chan struct{} {
	s.idleMu.Lock()
	defer s.idleMu.Unlock()
	if p := s.idle.Load(); p != nil {
		return *p
	}
	ch := make(chan struct{})
	if s.inFlight.Load() == 0 {
		close(ch)
		return ch
	}
	s.idle.Store(&ch)
	// An End that reached zero before the store saw no one waiting.
	if s.inFlight.Load() == 0 {
		close(ch)
		s.idle.Store(nil)
	}
	return ch
}

func (s *Stats) wakeIdle() {
	s.idleMu.Lock()
	defer s.idleMu.Unlock()
	if p := s.idle.Load(); p != nil && s.inFlight.Load() == 0 {
		close(*p)
		s.idle.Store(nil)
	}
}

// InFlight returns the requests begun and not ended.
func (s *Stats) InFlight() int64 { return s.inFlight.Load() }

// Record counts one answered request that took d.
func (s *Stats) Record(d time.Duration, o Outcome) {
	s.requests.Add(1)
	switch o {
	case OutcomeClientError:
		// A client error says nothing of the revision's speed either.
		s.clientErrors.Add(1)
		return
	case OutcomeServerError:
		s.serverErrors.Add(1)
	}
	s.latency[bucketOf(d)].Add(1)
}

// Snapshot reads the counters. Concurrent Records may land in some
// counters and not yet in others; the skew is a few requests, and never
// makes ClientErrors or ServerErrors exceed Requests: they are read
// before Requests, which Record counts first.
func (s *Stats) Snapshot() Counts {
	var c Counts
	for i := range s.latency {
		c.Latency[i] = s.latency[i].Load()
	}
	c.ClientErrors = s.clientErrors.Load()
	c.ServerErrors = s.serverErrors.Load()
	c.Requests = s.requests.Load()
	return c
}

// Counts is a reading of Stats, or the difference of two readings.
type Counts struct {
	// Requests counts every answered request, client errors included.
	Requests uint64
	// ClientErrors and ServerErrors count the requests with those outcomes.
	ClientErrors, ServerErrors uint64
	// Latency is a histogram of the requests that were not client errors
	// (see BucketBounds).
	Latency [NumBuckets]uint64
}

// Sub returns c minus an earlier reading prev of the same Stats.
func (c Counts) Sub(prev Counts) Counts {
	d := Counts{
		Requests:     c.Requests - prev.Requests,
		ClientErrors: c.ClientErrors - prev.ClientErrors,
		ServerErrors: c.ServerErrors - prev.ServerErrors,
	}
	for i := range c.Latency {
		d.Latency[i] = c.Latency[i] - prev.Latency[i]
	}
	return d
}

// Judged is the number of requests that count for a revision's health:
// all but client errors.
func (c Counts) Judged() uint64 {
	if c.ClientErrors > c.Requests {
		return 0
	}
	return c.Requests - c.ClientErrors
}

// ErrorRate is server errors over judged requests, 0 when none.
func (c Counts) ErrorRate() float64 {
	n := c.Judged()
	if n == 0 {
		return 0
	}
	return float64(c.ServerErrors) / float64(n)
}

// Quantile returns the q-quantile (0 < q <= 1) of the judged requests'
// latency, interpolated within its bucket; 0 when there are none.
func (c Counts) Quantile(q float64) time.Duration {
	var total uint64
	for _, n := range c.Latency {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen float64
	for i, n := range c.Latency {
		if n == 0 {
			continue
		}
		if seen+float64(n) >= rank {
			lo, hi := BucketBounds(i)
			frac := (rank - seen) / float64(n)
			return lo + time.Duration(frac*float64(hi-lo))
		}
		seen += float64(n)
	}
	_, hi := BucketBounds(NumBuckets - 1)
	return hi
}

// bucketOf returns the latency bucket of d.
func bucketOf(d time.Duration) int {
	if d < subBuckets {
		return max(int(d), 0)
	}
	ns := uint64(d)
	e := bits.Len64(ns) - 1 // ns is in [2^e, 2^(e+1))
	if e > maxExp {
		return NumBuckets - 1
	}
	sub := int(ns>>(e-subBits)) & (subBuckets - 1)
	return (e-subBits+1)*subBuckets + sub
}

// BucketBounds returns the latencies [lo, hi) that bucket i counts.
func BucketBounds(i int) (lo, hi time.Duration) {
	if i < subBuckets {
		return time.Duration(i), time.Duration(i + 1)
	}
	e := i/subBuckets + subBits - 1
	sub := i % subBuckets
	step := uint64(1) << (e - subBits)
	base := uint64(1) << e
	return time.Duration(base + uint64(sub)*step), time.Duration(base + uint64(sub+1)*step)
}
