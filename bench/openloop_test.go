package bench

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/valyala/fasthttp"
)

// stallingServer answers in 1ms, except that it stops answering from
// stallAt for stall: what is in flight or arrives then completes when the
// stall ends. Times are from the loop's start. It runs in virtual time
// under synctest.
func stallingServer(start time.Time, stallAt, stall time.Duration) TargetFunc {
	return func(ctx context.Context) error {
		now := time.Since(start)
		wait := time.Millisecond
		if now+wait > stallAt && now < stallAt+stall {
			wait = stallAt + stall - now
		}
		select {
		case <-time.After(wait):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// TestOpenLoopCoordinatedOmission is the test: a server that stalls
// for 1s in a 10s open-loop run at 1000 requests/s must show the stall in
// p99. 1000 of the 10,000 requests are sent into the stall and wait from
// 1s down to nothing, so the true p99 is about 0.9s. With few workers a
// closed-loop measurement (from the actual send) sees only the handful of
// requests in flight when the stall began, and a p99 of about 1ms: the
// open loop must not.
func TestOpenLoopCoordinatedOmission(t *testing.T) {
	for _, tc := range []struct {
		name        string
		maxInflight int
	}{
		{"a worker per request", 2000},
		{"four workers", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				srv := stallingServer(start, 5*time.Second, time.Second)
				res, err := RunOpenLoop(context.Background(), srv, OpenLoopOptions{
					Rate: 1000, Duration: 10 * time.Second, MaxInflight: tc.maxInflight, Clock: SystemClock{},
				})
				if err != nil {
					t.Fatal(err)
				}
				if res.Requests != 10_000 || res.Errors != 0 {
					t.Fatalf("requests %d errors %d (%s), want 10000 and 0", res.Requests, res.Errors, res.FirstError)
				}
				if res.P99 < 500*time.Millisecond || res.P99 > time.Second {
					t.Errorf("p99 = %v, want the stall to show: between 0.5s and 1s", res.P99)
				}
				if res.P50 > 2*time.Millisecond {
					t.Errorf("p50 = %v, want about 1ms", res.P50)
				}
				if res.Max < 990*time.Millisecond {
					t.Errorf("max = %v, want about the 1s stall", res.Max)
				}
				if tc.maxInflight == 4 {
					if res.ServiceP99 > 10*time.Millisecond {
						t.Errorf("service p99 = %v: with 4 workers the uncorrected figure should hide the stall", res.ServiceP99)
					}
					if res.Late < 500 || res.Concurrency != 4 {
						t.Errorf("late %d, peak in flight %d: want most of the stall's sends late and 4 in flight", res.Late, res.Concurrency)
					}
				}
				// The timeline shows the stall where it happened.
				var worst TimePoint
				for _, p := range res.Timeline {
					if p.P99 > worst.P99 {
						worst = p
					}
				}
				if worst.Offset < 4900*time.Millisecond || worst.Offset > 6*time.Second {
					t.Errorf("the timeline's worst interval starts at %v, want at the stall (5s)", worst.Offset)
				}
			})
		})
	}
}

func TestOpenLoopRateAndCount(t *testing.T) {
	for _, tc := range []struct {
		name     string
		arrivals string
		opts     OpenLoopOptions
		want     int64
	}{
		{"constant, duration bounded", ArrivalsConstant, OpenLoopOptions{Rate: 200, Duration: 2 * time.Second}, 400},
		{"constant, count bounded", ArrivalsConstant, OpenLoopOptions{Rate: 200, Duration: time.Minute, Requests: 150}, 150},
		{"poisson, count bounded", ArrivalsPoisson, OpenLoopOptions{Rate: 500, Duration: time.Minute, Requests: 1000, Seed: 3}, 1000},
		{"warm-up not measured", ArrivalsConstant, OpenLoopOptions{Rate: 100, Warmup: time.Second, Duration: time.Second}, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var sent atomic.Int64
				srv := TargetFunc(func(context.Context) error {
					sent.Add(1)
					time.Sleep(2 * time.Millisecond)
					return nil
				})
				opts := tc.opts
				opts.Arrivals, opts.Clock = tc.arrivals, SystemClock{}
				res, err := RunOpenLoop(context.Background(), srv, opts)
				if err != nil {
					t.Fatal(err)
				}
				if res.Requests != tc.want {
					t.Errorf("measured %d requests, want %d", res.Requests, tc.want)
				}
				if opts.Warmup > 0 && sent.Load() != 2*tc.want {
					t.Errorf("sent %d in all, want %d with the warm-up", sent.Load(), 2*tc.want)
				}
				if res.Mode != ModeOpen || res.TargetRate != opts.Rate || res.Arrivals != tc.arrivals {
					t.Errorf("mode %q rate %v arrivals %q", res.Mode, res.TargetRate, res.Arrivals)
				}
				if tc.arrivals == ArrivalsConstant && (res.AchievedRate < 0.98*opts.Rate || res.AchievedRate > 1.02*opts.Rate) {
					t.Errorf("achieved %v/s of %v/s", res.AchievedRate, opts.Rate)
				}
				if res.P50 != 2*time.Millisecond || res.Late != 0 {
					t.Errorf("p50 %v late %d, want 2ms and 0 in virtual time", res.P50, res.Late)
				}
			})
		})
	}
}

func TestOpenLoopCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		srv := TargetFunc(func(ctx context.Context) error {
			select {
			case <-time.After(time.Millisecond):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		time.AfterFunc(1500*time.Millisecond, cancel)
		res, err := RunOpenLoop(ctx, srv, OpenLoopOptions{Rate: 100, Duration: time.Hour, Clock: SystemClock{}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Requests < 140 || res.Requests > 151 || res.Errors != 0 {
			t.Errorf("an open loop cancelled after 1.5s at 100/s measured %d requests, %d errors", res.Requests, res.Errors)
		}
	})
}

func TestOpenLoopInvalidOptions(t *testing.T) {
	ok := TargetFunc(func(context.Context) error { return nil })
	for _, opts := range []OpenLoopOptions{{}, {Rate: -1}, {Rate: 10, MaxInflight: -1}, {Rate: 10, Arrivals: "x"}, {Rate: 10, Duration: -1}} {
		if _, err := RunOpenLoop(context.Background(), ok, opts); err == nil {
			t.Errorf("RunOpenLoop(%+v) = nil error", opts)
		}
	}
	if _, err := RunOpenLoop(context.Background(), nil, OpenLoopOptions{Rate: 1}); err == nil {
		t.Error("a nil target must be an error")
	}
}

// TestOpenLoopStallOnLoopback is the coordinated-omission test in real
// time, scaled down, against a REST server on loopback with the precise
// clock: a 100ms stall in a 1s run at 1000/s must show in p99.
func TestOpenLoopStallOnLoopback(t *testing.T) {
	var stallFrom, stallTo atomic.Int64 // unix ns
	body := IrisResponseJSON("iris")
	rt := newMemRESTTarget(t, func(ctx *fasthttp.RequestCtx) {
		if now := time.Now().UnixNano(); now >= stallFrom.Load() && now < stallTo.Load() {
			time.Sleep(time.Duration(stallTo.Load() - now))
		}
		ctx.Response.SetBodyRaw(body)
	})
	start := time.Now()
	stallFrom.Store(start.Add(400 * time.Millisecond).UnixNano())
	stallTo.Store(start.Add(500 * time.Millisecond).UnixNano())
	res, err := RunOpenLoop(context.Background(), rt, OpenLoopOptions{Rate: 1000, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 || res.Requests < 990 {
		t.Fatalf("requests %d errors %d (%s)", res.Requests, res.Errors, res.FirstError)
	}
	if res.P99 < 50*time.Millisecond {
		t.Errorf("p99 = %v, want the 100ms stall to show (at least 50ms)", res.P99)
	}
	t.Logf("p50 %v p99 %v max %v; send lag p50 %v p99 %v; late %d", res.P50, res.P99, res.Max, res.SendLagP50, res.SendLagP99, res.Late)
}
