package bench

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseRange(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		integer bool
		want    []float64
	}{
		{"doubling", "1:64:x2", true, []float64{1, 2, 4, 8, 16, 32, 64}},
		{"doubling past the end stops", "1:50:x2", true, []float64{1, 2, 4, 8, 16, 32}},
		{"adding with plus", "100:500:+100", false, []float64{100, 200, 300, 400, 500}},
		{"adding without plus", "100:300:100", false, []float64{100, 200, 300}},
		{"default step", "1:4", true, []float64{1, 2, 3, 4}},
		{"one point", "8:8", true, []float64{8}},
		{"fractional rates keep the end", "0.1:0.5:0.1", false, []float64{0.1, 0.2, 0.30000000000000004, 0.4, 0.5}},
		{"x1.5 rounded, repeats dropped", "1:8:x1.5", true, []float64{1, 2, 3, 5, 8}},
		{"list", "1, 4,16", true, []float64{1, 4, 16}},
		{"single value", "32", true, []float64{32}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRange(tc.in, tc.integer)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseRange(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestParseRangeErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "not a positive number"},
		{"0:8", "start"},
		{"8:1", "below start"},
		{"1:8:x1", "multiply by more than 1"},
		{"1:8:x", "multiply by more than 1"},
		{"1:8:+0", "step"},
		{"1:2:3:4", "start:end:step"},
		{"1.5:8", "whole number"},
		{"1:1000000", "more than 200"},
		{"a:b", "start"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, err := ParseRange(tc.in, true)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseRange(%q) = %v, want an error about %q", tc.in, err, tc.want)
			}
		})
	}
}

func TestStopRule(t *testing.T) {
	ms := time.Millisecond
	point := func(p99, p50 time.Duration, requests, errs int64) *Result {
		return &Result{P50: p50, P99: p99, Requests: requests, Errors: errs}
	}
	tests := []struct {
		name     string
		rule     StopRule
		r        *Result
		wantStop bool
		wantWhy  string
	}{
		{"under the limit", StopRule{Limit: 10 * ms}, point(9*ms, ms, 100, 0), false, ""},
		{"at the limit goes on", StopRule{Limit: 10 * ms}, point(10*ms, ms, 100, 0), false, ""},
		{"past the limit", StopRule{Limit: 10 * ms}, point(11*ms, ms, 100, 0), true, "p99 latency 11.0ms passed the 10.0ms limit"},
		{"other statistic", StopRule{Stat: "p50", Limit: 2 * ms}, point(50*ms, 3*ms, 100, 0), true, "p50 latency 3.00ms passed"},
		{"no limit never stops on latency", StopRule{}, point(time.Hour, time.Hour, 100, 0), false, ""},
		{"error ratio under", StopRule{MaxErrorRatio: 0.1}, point(ms, ms, 100, 10), false, ""},
		{"error ratio over", StopRule{MaxErrorRatio: 0.1}, point(ms, ms, 100, 11), true, "11.0% of requests failed"},
		{"every request failed", StopRule{}, point(0, 0, 50, 50), true, "every request failed (50)"},
		{"no request at all goes on", StopRule{Limit: ms}, point(0, 0, 0, 0), false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stop, why := tc.rule.Check(tc.r)
			if stop != tc.wantStop || !strings.Contains(why, tc.wantWhy) {
				t.Errorf("Check = %v, %q; want %v, %q", stop, why, tc.wantStop, tc.wantWhy)
			}
		})
	}
}

func TestStopRuleValidate(t *testing.T) {
	for _, r := range []StopRule{{Stat: "p42"}, {Limit: -1}, {MaxErrorRatio: 1.5}, {MaxErrorRatio: -0.1}} {
		if err := r.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", r)
		}
	}
	for _, r := range []StopRule{{}, {Stat: "p99.9", Limit: time.Second}, {Stat: "max"}, {Stat: "mean", MaxErrorRatio: 1}} {
		if err := r.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", r, err)
		}
	}
}

func TestRunSweepStopsAtTheLimit(t *testing.T) {
	// Latency grows with the load: 1ms per unit.
	var ran []float64
	run := func(_ context.Context, load float64) (*Result, error) {
		ran = append(ran, load)
		return &Result{Requests: 10, P99: time.Duration(load) * time.Millisecond}, nil
	}
	var seen int
	res, why, err := RunSweep(context.Background(), []float64{1, 2, 4, 8, 16, 32}, StopRule{Limit: 6 * time.Millisecond}, run,
		func(float64, *Result) { seen++ })
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]float64{1, 2, 4, 8}, ran); diff != "" {
		t.Errorf("loads run (-want +got):\n%s", diff)
	}
	if len(res) != 4 || seen != 4 || !strings.Contains(why, "8.00ms passed the 6.00ms limit") {
		t.Errorf("%d results, %d seen, stopped %q", len(res), seen, why)
	}

	ran = nil
	res, why, err = RunSweep(context.Background(), []float64{1, 2}, StopRule{Limit: time.Second}, run, nil)
	if err != nil || len(res) != 2 || why != "" {
		t.Errorf("a sweep under its limit: %d results, stopped %q, %v", len(res), why, err)
	}
}

func TestRunSweepCancelledAndFailing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	run := func(_ context.Context, load float64) (*Result, error) {
		if load == 2 {
			cancel()
		}
		return &Result{Requests: 1}, nil
	}
	res, why, err := RunSweep(ctx, []float64{1, 2, 3, 4}, StopRule{}, run, nil)
	if err != nil || len(res) != 2 || why != "" {
		t.Errorf("cancelled sweep: %d results (want the 2 measured), stopped %q, %v", len(res), why, err)
	}
	boom := errors.New("boom")
	res, _, err = RunSweep(context.Background(), []float64{1, 2}, StopRule{}, func(context.Context, float64) (*Result, error) { return nil, boom }, nil)
	if !errors.Is(err, boom) || len(res) != 0 {
		t.Errorf("failing run: %d results, %v", len(res), err)
	}
}
