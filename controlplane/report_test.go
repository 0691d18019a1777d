package controlplane

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestFormatTraffic(t *testing.T) {
	for _, tc := range []struct {
		in   map[string]int64
		want string
	}{
		{nil, ""},
		{map[string]int64{"iris-00001": 100}, "iris-00001 100%"},
		{map[string]int64{"iris-00002": 10, "iris-00001": 90}, "iris-00001 90%, iris-00002 10%"},
	} {
		if got := FormatTraffic(tc.in); got != tc.want {
			t.Errorf("FormatTraffic(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestLogDecision: a decision is logged with its split and, when a gate
// made it, the figures.
func TestLogDecision(t *testing.T) {
	var b bytes.Buffer
	LogDecision(slog.New(slog.NewTextHandler(&b, nil)))(Decision{
		Model: "iris", Canary: "iris-00002", Stable: "iris-00001", Step: 2, Verdict: VerdictRollback, Reason: "error rate 9.00%",
		Weights: map[string]int64{"iris-00001": 100},
		Gate:    &Gate{CanaryRequests: 100, CanaryErrorRate: 0.09, StableRequests: 900},
	})
	got := b.String()
	for _, want := range []string{`msg="rollout decision"`, "model=iris", "canary=iris-00002", "step=2", "verdict=" + string(VerdictRollback), `traffic="iris-00001 100%"`, "canary_requests=100", "canary_error_rate=0.09", "stable_requests=900"} {
		if !strings.Contains(got, want) {
			t.Errorf("log %q lacks %s", got, want)
		}
	}
}
