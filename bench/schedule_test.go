package bench

import (
	"math"
	"testing"
	"time"
)

func TestScheduleConstant(t *testing.T) {
	tests := []struct {
		name string
		rate float64
		want []time.Duration
	}{
		{"1000 per second", 1000, []time.Duration{0, time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond}},
		{"3 per second", 3, []time.Duration{0, 333333333, 666666666, time.Second}},
		{"half per second", 0.5, []time.Duration{0, 2 * time.Second, 4 * time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSchedule(ArrivalsConstant, tc.rate, 1)
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range tc.want {
				if got := s.Next(); got != want {
					t.Errorf("arrival %d at %v, want %v", i, got, want)
				}
			}
		})
	}
}

func TestScheduleConstantDoesNotDrift(t *testing.T) {
	s, err := NewSchedule(ArrivalsConstant, 7, 1)
	if err != nil {
		t.Fatal(err)
	}
	var last time.Duration
	for range 7_000_001 {
		last = s.Next()
	}
	if want := 1_000_000 * time.Second; last != want {
		t.Errorf("arrival 7,000,000 at 7/s is at %v, want %v", last, want)
	}
}

func TestSchedulePoisson(t *testing.T) {
	const rate, n = 2000.0, 200_000
	s, err := NewSchedule(ArrivalsPoisson, rate, 42)
	if err != nil {
		t.Fatal(err)
	}
	if first := s.Next(); first != 0 {
		t.Fatalf("first arrival at %v, want 0", first)
	}
	prev := time.Duration(0)
	var sum, sumSq float64
	for i := range n {
		at := s.Next()
		gap := float64(at - prev)
		if gap < 0 {
			t.Fatalf("arrival %d goes back in time: %v after %v", i+1, at, prev)
		}
		sum += gap
		sumSq += gap * gap
		prev = at
	}
	mean := sum / n
	sd := math.Sqrt(sumSq/n - mean*mean)
	wantMean := 1e9 / rate
	if math.Abs(mean-wantMean)/wantMean > 0.01 {
		t.Errorf("mean gap %.0fns, want %.0fns within 1%%", mean, wantMean)
	}
	// Exponential gaps: the standard deviation equals the mean.
	if cv := sd / mean; math.Abs(cv-1) > 0.02 {
		t.Errorf("coefficient of variation %.3f, want 1 within 0.02", cv)
	}
}

func TestSchedulePoissonIsSeeded(t *testing.T) {
	seq := func(seed uint64) []time.Duration {
		s, err := NewSchedule(ArrivalsPoisson, 100, seed)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]time.Duration, 50)
		for i := range out {
			out[i] = s.Next()
		}
		return out
	}
	a, b, c := seq(7), seq(7), seq(8)
	same := func(x, y []time.Duration) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Error("the same seed gave two schedules")
	}
	if same(a, c) {
		t.Error("two seeds gave the same schedule")
	}
}

func TestScheduleInvalid(t *testing.T) {
	for _, tc := range []struct {
		name     string
		arrivals string
		rate     float64
	}{
		{"zero rate", ArrivalsConstant, 0},
		{"negative rate", ArrivalsPoisson, -5},
		{"NaN rate", ArrivalsConstant, math.NaN()},
		{"infinite rate", ArrivalsConstant, math.Inf(1)},
		{"unknown arrivals", "bursty", 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewSchedule(tc.arrivals, tc.rate, 1); err == nil {
				t.Error("NewSchedule accepted it")
			}
		})
	}
}
