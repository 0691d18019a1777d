package autoscaler

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

// slowScaler is a Scaler whose new replicas become ready startup after
// they are asked for, as processes that take time to load a model do;
// replicas asked away go at once. It is the test's ReadyCounter too, and
// reads the time from the time package (synctest's in a bubble).
type slowScaler struct {
	startup time.Duration

	mu    sync.Mutex
	ready map[string][]time.Time // per model, when each replica is ready, earliest first
	calls []scaleCall
}

func (s *slowScaler) SetReplicas(_ context.Context, model string, n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.calls = append(s.calls, scaleCall{now, model, n})
	r := s.ready[model]
	if n < len(r) {
		r = r[:n] // the latest started go first
	}
	for len(r) < n {
		r = append(r, now.Add(s.startup))
	}
	s.ready[model] = r
	return nil
}

func (s *slowScaler) ReadyReplicas(model string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, at := range s.ready[model] {
		if !at.After(time.Now()) {
			n++
		}
	}
	return n
}

// decisionAt is the part of a Status a decision sets, at a second of the
// test.
type decisionAt struct {
	Sec            int
	Desired, Ready int
	Panic          bool
	Reason         string
}

func (d decisionAt) String() string {
	return fmt.Sprintf("%2ds desired=%d ready=%d panic=%-5v %s", d.Sec, d.Desired, d.Ready, d.Panic, d.Reason)
}

// TestLoopPanicModeInAndOut drives the loop, on a model configured as
// users write it (the autoscaling.knative.dev annotations of
// cmd/infergate's TestPanicModeThroughServe), with one client's worth of
// load, then ten times that for five seconds, then one again, while new
// replicas take three seconds to become ready. It checks every decision:
// no panic under steady load; panic at the first decision that sees the
// burst, asking for the five replicas it needs at once; panic kept, and
// the count held, while the replicas start and after the burst ends, until
// a stable window has passed since the panic window last crossed the
// threshold; then down within the scale-down rate limit. The Scaler hears
// of each change once.
func TestLoopPanicModeInAndOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := DefaultSettings()
		base.MinReplicas, base.MaxReplicas = 1, 6
		s, err := SettingsFromAnnotations(base, map[string]string{
			"autoscaling.knative.dev/window":                        "6s",
			"autoscaling.knative.dev/panic-window-percentage":       "20",
			"autoscaling.knative.dev/target":                        "2",
			"autoscaling.knative.dev/target-utilization-percentage": "100",
		})
		if err != nil {
			t.Fatal(err)
		}
		// A stable window of 6 s, a panic window of 2 s (20% rounded up
		// to the samples' second), a decision every 2 s, 2 requests per
		// replica.
		if s.StableWindow != 6*time.Second || s.PanicWindow() != 2*time.Second || s.Tick != 2*time.Second {
			t.Fatalf("settings from the annotations: %+v", s)
		}
		if target, _ := s.Targets(); target != 2 {
			t.Fatalf("target %v, want 2", target)
		}

		// The model starts as `infergate serve` starts it: its
		// minReplicas replica ready before any traffic.
		began := time.Now()
		scaler := &slowScaler{startup: 3 * time.Second, ready: map[string][]time.Time{"m": {began}}}
		obs := &fakeObserver{concurrency: map[string]float64{}, requests: map[string]uint64{}}
		reg := prometheus.NewRegistry()
		a, err := New(Options{
			Scaler: scaler, Observer: obs, Ready: ReadyFunc(scaler.ReadyReplicas),
			Models: map[string]Settings{"m": s}, Registerer: reg, Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel() // on a failed check, so that the bubble can end
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		synctest.Wait()
		h := &harness{t: t, a: a, began: began, reg: reg}

		var got []decisionAt
		var last time.Time
		record := func(sec int) {
			st := h.status("m")
			if st.DecidedAt.Equal(last) {
				return // no decision this second
			}
			last = st.DecidedAt
			if want := h.at(float64(sec)); !st.DecidedAt.Equal(want) {
				t.Fatalf("decision at %v, want %v", st.DecidedAt.Sub(began), want.Sub(began))
			}
			got = append(got, decisionAt{sec, st.Desired, st.Ready, st.Panic, st.Reason})
		}
		record(0)
		panicMetric := map[int]float64{}
		for sec := 1; sec <= 24; sec++ {
			load := 1.0 // one client: half a replica's target
			if sec >= 7 && sec <= 11 {
				load = 10 // the burst: five replicas' worth
			}
			obs.setConcurrency("m", load)
			time.Sleep(time.Second)
			synctest.Wait()
			record(sec)
			if v, ok := h.metric("infergate_autoscaler_panic_mode", "m"); ok {
				panicMetric[sec] = v
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}

		want := []decisionAt{
			// No sample of any load yet: minReplicas holds the replica.
			{0, 1, 1, false, "min replicas"},
			// Steady: one request in flight asks for one replica.
			{2, 1, 1, false, "demand"},
			{4, 1, 1, false, "demand"},
			{6, 1, 1, false, "demand"},
			// The burst starts at 7 s: the panic window (7-8 s, 10 in
			// flight) asks for 5 replicas, 500% of the one ready; the
			// stable window alone would ask for 2.
			{8, 5, 1, true, "panic"},
			// The new replicas are not ready yet: the panic window
			// crosses the threshold again and the panic is extended.
			{10, 5, 1, true, "panic"},
			// The burst ended at 11 s and the replicas are ready at 11 s;
			// the panic window falls below the threshold but the count
			// holds for a stable window after the last crossing (10 s).
			{12, 5, 5, true, "panic"},
			{14, 5, 5, true, "panic"},
			{16, 5, 5, true, "panic"},
			// 18 s is more than 6 s after 10 s: panic ends, and the
			// count falls as fast as the scale-down rate allows: half
			// the ready replicas, then the one the load needs.
			{18, 2, 5, false, "scale-down rate limit"},
			{20, 1, 2, false, "demand"},
			{22, 1, 1, false, "demand"},
			{24, 1, 1, false, "demand"},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			var trace strings.Builder
			for _, d := range got {
				fmt.Fprintln(&trace, d)
			}
			t.Errorf("decisions (-want +got):\n%s\nall decisions:\n%s", diff, trace.String())
		}
		// The Scaler hears of each change once: up to 5 in panic, then
		// down to 2 and 1 after it.
		wantCalls := []scaleCall{{h.at(8), "m", 5}, {h.at(18), "m", 2}, {h.at(20), "m", 1}}
		// The first decision asks for the replica that is already there.
		wantCalls = append([]scaleCall{{h.at(0), "m", 1}}, wantCalls...)
		if diff := cmp.Diff(wantCalls, scaler.calls); diff != "" {
			t.Errorf("scaler calls (-want +got):\n%s", diff)
		}
		// infergate_autoscaler_panic_mode follows the decisions.
		for sec, v := range panicMetric {
			inPanic := sec >= 8 && sec < 18
			if (v == 1) != inPanic {
				t.Errorf("at %ds infergate_autoscaler_panic_mode = %v, want panic %v", sec, v, inPanic)
			}
		}
		if len(panicMetric) != 24 {
			t.Errorf("infergate_autoscaler_panic_mode read at %d of 24 seconds", len(panicMetric))
		}
	})
}
