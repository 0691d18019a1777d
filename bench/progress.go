package bench

import (
	"fmt"
	"time"
)

// FormatProgress writes a live progress line for a terminal: the point's
// label, elapsed over planned time, requests, the current rate and errors,
// such as "concurrency 8  3.5s/10s  41234 requests  13301/s  0 errors".
// total is the measured window (0 when unknown); rate is the caller's
// recent requests per second.
func FormatProgress(label string, p Progress, total time.Duration, rate float64) string {
	el := p.Elapsed.Round(100 * time.Millisecond).String()
	if total > 0 {
		el += "/" + total.String()
	}
	return fmt.Sprintf("%s  %s  %d requests  %.0f/s  %d errors", label, el, p.Requests, rate, p.Errors)
}
