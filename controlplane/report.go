package controlplane

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
)

// FormatTraffic writes a traffic split as "iris-00001 90%, iris-00002
// 10%", revisions in name order: the form logs and the CLI show.
func FormatTraffic(t map[string]int64) string {
	parts := make([]string, 0, len(t))
	for _, n := range slices.Sorted(maps.Keys(t)) {
		parts = append(parts, fmt.Sprintf("%s %d%%", n, t[n]))
	}
	return strings.Join(parts, ", ")
}

// LogDecision returns a Run callback that logs each rollout decision at
// info level with the figures that made it.
func LogDecision(log *slog.Logger) func(Decision) {
	return func(d Decision) {
		attrs := []any{"model", d.Model, "canary", d.Canary, "stable", d.Stable, "step", d.Step, "verdict", d.Verdict, "reason", d.Reason, "traffic", FormatTraffic(d.Weights)}
		if g := d.Gate; g != nil {
			attrs = append(attrs, "canary_requests", g.CanaryRequests, "canary_error_rate", g.CanaryErrorRate, "canary_latency", g.CanaryLatencySeconds,
				"stable_requests", g.StableRequests, "stable_error_rate", g.StableErrorRate, "stable_latency", g.StableLatencySeconds)
		}
		log.Info("rollout decision", attrs...)
	}
}
