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
}

// Result is what a run measured.
type Result struct {
	// Concurrency is the run's number of workers.
	Concurrency int `json:"concurrency"`
	// Requests counts the requests sent in the measured window that
	// completed, errors included.
	Requests int64 `json:"requests"`
	// Errors counts those that failed; FirstError is the first failure.
	Errors     int64  `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
	// Elapsed runs from the start of the measured window until the last
	// request finished.
	Elapsed time.Duration `json:"elapsed_ns"`
	// RPS is successful requests per second of Elapsed.
	RPS float64 `json:"rps"`
	// Latency quantiles of the successful requests, in nanoseconds.
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	Max  time.Duration `json:"max_ns"`
	Mean time.Duration `json:"mean_ns"`
	// Latency holds every successful request's latency.
	Latency *Histogram `json:"-"`
}

// Merge adds o to r, as if both had run one after the other: counts,
// elapsed time and latencies add up, and the figures are recomputed.
func (r *Result) Merge(o *Result) {
	if r.Latency == nil {
		r.Latency = new(Histogram)
	}
	if r.Concurrency == 0 {
		r.Concurrency = o.Concurrency
	}
	r.Requests += o.Requests
	r.Errors += o.Errors
	if r.FirstError == "" {
		r.FirstError = o.FirstError
	}
	r.Elapsed += o.Elapsed
	if o.Latency != nil {
		r.Latency.Merge(o.Latency)
	}
	r.summarize()
}

func (r *Result) summarize() {
	r.RPS = 0
	if r.Elapsed > 0 {
		r.RPS = float64(r.Requests-r.Errors) / r.Elapsed.Seconds()
	}
	h := r.Latency
	r.P50, r.P90, r.P99, r.Max, r.Mean = h.Quantile(0.5), h.Quantile(0.9), h.Quantile(0.99), h.Max(), h.Mean()
}

// RunClosedLoop drives t with opts.Concurrency workers until the measured
// window ends, opts.Requests were sent, or ctx is done, and returns what it
// measured. Each worker records into its own histogram, so the loop adds no
// allocation and no shared write per request beyond a count when
// opts.Requests is set. Requests that fail because ctx was cancelled are
// not counted. It returns an error only for invalid options.
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
	workers := make([]worker, opts.Concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		w.hist = new(Histogram)
		wg.Go(func() { w.run(ctx, t, measureAt, endAt, budget) })
	}
	wg.Wait()

	res := &Result{Concurrency: opts.Concurrency, Latency: new(Histogram)}
	var last time.Time
	for i := range workers {
		w := &workers[i]
		res.Requests += w.requests
		res.Errors += w.errors
		if res.FirstError == "" && w.firstErr != nil {
			res.FirstError = w.firstErr.Error()
		}
		res.Latency.Merge(w.hist)
		if w.last.After(last) {
			last = w.last
		}
	}
	if last.After(measureAt) {
		res.Elapsed = last.Sub(measureAt)
	}
	res.summarize()
	return res, nil
}

// worker is one closed loop. Its fields are written by its goroutine only
// and read after it ends.
type worker struct {
	hist     *Histogram
	requests int64
	errors   int64
	firstErr error
	last     time.Time // when its last measured request finished
}

func (w *worker) run(ctx context.Context, t Target, measureAt, endAt time.Time, budget *atomic.Int64) {
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
		w.requests++
		w.last = t1
		if err != nil {
			w.errors++
			if w.firstErr == nil {
				w.firstErr = err
			}
			continue
		}
		w.hist.Record(t1.Sub(t0))
	}
}
