package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// LoopOptions bounds a closed-loop run. Zero fields take the documented
// defaults; a run is always bounded in time.
type LoopOptions struct {
	// Concurrency is the number of workers, each with exactly one request
	// in flight at a time (default 1).
	Concurrency int
	// Warmup runs the loop before measuring; what it sends is not
	// recorded (default 0: measure from the first request).
	Warmup time.Duration
	// Duration is the length of the measured window (default 10s). No
	// request starts after it ends; the ones in flight then finish and are
	// recorded.
	Duration time.Duration
	// Requests, when positive, stops the run after this many measured
	// requests, errors included: exactly this many are sent unless the
	// window ends first.
	Requests int64
	// StopTimeout is how long requests still in flight when the window
	// ends may take before ctx given to Target.Do is cancelled (default
	// 10s).
	StopTimeout time.Duration
	// TimelineInterval is the resolution of Result.Timeline (default
	// DefaultTimelineInterval); long runs merge intervals so that the
	// timeline has at most 200 points.
	TimelineInterval time.Duration
	// Progress, when set, is called every ProgressInterval (default
	// DefaultProgressInterval) from a goroutine of the loop's own.
	Progress         func(Progress)
	ProgressInterval time.Duration
}

// RunClosedLoop drives t with opts.Concurrency workers until the measured
// window ends, opts.Requests were sent, or ctx is done, and returns what it
// measured. Each worker records into its own shard of histograms, so the
// loop adds no allocation and no contended write per request beyond a
// count when opts.Requests is set. Requests that fail because ctx was
// cancelled are not counted: a cancelled run returns what it measured
// until then. It returns an error only for invalid options.
func RunClosedLoop(ctx context.Context, t Target, opts LoopOptions) (*Result, error) {
	if t == nil {
		return nil, errors.New("bench: RunClosedLoop: target is nil")
	}
	if opts.Concurrency < 0 || opts.Warmup < 0 || opts.Duration < 0 || opts.Requests < 0 || opts.StopTimeout < 0 {
		return nil, fmt.Errorf("bench: RunClosedLoop: negative option in %+v", opts)
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = 1
	}
	if opts.Duration == 0 {
		opts.Duration = 10 * time.Second
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = 10 * time.Second
	}

	start := time.Now()
	measureAt := start.Add(opts.Warmup)
	endAt := measureAt.Add(opts.Duration)
	ctx, cancel := context.WithDeadline(ctx, endAt.Add(opts.StopTimeout))
	defer cancel()

	var budget *atomic.Int64
	if opts.Requests > 0 {
		budget = new(atomic.Int64)
		budget.Store(opts.Requests)
	}
	rec := newRecorder(opts.Concurrency, measureAt, false, 0, opts.TimelineInterval)
	bytes := startBytes(t, measureAt)
	stopProgress := reportProgress(ctx, opts.Progress, opts.ProgressInterval, start, measureAt, rec)
	var wg sync.WaitGroup
	for i := range opts.Concurrency {
		wg.Go(func() { closedWorker(ctx, t, rec, i, measureAt, endAt, budget) })
	}
	wg.Wait()
	stopProgress()

	res := rec.result()
	res.Mode = ModeClosed
	res.Concurrency = opts.Concurrency
	bytes.finish(res)
	return res, nil
}

// closedWorker is one closed loop, recording into its own shard.
func closedWorker(ctx context.Context, t Target, rec *recorder, shard int, measureAt, endAt time.Time, budget *atomic.Int64) {
	done := ctx.Done()
	for {
		select {
		case <-done:
			return
		default:
		}
		t0 := time.Now()
		if !t0.Before(endAt) {
			return
		}
		measured := !t0.Before(measureAt)
		if measured && budget != nil && budget.Add(-1) < 0 {
			return
		}
		err := t.Do(ctx)
		t1 := time.Now()
		if !measured {
			continue
		}
		if err != nil && ctx.Err() != nil {
			return // cancelled, not failed
		}
		rec.record(shard, t0, t0, t1, err)
	}
}
