package bench

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunClosedLoopCountBounded(t *testing.T) {
	tests := []struct {
		name        string
		concurrency int
		requests    int64
	}{
		{"one worker", 1, 100},
		{"more workers than requests", 16, 5},
		{"many requests", 8, 2000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var sent atomic.Int64
			tgt := TargetFunc(func(context.Context) error { sent.Add(1); return nil })
			res, err := RunClosedLoop(context.Background(), tgt, LoopOptions{
				Concurrency: tc.concurrency, Requests: tc.requests, Duration: 10 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			if sent.Load() != tc.requests || res.Requests != tc.requests {
				t.Errorf("sent %d, reported %d; want exactly %d", sent.Load(), res.Requests, tc.requests)
			}
			if res.Latency.Count() != uint64(tc.requests) || res.Errors != 0 {
				t.Errorf("recorded %d latencies and %d errors, want %d and 0", res.Latency.Count(), res.Errors, tc.requests)
			}
			if res.RPS <= 0 || res.Concurrency != tc.concurrency {
				t.Errorf("RPS %v, concurrency %d", res.RPS, res.Concurrency)
			}
		})
	}
}

func TestRunClosedLoopREST(t *testing.T) {
	h := &countingHandler{body: IrisResponseJSON("iris")}
	rt := newMemRESTTarget(t, h.handle)
	res, err := RunClosedLoop(context.Background(), rt, LoopOptions{Concurrency: 8, Requests: 1000, Duration: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got := h.seen.Load(); got != 1000 || res.Requests != 1000 || res.Errors != 0 {
		t.Fatalf("server saw %d, result %d requests and %d errors (%s); want 1000, 1000, 0", got, res.Requests, res.Errors, res.FirstError)
	}
	if res.P50 <= 0 || res.P50 > res.P99 || res.P99 > res.Max {
		t.Errorf("quantiles out of order: p50 %v p99 %v max %v", res.P50, res.P99, res.Max)
	}
}

func TestRunClosedLoopDurationBounded(t *testing.T) {
	tgt := TargetFunc(func(context.Context) error { time.Sleep(time.Millisecond); return nil })
	const window = 200 * time.Millisecond
	start := time.Now()
	res, err := RunClosedLoop(context.Background(), tgt, LoopOptions{Concurrency: 4, Duration: window})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if took < window || took > window+2*time.Second {
		t.Errorf("run took %v for a %v window", took, window)
	}
	if res.Requests == 0 || res.Elapsed < window-10*time.Millisecond || res.Elapsed > took {
		t.Errorf("requests %d, elapsed %v", res.Requests, res.Elapsed)
	}
}

func TestRunClosedLoopCountsErrors(t *testing.T) {
	h := &countingHandler{failEvery: 4, body: []byte("{}")}
	rt := newMemRESTTarget(t, h.handle)
	res, err := RunClosedLoop(context.Background(), rt, LoopOptions{Concurrency: 4, Requests: 400, Duration: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 400 || res.Errors != 100 {
		t.Fatalf("requests %d errors %d, want 400 and 100", res.Requests, res.Errors)
	}
	if res.Latency.Count() != 300 {
		t.Errorf("recorded %d latencies, want the 300 successes", res.Latency.Count())
	}
	if !strings.Contains(res.FirstError, "500") {
		t.Errorf("FirstError = %q, want the status", res.FirstError)
	}
	wantRPS := 300 / res.Elapsed.Seconds()
	if d := res.RPS - wantRPS; d > 1e-6*wantRPS || d < -1e-6*wantRPS {
		t.Errorf("RPS = %v, want successes per second %v", res.RPS, wantRPS)
	}
}

func TestRunClosedLoopWarmupNotRecorded(t *testing.T) {
	var sent atomic.Int64
	tgt := TargetFunc(func(context.Context) error { sent.Add(1); time.Sleep(100 * time.Microsecond); return nil })
	res, err := RunClosedLoop(context.Background(), tgt, LoopOptions{Concurrency: 2, Warmup: 50 * time.Millisecond, Requests: 20})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 20 || sent.Load() <= 20 {
		t.Errorf("measured %d of %d sent; want 20 measured after a warm-up", res.Requests, sent.Load())
	}
}

func TestRunClosedLoopCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	tgt := TargetFunc(func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	res, err := RunClosedLoop(ctx, tgt, LoopOptions{Concurrency: 4, Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("cancelled run took %v", took)
	}
	if res.Requests != 0 || res.Errors != 0 {
		t.Errorf("cancelled requests were counted: %d requests, %d errors", res.Requests, res.Errors)
	}
}

func TestRunClosedLoopStopTimeoutBoundsHungRequests(t *testing.T) {
	tgt := TargetFunc(func(ctx context.Context) error { <-ctx.Done(); return errors.New("hung") })
	start := time.Now()
	_, err := RunClosedLoop(context.Background(), tgt, LoopOptions{Concurrency: 2, Duration: 20 * time.Millisecond, StopTimeout: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("a hung target kept the run for %v", took)
	}
}

func TestRunClosedLoopInvalidOptions(t *testing.T) {
	ok := TargetFunc(func(context.Context) error { return nil })
	for _, opts := range []LoopOptions{{Concurrency: -1}, {Duration: -1}, {Requests: -1}, {Warmup: -1}} {
		if _, err := RunClosedLoop(context.Background(), ok, opts); err == nil {
			t.Errorf("RunClosedLoop(%+v) = nil error", opts)
		}
	}
	if _, err := RunClosedLoop(context.Background(), nil, LoopOptions{}); err == nil {
		t.Error("a nil target must be an error")
	}
}

func TestResultMerge(t *testing.T) {
	a := &Result{Concurrency: 4, Requests: 100, Errors: 10, Elapsed: time.Second, Latency: new(Histogram)}
	b := &Result{Concurrency: 4, Requests: 300, Errors: 0, Elapsed: time.Second, Latency: new(Histogram), FirstError: "boom"}
	for range 90 {
		a.Latency.Record(time.Millisecond)
	}
	for range 300 {
		b.Latency.Record(3 * time.Millisecond)
	}
	var m Result
	m.Merge(a)
	m.Merge(b)
	if m.Requests != 400 || m.Errors != 10 || m.Elapsed != 2*time.Second || m.RPS != 195 || m.FirstError != "boom" {
		t.Errorf("merged: %+v", m)
	}
	if m.Latency.Count() != 390 || m.P50 < 2*time.Millisecond || m.Concurrency != 4 {
		t.Errorf("merged latencies: count %d p50 %v", m.Latency.Count(), m.P50)
	}
}
