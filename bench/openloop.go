package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// OpenLoopOptions configures an open-loop run: requests are sent on a
// schedule, whether or not earlier ones have been answered. Zero fields
// take the documented defaults; a run is always bounded in time.
type OpenLoopOptions struct {
	// Rate is the intended rate in requests per second. Required.
	Rate float64
	// Arrivals is ArrivalsConstant (default) or ArrivalsPoisson; Seed
	// drives the Poisson gaps.
	Arrivals string
	Seed     uint64
	// MaxInflight bounds the requests in flight at once (default 1024).
	// When that many are outstanding the next send waits, and since
	// latency runs from the intended send time the wait is counted.
	MaxInflight int
	// LateAfter is how far behind its intended time a send may start
	// before it counts in Result.Late (default 1ms).
	LateAfter time.Duration
	// Warmup, Duration, Requests, StopTimeout, TimelineInterval, Progress
	// and ProgressInterval are as in LoopOptions; Requests bounds the
	// measured sends.
	Warmup           time.Duration
	Duration         time.Duration
	Requests         int64
	StopTimeout      time.Duration
	TimelineInterval time.Duration
	Progress         func(Progress)
	ProgressInterval time.Duration
	// Clock times the schedule (default PreciseClock).
	Clock Clock
}

// tick is one intended send.
type tick struct {
	at       time.Time
	measured bool
}

// RunOpenLoop sends to t at opts.Rate until the measured window ends,
// opts.Requests were sent, or ctx is done, and returns what it measured.
//
// One scheduler goroutine computes the intended send times (Schedule),
// waits for each and hands it to an idle worker; when none is idle it
// starts another, up to MaxInflight, and beyond that waits for one. Each
// request's latency runs from its intended time to its completion, so time
// a request spent held back (by a server that stopped answering, or by a
// generator that could not keep up) is counted, not hidden: coordinated
// omission is corrected. Result.ServiceP50/P99 give the latency from the
// actual send for comparison, SendLagP50/P99 and Late how far sends fell
// behind. Requests cancelled with ctx are not counted. It returns an error
// only for invalid options.
func RunOpenLoop(ctx context.Context, t Target, opts OpenLoopOptions) (*Result, error) {
	if t == nil {
		return nil, errors.New("bench: RunOpenLoop: target is nil")
	}
	if opts.MaxInflight < 0 || opts.Warmup < 0 || opts.Duration < 0 || opts.Requests < 0 || opts.StopTimeout < 0 || opts.LateAfter < 0 {
		return nil, fmt.Errorf("bench: RunOpenLoop: negative option in %+v", opts)
	}
	if opts.Arrivals == "" {
		opts.Arrivals = ArrivalsConstant
	}
	sched, err := NewSchedule(opts.Arrivals, opts.Rate, opts.Seed)
	if err != nil {
		return nil, err
	}
	if opts.MaxInflight == 0 {
		opts.MaxInflight = 1024
	}
	if opts.LateAfter == 0 {
		opts.LateAfter = time.Millisecond
	}
	if opts.Duration == 0 {
		opts.Duration = 10 * time.Second
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = 10 * time.Second
	}
	clock := opts.Clock
	if clock == nil {
		clock = PreciseClock{}
	}

	start := clock.Now()
	measureAt := start.Add(opts.Warmup)
	endAt := measureAt.Add(opts.Duration)
	doCtx, cancel := context.WithDeadline(ctx, endAt.Add(opts.StopTimeout))
	defer cancel()

	shards := min(opts.MaxInflight, 4*runtime.GOMAXPROCS(0))
	rec := newRecorder(shards, measureAt, true, opts.LateAfter, opts.TimelineInterval)
	bytes := startBytes(t, measureAt)
	stopProgress := reportProgress(ctx, opts.Progress, opts.ProgressInterval, start, measureAt, rec)

	ol := &openLoop{t: t, ctx: doCtx, clock: clock, rec: rec, shards: shards, ticks: make(chan tick)}
	ol.schedule(ctx, sched, opts, start, measureAt, endAt)
	ol.wg.Wait()
	stopProgress()

	res := rec.result()
	res.Mode = ModeOpen
	res.TargetRate = opts.Rate
	res.Arrivals = opts.Arrivals
	res.Concurrency = int(ol.peak.Load())
	bytes.finish(res)
	return res, nil
}

type openLoop struct {
	t       Target
	ctx     context.Context // what requests run under
	clock   Clock
	rec     *recorder
	shards  int
	ticks   chan tick
	wg      sync.WaitGroup
	workers int // started so far; the scheduler's own
	inNow   atomic.Int64
	peak    atomic.Int64
}

// schedule hands out the intended sends until the window ends, the count
// is reached or ctx is done, then closes the ticks so the workers end.
func (ol *openLoop) schedule(ctx context.Context, sched *Schedule, opts OpenLoopOptions, start, measureAt, endAt time.Time) {
	defer close(ol.ticks)
	var measured int64
	for {
		at := start.Add(sched.Next())
		if !at.Before(endAt) {
			return
		}
		tk := tick{at: at, measured: !at.Before(measureAt)}
		if tk.measured && opts.Requests > 0 {
			if measured == opts.Requests {
				return
			}
			measured++
		}
		ol.clock.SleepUntil(ctx, at)
		if ctx.Err() != nil {
			return
		}
		select {
		case ol.ticks <- tk:
			continue
		default:
		}
		if ol.workers < opts.MaxInflight {
			ol.workers++
			id := ol.workers
			ol.wg.Go(func() { ol.work(id%ol.shards, tk) })
			continue
		}
		select {
		case ol.ticks <- tk:
		case <-ctx.Done():
			return
		}
	}
}

// work sends first, then every tick it receives.
func (ol *openLoop) work(shard int, first tick) {
	ol.send(shard, first)
	for tk := range ol.ticks {
		ol.send(shard, tk)
	}
}

func (ol *openLoop) send(shard int, tk tick) {
	sent := ol.clock.Now()
	n := ol.inNow.Add(1)
	for {
		p := ol.peak.Load()
		if n <= p || ol.peak.CompareAndSwap(p, n) {
			break
		}
	}
	err := ol.t.Do(ol.ctx)
	end := ol.clock.Now()
	ol.inNow.Add(-1)
	if !tk.measured || (err != nil && ol.ctx.Err() != nil) {
		return // warm-up, or cancelled rather than failed
	}
	ol.rec.record(shard, tk.at, sent, end, err)
}
