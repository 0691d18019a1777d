package bench

import (
	"context"
	"sync"
	"time"
)

// Progress is a loop's running count, given to LoopOptions.Progress and
// OpenLoopOptions.Progress while the run goes on.
type Progress struct {
	// Warmup is true before the measured window starts; the counts are
	// then zero.
	Warmup bool
	// Elapsed runs from the start of the measured window (from the start
	// of the warm-up while Warmup is true).
	Elapsed time.Duration
	// Requests and Errors count the measured requests completed so far.
	Requests, Errors int64
}

// DefaultProgressInterval is how often a loop reports Progress when it
// sets no interval.
const DefaultProgressInterval = 500 * time.Millisecond

// recorder collects what the workers of one run measured. Workers record
// into shards, each with its own lock and histograms; a closed loop gives
// each worker its own shard (no contention), an open loop shares a few
// shards among many short-lived workers, so that memory stays bounded.
// Recording allocates nothing, except when a shard sees its first error
// kind and when the timeline starts a chunk.
type recorder struct {
	shards    []recShard
	measureAt time.Time
	open      bool
	lateAfter time.Duration
	tl        *timeline
}

type recShard struct {
	mu       sync.Mutex
	hist     *Histogram // latency of successes
	svc, lag *Histogram // open loop: service time and send lag
	requests int64
	errors   int64
	late     int64
	firstErr error
	errs     errorTally
	last     time.Time // when the last measured request finished
	tl       timelineAcc
	_        [64]byte // keeps neighbouring shards' locks off one cache line
}

func newRecorder(shards int, measureAt time.Time, open bool, lateAfter, interval time.Duration) *recorder {
	r := &recorder{shards: make([]recShard, shards), measureAt: measureAt, open: open, lateAfter: lateAfter, tl: newTimeline(interval)}
	for i := range r.shards {
		s := &r.shards[i]
		s.hist = new(Histogram)
		if open {
			s.svc, s.lag = new(Histogram), new(Histogram)
		}
		s.tl.idx = -1
	}
	return r
}

// record counts one measured request intended at intended (the actual send
// time in a closed loop), sent at sent and completed at end.
func (r *recorder) record(shard int, intended, sent, end time.Time, err error) {
	lat := end.Sub(intended)
	s := &r.shards[shard]
	s.mu.Lock()
	s.tl.record(r.tl, intended.Sub(r.measureAt), lat, err != nil)
	s.requests++
	if end.After(s.last) {
		s.last = end
	}
	if r.open {
		lag := sent.Sub(intended)
		s.lag.Record(lag)
		if lag > r.lateAfter {
			s.late++
		}
	}
	if err != nil {
		s.errors++
		if s.firstErr == nil {
			s.firstErr = err
		}
		s.errs.add(ErrorKind(err), 1)
	} else {
		s.hist.Record(lat)
		if r.open {
			s.svc.Record(end.Sub(sent))
		}
	}
	s.mu.Unlock()
}

// counts returns the measured requests and errors so far.
func (r *recorder) counts() (requests, errors int64) {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		requests += s.requests
		errors += s.errors
		s.mu.Unlock()
	}
	return requests, errors
}

// result merges the shards once the workers are done.
func (r *recorder) result() *Result {
	res := &Result{Latency: new(Histogram)}
	var svc, lag *Histogram
	if r.open {
		svc, lag = new(Histogram), new(Histogram)
	}
	var last time.Time
	var errs errorTally
	for i := range r.shards {
		s := &r.shards[i]
		s.tl.flush(r.tl)
		res.Requests += s.requests
		res.Errors += s.errors
		res.Late += s.late
		if res.FirstError == "" && s.firstErr != nil {
			res.FirstError = s.firstErr.Error()
		}
		for k, n := range s.errs {
			errs.add(k, n)
		}
		res.Latency.Merge(s.hist)
		if r.open {
			svc.Merge(s.svc)
			lag.Merge(s.lag)
		}
		if s.last.After(last) {
			last = s.last
		}
	}
	res.ErrorKinds = errs.sorted()
	if last.After(r.measureAt) {
		res.Elapsed = last.Sub(r.measureAt)
	}
	if r.open {
		res.ServiceP50, res.ServiceP99 = svc.Quantile(0.5), svc.Quantile(0.99)
		res.SendLagP50, res.SendLagP99 = lag.Quantile(0.5), lag.Quantile(0.99)
	}
	res.Timeline, res.TimelineInterval = r.tl.points(maxTimelinePoints)
	res.summarize()
	return res
}

// maxTimelinePoints bounds the points of a Result's Timeline.
const maxTimelinePoints = 200

// byteWindow reads a target's byte counts at the start of the measured
// window and at the end of the run.
type byteWindow struct {
	bc         ByteCounter
	mu         sync.Mutex
	sent, recv int64
	taken      bool
	timer      *time.Timer
}

// startBytes snapshots t's counts at measureAt, if t counts bytes.
func startBytes(t Target, measureAt time.Time) *byteWindow {
	bc, ok := t.(ByteCounter)
	if !ok {
		return nil
	}
	w := &byteWindow{bc: bc}
	if d := time.Until(measureAt); d > 0 {
		w.timer = time.AfterFunc(d, w.snapshot)
	} else {
		w.snapshot()
	}
	return w
}

func (w *byteWindow) snapshot() {
	s, r := w.bc.BytesMoved()
	w.mu.Lock()
	if !w.taken {
		w.sent, w.recv, w.taken = s, r, true
	}
	w.mu.Unlock()
}

// finish stores the bytes moved during the window in res.
func (w *byteWindow) finish(res *Result) {
	if w == nil {
		return
	}
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Lock()
	taken, s0, r0 := w.taken, w.sent, w.recv
	w.mu.Unlock()
	if !taken {
		return // the run ended before the window began
	}
	s, r := w.bc.BytesMoved()
	res.BytesSent, res.BytesReceived = s-s0, r-r0
}

// reportProgress calls fn every interval until ctx is done, from its own
// goroutine; the returned function stops it and waits for it.
func reportProgress(ctx context.Context, fn func(Progress), interval time.Duration, start, measureAt time.Time, rec *recorder) func() {
	if fn == nil {
		return func() {}
	}
	if interval <= 0 {
		interval = DefaultProgressInterval
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				if now.Before(measureAt) {
					fn(Progress{Warmup: true, Elapsed: now.Sub(start)})
					continue
				}
				n, e := rec.counts()
				fn(Progress{Elapsed: now.Sub(measureAt), Requests: n, Errors: e})
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
