package batcher

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/infergate/infergate/oip"
	"github.com/prometheus/client_golang/prometheus"
)

func TestNewValidatesOptions(t *testing.T) {
	dispatch := (&fakeRuntime{}).dispatch
	tests := []struct {
		name string
		opts Options
		want string // substring of the error
	}{
		{"no dispatch", Options{}, "Options.Dispatch is nil"},
		{"negative max batch size", Options{MaxBatchSize: -1}, "MaxBatchSize -1"},
		{"preferred above max", Options{MaxBatchSize: 4, PreferredBatchSizes: []int64{2, 8}}, "PreferredBatchSizes has 8"},
		{"preferred zero", Options{PreferredBatchSizes: []int64{0}}, "PreferredBatchSizes has 0"},
		{"negative delay", Options{MaxQueueDelay: -time.Second}, "MaxQueueDelay -1s"},
		{"negative queue size", Options{MaxQueueSize: -1}, "MaxQueueSize -1"},
		{"negative priority levels", Options{PriorityLevels: -2}, "PriorityLevels -2"},
		{"default priority out of range", Options{PriorityLevels: 2, DefaultPriority: 3}, "DefaultPriority 3"},
		{"unknown timeout action", Options{DefaultQueuePolicy: QueuePolicy{TimeoutAction: 7}}, "TimeoutAction TimeoutAction(7)"},
		{"negative default timeout", Options{DefaultQueuePolicy: QueuePolicy{DefaultTimeout: -1}}, "DefaultTimeout -1ns"},
		{"unknown oversize policy", Options{OversizePolicy: 9}, "OversizePolicy OversizePolicy(9)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name != "no dispatch" {
				tc.opts.Dispatch = dispatch
			}
			_, err := New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New error = %v, want one containing %q", err, tc.want)
			}
		})
	}

	b, err := New(Options{Dispatch: dispatch, PriorityLevels: 4, PreferredBatchSizes: []int64{8, 2, 8}})
	if err != nil {
		t.Fatal(err)
	}
	got := b.opts
	if got.MaxBatchSize != DefaultMaxBatchSize || got.MaxQueueSize != DefaultMaxQueueSize || got.DefaultPriority != 2 ||
		!cmp.Equal(got.PreferredBatchSizes, []int64{2, 8}) || got.Logger == nil {
		t.Errorf("defaults not applied: %+v", got)
	}
}

func TestSharedRegisterer(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, model := range []string{"a", "b", "a"} {
		if _, err := New(Options{Model: model, Dispatch: (&fakeRuntime{}).dispatch, Registerer: reg}); err != nil {
			t.Fatalf("model %s: %v", model, err)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	want := []string{
		"infergate_batcher_batch_size", "infergate_batcher_expired_total", "infergate_batcher_queue_delay_seconds",
		"infergate_batcher_queue_depth", "infergate_batcher_rejected_total",
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("metric families (-want +got):\n%s", diff)
	}
}

func TestMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{})
		h.occupy()
		h.submit(req("a", 2, "a0"))
		h.submit(req("b", 2, "b0", "b1"))
		h.advance(3 * time.Millisecond)
		if got := metricValue(t, h.b.metrics.depth.(prometheus.Metric)); got != 2 {
			t.Errorf("queue depth = %v, want 2", got)
		}
		h.release(0)
		h.release(1)
		families, err := h.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			m := f.GetMetric()[0]
			if lp := m.GetLabel(); len(lp) == 0 || lp[0].GetName() != "model" || lp[0].GetValue() != "m" {
				t.Errorf("%s: labels %v, want model=m first", f.GetName(), lp)
			}
			switch f.GetName() {
			case "infergate_batcher_batch_size":
				// The blocker's batch of 1 and the merged batch of 3.
				if h := m.GetHistogram(); h.GetSampleCount() != 2 || h.GetSampleSum() != 4 {
					t.Errorf("batch size: %d batches of %v rows, want 2 of 4", h.GetSampleCount(), h.GetSampleSum())
				}
			case "infergate_batcher_queue_delay_seconds":
				// 0 for the blocker, 3ms for a and b.
				if h := m.GetHistogram(); h.GetSampleCount() != 3 || h.GetSampleSum() != 0.006 {
					t.Errorf("queue delay: %d samples summing %v, want 3 summing 0.006", h.GetSampleCount(), h.GetSampleSum())
				}
			case "infergate_batcher_queue_depth":
				if v := m.GetGauge().GetValue(); v != 0 {
					t.Errorf("queue depth = %v, want 0", v)
				}
			}
		}
	})
}

func TestRunLifecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := &fakeRuntime{hold: true}
		b, err := New(Options{Model: "m", Dispatch: rt.dispatch, MaxQueueDelay: time.Hour, Logger: discardLogger})
		if err != nil {
			t.Fatal(err)
		}
		// Requests submitted before Run wait for it.
		blocker := submit(t.Context(), b, req("blk", 3, "blk"))
		synctest.Wait()
		queued := submit(t.Context(), b, req("a", 2, "a0"))
		synctest.Wait()
		if rt.numCalls() != 0 {
			t.Fatal("sent before Run")
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- b.Run(ctx) }()
		synctest.Wait()
		if got := rt.numCalls(); got != 1 {
			t.Fatalf("%d calls after Run started, want 1", got)
		}
		if err := b.Run(ctx); err == nil {
			t.Error("a second Run did not fail")
		}

		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
		synctest.Wait()
		checkErr(t, queued, oip.KindUnavailable, "batcher is stopped")
		checkErr(t, blocker, oip.KindCanceled, "fake runtime") // in flight: its context was cancelled
		late := submit(t.Context(), b, req("c", 2, "c0"))
		synctest.Wait()
		checkErr(t, late, oip.KindUnavailable, "batcher is stopped")
	})
}

func TestSubmitRejectsBadRequests(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		r    *oip.InferRequest
		want string
	}{
		{"nil request", Options{}, nil, "no request"},
		{"no inputs", Options{}, &oip.InferRequest{ModelName: "m"}, "no inputs"},
		{"malformed data", Options{}, func() *oip.InferRequest { r := req("a", 2, "a0"); r.Inputs[0].Data = nil; return r }(), "data has 0 bytes"},
		{"priority not an integer", Options{}, withParam(req("a", 2, "a0"), oip.Parameter{Key: "priority", Kind: oip.ParamString, String: "high"}), `parameter "priority" must be an integer`},
		{"negative timeout", Options{DefaultQueuePolicy: QueuePolicy{AllowTimeoutOverride: true}}, withParam(req("a", 2, "a0"), intParam("timeout", -1)), `parameter "timeout" must be a non-negative integer`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, tc.opts)
				checkErr(t, h.submit(tc.r), oip.KindInvalidArgument, tc.want)
				h.wantCalls()
			})
		})
	}
}

func TestServiceModel(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	// The slope of 9, 1, 1 is negative, so it is clamped to zero and the
	// estimate is the weighted mean.
	const d = serviceDecay
	weighted := (9*d*d + 1*d + 1) / (d*d + d + 1)
	tests := []struct {
		name string
		obs  [][2]float64 // rows, milliseconds
		want map[int64]time.Duration
	}{
		{"nothing observed", nil, map[int64]time.Duration{1: 0, 64: 0}},
		{"one size: the mean, scaled up for larger batches", [][2]float64{{4, 11}, {4, 11}},
			map[int64]time.Duration{1: ms(11.0), 4: ms(11.0), 8: ms(22.0)}},
		{"recent observations weigh more", [][2]float64{{4, 10}, {4, 12}},
			map[int64]time.Duration{4: ms((10*serviceDecay + 12) / (serviceDecay + 1))}},
		{"a line", [][2]float64{{1, 5.05}, {8, 5.4}, {32, 6.6}, {64, 8.2}},
			map[int64]time.Duration{1: ms(5.05), 16: ms(5.8), 128: ms(11.4)}},
		{"never negative", [][2]float64{{1, 9}, {2, 1}, {3, 1}},
			map[int64]time.Duration{1: ms(weighted), 10: ms(weighted)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m serviceModel
			for _, o := range tc.obs {
				m.observe(int64(o[0]), ms(o[1]))
			}
			for n, want := range tc.want {
				if got := m.estimate(n); (got - want).Abs() > time.Microsecond {
					t.Errorf("estimate(%d) = %s, want %s", n, got, want)
				}
			}
		})
	}
}

// TestConcurrentCallersGetTheirOwnRows runs many callers at once against
// the real clock and checks each answer against the same request sent
// alone: with -race it also checks the batcher's locking.
func TestConcurrentCallersGetTheirOwnRows(t *testing.T) {
	const callers, perCaller = 64, 25
	var calls, merged atomic.Int64
	b, err := New(Options{
		Model:              "m",
		MaxBatchSize:       16,
		MaxQueueDelay:      200 * time.Microsecond,
		MaxBatchesInFlight: func() int { return 3 },
		Dispatch: func(ctx context.Context, r *oip.InferRequest) (*oip.InferResponse, error) {
			calls.Add(1)
			// A runtime's service time: with every slot busy for it,
			// callers queue and are merged even when the machine is
			// loaded (a dispatch that returns at once lets each lone
			// caller send its own request).
			time.Sleep(100 * time.Microsecond)
			ids := map[string]bool{}
			for _, tag := range tagsOf(r) {
				ids[strings.SplitN(tag, "/", 2)[0]] = true
			}
			if len(ids) > 1 {
				merged.Add(1)
			}
			return echoModel(r)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()

	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := range callers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			for i := range perCaller {
				id := fmt.Sprintf("c%d-%d", c, i)
				tags := make([]string, 1+rng.IntN(3))
				for k := range tags {
					tags[k] = fmt.Sprintf("%s/%d", id, k)
				}
				r := req(id, int64(2+rng.IntN(2)), tags...) // two groups by width
				if rng.IntN(4) == 0 {
					r.Outputs = []oip.RequestedOutput{{Name: "sum"}, {Name: "y"}} // a third
				}
				want, _ := echoModel(r)
				rctx, cancel := ctx, context.CancelFunc(func() {})
				if rng.IntN(8) == 0 { // some give up, queued or upstream
					rctx, cancel = context.WithTimeout(ctx, time.Duration(rng.IntN(300))*time.Microsecond)
				}
				got, err := b.Submit(rctx, r)
				cancel()
				// The caller may reuse its request at once: with -race,
				// any later read by the batcher is reported.
				r.ID = "reused"
				for k := range r.Inputs {
					clear(r.Inputs[k].Data)
					r.Inputs[k].Shape[0] = -1
				}
				if rctx != ctx && oip.KindOf(err) == oip.KindDeadlineExceeded {
					continue
				}
				if err != nil {
					errs <- fmt.Errorf("%s: %w", id, err)
					return
				}
				if sameAnswer(want, got) {
					continue
				}
				if diff := cmp.Diff(dropRow(want), dropRow(got), cmpopts.EquateEmpty()); diff != "" {
					errs <- fmt.Errorf("%s: answer (-alone +batched):\n%s", id, diff)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	t.Logf("%d requests in %d upstream calls, %d of them merged", callers*perCaller, calls.Load(), merged.Load())
	if merged.Load() == 0 {
		t.Error("no request was merged with another")
	}
}

// sameAnswer is a fast check that got is want but for "row"; cmp.Diff
// explains a difference.
func sameAnswer(want, got *oip.InferResponse) bool {
	w, g := dropRow(want), dropRow(got)
	if w.ID != g.ID || w.ModelName != g.ModelName || len(w.Outputs) != len(g.Outputs) {
		return false
	}
	for i := range w.Outputs {
		a, b := &w.Outputs[i], &g.Outputs[i]
		if a.Name != b.Name || a.Datatype != b.Datatype || !slices.Equal(a.Shape, b.Shape) || !bytes.Equal(a.Data, b.Data) {
			return false
		}
	}
	return true
}
