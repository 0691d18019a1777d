package autoscaler

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

type scaleCall struct {
	At    time.Time
	Model string
	N     int
}

// fakeScaler records calls; the replicas it is asked for are ready at once
// (it is the test's ReadyCounter too).
type fakeScaler struct {
	mu       sync.Mutex
	calls    []scaleCall
	replicas map[string]int
	fail     int // fail this many calls from now
}

func (f *fakeScaler) SetReplicas(ctx context.Context, model string, n int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail > 0 {
		f.fail--
		return errors.New("scaler down")
	}
	f.calls = append(f.calls, scaleCall{time.Now(), model, n})
	f.replicas[model] = n
	return nil
}

func (f *fakeScaler) ReadyReplicas(model string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.replicas[model]
}

func (f *fakeScaler) Calls() []scaleCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]scaleCall(nil), f.calls...)
}

type fakeObserver struct {
	mu          sync.Mutex
	concurrency map[string]float64
	requests    map[string]uint64
}

func (o *fakeObserver) Concurrency(model string) float64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.concurrency[model]
}

func (o *fakeObserver) Requests(model string) uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.requests[model]
}

func (o *fakeObserver) setConcurrency(model string, v float64) {
	o.mu.Lock()
	o.concurrency[model] = v
	o.mu.Unlock()
}

func (o *fakeObserver) addRequests(model string, n uint64) {
	o.mu.Lock()
	o.requests[model] += n
	o.mu.Unlock()
}

// harness runs an Autoscaler inside a synctest bubble, whose time moves
// only when the test sleeps (second).
type harness struct {
	t      *testing.T
	a      *Autoscaler
	began  time.Time // when the loop started, in the bubble's time
	scaler *fakeScaler
	obs    *fakeObserver
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// start runs the loop; it must be called inside synctest.Test, and stop
// before the bubble ends. It returns once the loop's first step is done.
func start(t *testing.T, models map[string]Settings) *harness {
	t.Helper()
	h := &harness{
		t:      t,
		began:  time.Now(),
		scaler: &fakeScaler{replicas: map[string]int{}},
		obs:    &fakeObserver{concurrency: map[string]float64{}, requests: map[string]uint64{}},
		reg:    prometheus.NewRegistry(),
		done:   make(chan error, 1),
	}
	a, err := New(Options{
		Scaler:     h.scaler,
		Observer:   h.obs,
		Ready:      ReadyFunc(h.scaler.ReadyReplicas),
		Models:     models,
		Registerer: h.reg,
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.a = a
	ctx, cancel := context.WithCancel(t.Context())
	h.cancel = cancel
	go func() { h.done <- a.Run(ctx) }()
	synctest.Wait()
	return h
}

// second moves the bubble's time on one second and waits for the loop to
// be idle.
func (h *harness) second() {
	time.Sleep(time.Second)
	synctest.Wait()
}

// at is the loop's start plus sec seconds.
func (h *harness) at(sec float64) time.Time {
	return h.began.Add(time.Duration(sec * float64(time.Second)))
}

func (h *harness) stop() {
	h.t.Helper()
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
}

func (h *harness) status(model string) Status {
	h.t.Helper()
	st, ok := h.a.Status(model)
	if !ok {
		h.t.Fatalf("Status(%q): unknown model", model)
	}
	return st
}

// metric returns the value of the gauge or counter name for model.
func (h *harness) metric(name, model string) (float64, bool) {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() != "model" || l.GetValue() != model {
					continue
				}
				if m.GetGauge() != nil {
					return m.GetGauge().GetValue(), true
				}
				return m.GetCounter().GetValue(), true
			}
		}
	}
	return 0, false
}

func TestLoopBurstPanicsAndNeverScalesDownInPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := DefaultSettings() // minReplicas 1, target 70 per replica
		h := start(t, map[string]Settings{"m": s})
		defer h.stop()

		type point struct {
			sec     int
			desired int
			panic   bool
		}
		var trace []point
		checkedMetrics := false
		for sec := 1; sec <= 200; sec++ {
			load := 50.0
			if sec > 30 && sec <= 40 {
				load = 500 // 10x: eight replicas' worth
			}
			h.obs.setConcurrency("m", load)
			h.second()
			st := h.status("m")
			trace = append(trace, point{sec, st.Desired, st.Panic})
			if st.Panic && !checkedMetrics {
				checkedMetrics = true
				for name, want := range map[string]float64{
					"infergate_autoscaler_panic_mode":        1,
					"infergate_autoscaler_desired_replicas":  float64(st.Desired),
					"infergate_autoscaler_panic_concurrency": st.PanicAverage,
					"infergate_autoscaler_target":            70,
				} {
					if got, ok := h.metric(name, "m"); !ok || got != want {
						t.Errorf("at %ds %s = %v (present %v), want %v", sec, name, got, ok, want)
					}
				}
			}
		}

		t.Logf("trace %v", trace)
		var panicked bool
		peak := 0
		for i, p := range trace {
			peak = max(peak, p.desired)
			panicked = panicked || p.panic
			if i > 0 && trace[i-1].panic && p.panic && p.desired < trace[i-1].desired {
				t.Errorf("scaled down in panic at %ds: %d -> %d", p.sec, trace[i-1].desired, p.desired)
			}
		}
		if !panicked {
			t.Fatalf("the burst did not enter panic: %v", trace)
		}
		if peak != 8 {
			t.Errorf("peak %d replicas, want 8: %v", peak, trace)
		}
		if last := trace[len(trace)-1]; last.desired != 1 || last.panic {
			t.Errorf("at the end: %+v, want 1 replica out of panic", last)
		}
		// The scaler heard of changes only, and of each one.
		calls := h.scaler.Calls()
		var changes []int
		prev := -1
		for _, p := range append([]point{{0, 1, false}}, trace...) {
			if p.desired != prev {
				changes = append(changes, p.desired)
				prev = p.desired
			}
		}
		var got []int
		for _, c := range calls {
			got = append(got, c.N)
		}
		if diff := cmp.Diff(changes, got); diff != "" {
			t.Errorf("scaler calls (-changes +calls):\n%s", diff)
		}
		if v, _ := h.metric("infergate_autoscaler_panic_mode", "m"); v != 0 {
			t.Errorf("panic_mode at the end %v, want 0", v)
		}
	})
}

func TestLoopIdleToZeroAndBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := DefaultSettings()
		s.MinReplicas = 0
		s.StableWindow = 10 * time.Second
		s.ScaleToZeroGracePeriod = 5 * time.Second
		h := start(t, map[string]Settings{"m": s})
		defer h.stop()

		for sec := 1; sec <= 40; sec++ {
			load := 0.0
			if sec <= 3 {
				load = 1
			}
			h.obs.setConcurrency("m", load)
			h.second()
		}
		// Initial scale 1 at the start; traffic until 3s; the stable
		// window is empty from 14s (the first decision after 13s), and
		// the grace period ends at 19s, so the decision at 20s goes to 0.
		want := []scaleCall{{h.at(0), "m", 1}, {h.at(20), "m", 0}}
		if diff := cmp.Diff(want, h.scaler.Calls()); diff != "" {
			t.Fatalf("scaler calls (-want +got):\n%s", diff)
		}
		if st := h.status("m"); st.Reason != "demand" || st.Desired != 0 || st.Applied != 0 {
			t.Errorf("status at zero: %+v", st)
		}

		// A request held by the activator pokes the autoscaler: scale up
		// at once, without waiting for a tick.
		h.obs.setConcurrency("m", 1)
		h.a.Poke("m")
		h.a.Poke("unknown")
		synctest.Wait()
		want = append(want, scaleCall{h.at(40), "m", 1})
		if diff := cmp.Diff(want, h.scaler.Calls()); diff != "" {
			t.Errorf("scaler calls after Poke (-want +got):\n%s", diff)
		}
	})
}

func TestLoopRetriesAFailedScale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, nil)
		defer h.stop()
		h.scaler.mu.Lock()
		h.scaler.fail = 1
		h.scaler.mu.Unlock()
		if err := h.a.SetModels(map[string]Settings{"m": DefaultSettings()}); err != nil {
			t.Fatal(err)
		}
		h.second() // first decision: the scaler fails
		if st := h.status("m"); st.Applied != -1 || st.ScaleError != "scaler down" || st.Desired != 1 {
			t.Errorf("after a failure: %+v", st)
		}
		if v, _ := h.metric("infergate_autoscaler_scale_errors_total", "m"); v != 1 {
			t.Errorf("scale_errors_total %v, want 1", v)
		}
		h.second() // no decision due yet
		if len(h.scaler.Calls()) != 0 {
			t.Errorf("calls before the next decision: %v", h.scaler.Calls())
		}
		h.second() // next decision: retried
		if st := h.status("m"); st.Applied != 1 || st.ScaleError != "" {
			t.Errorf("after the retry: %+v", st)
		}
		if diff := cmp.Diff([]scaleCall{{h.at(3), "m", 1}}, h.scaler.Calls()); diff != "" {
			t.Errorf("scaler calls (-want +got):\n%s", diff)
		}
	})
}

func TestLoopRPS(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := DefaultSettings()
		s.Metric = MetricRPS // target 200 * 70% = 140 per replica
		h := start(t, map[string]Settings{"m": s})
		defer h.stop()
		for range 20 {
			h.obs.addRequests("m", 420)
			h.second()
		}
		st := h.status("m")
		if st.Desired != 3 || st.StableAverage != 420 || st.Target != 140 || st.Metric != MetricRPS {
			t.Errorf("status: %+v, want 3 replicas at 420 rps", st)
		}
		if v, ok := h.metric("infergate_autoscaler_stable_requests_per_second", "m"); v != 420 || !ok {
			t.Errorf("stable_requests_per_second %v, want 420", v)
		}
		if _, ok := h.metric("infergate_autoscaler_stable_concurrency", "m"); ok {
			t.Error("stable_concurrency exported for an rps model")
		}
		calls := h.scaler.Calls()
		if last := calls[len(calls)-1]; last.N != 3 {
			t.Errorf("last call %+v, want 3 replicas", last)
		}
	})
}

func TestLoopSetModels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, map[string]Settings{"a": DefaultSettings(), "b": DefaultSettings()})
		defer h.stop()
		h.obs.setConcurrency("a", 140)
		h.obs.setConcurrency("b", 140)
		for range 4 {
			h.second()
		}
		if got := len(h.a.Statuses()); got != 2 {
			t.Fatalf("%d statuses, want 2", got)
		}

		bad := DefaultSettings()
		bad.StableWindow = time.Second
		err := h.a.SetModels(map[string]Settings{"a": DefaultSettings(), "c": bad})
		want := `autoscaler: model "c": autoscaler: settings: StableWindow: 1s is outside [6s, 1h]`
		if err == nil || err.Error() != want {
			t.Errorf("SetModels with bad settings: %v, want %s", err, want)
		}
		if got := len(h.a.Statuses()); got != 2 {
			t.Errorf("a failed SetModels changed the models: %d statuses", got)
		}

		// b goes, a keeps its history and gets a shorter window.
		shorter := DefaultSettings()
		shorter.StableWindow = 6 * time.Second
		if err := h.a.SetModels(map[string]Settings{"a": shorter}); err != nil {
			t.Fatal(err)
		}
		if _, ok := h.a.Status("b"); ok {
			t.Error("b still has a status")
		}
		if _, ok := h.metric("infergate_autoscaler_desired_replicas", "b"); ok {
			t.Error("b still has metrics")
		}
		h.second()
		h.second()
		if st := h.status("a"); st.StableAverage != 140 || st.Desired != 2 {
			t.Errorf("a after the change: %+v", st)
		}
		for _, c := range h.scaler.Calls() {
			if c.Model == "b" && c.At.After(h.at(4)) {
				t.Errorf("b scaled after its removal: %+v", c)
			}
		}
	})
}

func TestRunTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, nil)
		defer h.stop()
		err := h.a.Run(t.Context())
		if err == nil || !strings.Contains(err.Error(), "Run called twice") {
			t.Errorf("second Run: %v", err)
		}
	})
}

func TestNewOptions(t *testing.T) {
	obs := &fakeObserver{}
	sc := &fakeScaler{}
	ready := ReadyFunc(func(string) int { return 0 })
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no scaler", Options{Observer: obs, Ready: ready}, "autoscaler: Options.Scaler is required"},
		{"no observer", Options{Scaler: sc, Ready: ready}, "autoscaler: Options.Observer is required"},
		{"no ready", Options{Scaler: sc, Observer: obs}, "autoscaler: Options.Ready is required"},
		{"unnamed model", Options{Scaler: sc, Observer: obs, Ready: ready, Models: map[string]Settings{"": DefaultSettings()}}, "autoscaler: a model has no name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if err == nil || err.Error() != tc.want {
				t.Errorf("New: %v, want %s", err, tc.want)
			}
		})
	}
	reg := prometheus.NewRegistry()
	opts := Options{Scaler: sc, Observer: obs, Ready: ready, Registerer: reg}
	if _, err := New(opts); err != nil {
		t.Fatalf("New: %v", err)
	}
	if _, err := New(opts); err == nil {
		t.Error("a second Autoscaler on the same registry: no error")
	}
}
