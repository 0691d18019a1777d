package autoscaler

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

type sample struct {
	at float64 // seconds after t0
	v  float64
}

// each returns one sample per second from from to to inclusive, valued
// by f.
func each(from, to int, f func(sec int) float64) []sample {
	var out []sample
	for sec := from; sec <= to; sec++ {
		out = append(out, sample{float64(sec), f(sec)})
	}
	return out
}

func TestWindowAverage(t *testing.T) {
	type query struct {
		at     float64
		window time.Duration
	}
	tests := []struct {
		name    string
		span    time.Duration
		samples []sample
		queries []query
		want    []float64
	}{
		{
			name:    "empty",
			span:    time.Minute,
			queries: []query{{0, time.Minute}, {100, 6 * time.Second}},
			want:    []float64{0, 0},
		},
		{
			name:    "a young series is averaged over its life",
			span:    time.Minute,
			samples: []sample{{10, 6}},
			queries: []query{{10, time.Minute}, {10, 6 * time.Second}},
			want:    []float64{6, 6},
		},
		{
			name:    "stable and panic windows",
			span:    time.Minute,
			samples: each(1, 60, func(sec int) float64 { return float64(sec) }),
			// Stable: mean of 1..60; panic: mean of 55..60.
			queries: []query{{60, time.Minute}, {60, 6 * time.Second}},
			want:    []float64{30.5, 57.5},
		},
		{
			name:    "a second without a sample counts as zero",
			span:    time.Minute,
			samples: []sample{{0, 10}, {4, 10}},
			queries: []query{{4, time.Minute}},
			want:    []float64{4},
		},
		{
			name:    "seconds after the last sample are left out",
			span:    time.Minute,
			samples: each(0, 4, func(int) float64 { return 10 }),
			queries: []query{{6, time.Minute}, {6, 3 * time.Second}, {6, 2 * time.Second}},
			want:    []float64{10, 10, 0},
		},
		{
			name:    "nothing within the window",
			span:    time.Minute,
			samples: each(0, 4, func(int) float64 { return 10 }),
			queries: []query{{64, time.Minute}, {100, time.Minute}},
			want:    []float64{0, 0},
		},
		{
			name:    "samples in one second are averaged",
			span:    time.Minute,
			samples: []sample{{0.2, 2}, {0.7, 4}, {1.5, 9}},
			queries: []query{{1, time.Minute}, {1.9, time.Second}},
			want:    []float64{6, 9},
		},
		{
			name:    "a span of silence starts a new series",
			span:    time.Minute,
			samples: []sample{{0, 100}, {60, 10}},
			queries: []query{{60, time.Minute}},
			want:    []float64{10},
		},
		{
			name:    "silence shorter than the span is zeros",
			span:    time.Minute,
			samples: []sample{{0, 100}, {30, 10}},
			queries: []query{{30, time.Minute}},
			want:    []float64{110.0 / 31},
		},
		{
			name:    "the ring wraps",
			span:    time.Minute,
			samples: each(0, 130, func(sec int) float64 { return float64(sec) }),
			queries: []query{{130, time.Minute}, {130, 10 * time.Second}},
			want:    []float64{100.5, 125.5},
		},
		{
			name:    "a sample older than the span is dropped",
			span:    10 * time.Second,
			samples: append(each(20, 29, func(int) float64 { return 1 }), sample{15, 1000}),
			queries: []query{{29, 10 * time.Second}},
			want:    []float64{1},
		},
		{
			name:    "a late sample within the span counts",
			span:    10 * time.Second,
			samples: []sample{{25, 2}, {22, 8}},
			queries: []query{{25, 10 * time.Second}},
			want:    []float64{2.5},
		},
		{
			name:    "a window longer than the span is the span",
			span:    10 * time.Second,
			samples: each(0, 29, func(sec int) float64 { return float64(sec) }),
			queries: []query{{29, time.Hour}},
			want:    []float64{24.5},
		},
		{
			name:    "partial seconds round up",
			span:    1500 * time.Millisecond,
			samples: []sample{{0, 4}, {1, 8}},
			queries: []query{{1, 1500 * time.Millisecond}, {1, 10 * time.Millisecond}},
			want:    []float64{6, 8},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := NewWindow(tc.span)
			for _, s := range tc.samples {
				w.Record(at(s.at), s.v)
			}
			var got []float64
			for _, q := range tc.queries {
				got = append(got, w.Average(at(q.at), q.window))
			}
			// Averaging twice must give the same: Average changes nothing.
			for i, q := range tc.queries {
				if again := w.Average(at(q.at), q.window); again != got[i] {
					t.Errorf("query %d: second Average %v, first %v", i, again, got[i])
				}
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateApprox(0, 1e-9), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("averages (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWindowResized(t *testing.T) {
	w := NewWindow(time.Minute)
	for _, s := range each(0, 59, func(sec int) float64 { return float64(sec) }) {
		w.Record(at(s.at), s.v)
	}
	now := at(59)
	small := w.resized(10 * time.Second)
	if got, want := small.Span(), 10*time.Second; got != want {
		t.Errorf("span %v, want %v", got, want)
	}
	if got, want := small.Average(now, time.Minute), 54.5; got != want {
		t.Errorf("shrunk: average %v, want %v (50..59)", got, want)
	}
	big := w.resized(2 * time.Minute)
	if got, want := big.Average(now, 2*time.Minute), 29.5; got != want {
		t.Errorf("grown: average %v, want %v (0..59)", got, want)
	}
	if got := NewWindow(time.Minute).resized(time.Hour).Average(now, time.Hour); got != 0 {
		t.Errorf("empty resized: average %v, want 0", got)
	}
}
