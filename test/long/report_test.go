//go:build long

package long

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// report collects one case's figures and failures for its table line and
// the suite's summary.
type report struct {
	t        *testing.T
	name     string
	start    time.Time
	total    *counts
	notes    []string
	failures []string
}

// newReport starts a case's report. Call it first in the case: its
// cleanup, which files the row, then runs after every other one.
func newReport(t *testing.T) *report {
	r := &report{t: t, name: strings.TrimPrefix(t.Name(), "TestLong/"), start: time.Now()}
	t.Cleanup(r.file)
	return r
}

// errorf fails the case with a message that also goes to the summary.
func (r *report) errorf(format string, args ...any) {
	r.t.Helper()
	msg := fmt.Sprintf(format, args...)
	r.failures = append(r.failures, msg)
	r.t.Error(msg)
}

// notef records a figure for the summary.
func (r *report) notef(format string, args ...any) {
	r.t.Helper()
	msg := fmt.Sprintf(format, args...)
	r.notes = append(r.notes, msg)
	r.t.Log(msg)
}

// counts records the case's load figures, prints its table line, and
// asserts what every case must: nothing lost, no malformed answer.
func (r *report) counts(c *counts) {
	r.t.Helper()
	r.total = c
	r.t.Log(tableLine(r.name, c))
	if n := c.lostTotal(); n > 0 {
		r.errorf("LOST %d requests (sent, never answered): %s; first ones: %s", n, formatMap(c.lost), strings.Join(c.lostSamples, "; "))
	}
}

// noBad asserts that no answer in c was malformed.
func (r *report) noBad(what string, c *counts) {
	r.t.Helper()
	if n := sum(c.bad); n > 0 {
		r.errorf("%s: %d malformed answers: %s", what, n, formatMap(c.bad))
	}
}

// allOK asserts that every request in c was answered 200 / OK.
func (r *report) allOK(what string, c *counts) {
	r.t.Helper()
	if f := c.failed(); f > 0 {
		r.errorf("%s: %d of %d requests did not get 200/OK: answered %s; error reasons %s; not sent %s; lost %d",
			what, f, c.sent, formatMap(c.answered), formatMap(c.reasons), formatMap(c.notSent), c.lostTotal())
	}
}

func (r *report) file() {
	res := "PASS"
	switch {
	case r.t.Skipped():
		res = "SKIP"
	case r.t.Failed():
		res = "FAIL"
		if len(r.failures) == 0 {
			r.failures = append(r.failures, "failed before its figures were taken; see the test log")
		}
	}
	results.mu.Lock()
	results.rows = append(results.rows, row{name: r.name, result: res, elapsed: time.Since(r.start), c: r.total, notes: r.notes, failures: r.failures})
	results.mu.Unlock()
	writeSummary()
}

// tableLine is a case's figures on one line.
func tableLine(name string, c *counts) string {
	return fmt.Sprintf("%s: sent %d | answered %d (%s) | not sent %d (%s) | LOST %d (%s) | bad %d | skipped %d",
		name, c.sent, sum(c.answered), formatMap(c.answered), sum(c.notSent), formatMap(c.notSent),
		c.lostTotal(), formatMap(c.lost), sum(c.bad), c.skipped)
}

// formatMap lists a map's entries, largest first.
func formatMap(m map[string]int64) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// row is one case in the summary.
type row struct {
	name, result string
	elapsed      time.Duration
	c            *counts
	notes        []string
	failures     []string
}

var results struct {
	mu   sync.Mutex
	rows []row
	path string
}

// summaryPath is -summary, else $LONG_SUMMARY, else a new file in the
// temporary directory.
func summaryPath() string {
	if results.path != "" {
		return results.path
	}
	switch {
	case *summaryFlag != "":
		results.path = *summaryFlag
	case os.Getenv("LONG_SUMMARY") != "":
		results.path = os.Getenv("LONG_SUMMARY")
	default:
		results.path = filepath.Join(os.TempDir(), fmt.Sprintf("infergate-test-long-%s.md", time.Now().Format("20060102-150405")))
	}
	return results.path
}

// writeSummary writes the markdown summary of the cases run so far (after
// each case, so that a suite cut short still leaves its figures) and
// returns its path, "" when no case ran.
func writeSummary() string {
	results.mu.Lock()
	defer results.mu.Unlock()
	if len(results.rows) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# infergate make test-long\n\n%s, %s, %d CPUs, GOMAXPROCS %d; LONG_SEED=%d, LONG_RATE=%g, LONG_SOAK=%s, LONG_FLOOD_CONNS=%d, LONG_MEM_BOUND_MB=%d.\n\n",
		time.Now().Format("2006-01-02 15:04 MST"), runtime.Version(), runtime.NumCPU(), runtime.GOMAXPROCS(0), seed, faultRate, soakDuration, floodConns, memBoundMB)
	b.WriteString("LOST counts requests written to the gateway that never got a complete answer; it must be 0 everywhere.\n\n")
	b.WriteString("| case | result | time | sent | answered (by status) | not sent (by reason) | LOST | bad answers |\n")
	b.WriteString("| --- | --- | ---: | ---: | --- | --- | ---: | ---: |\n")
	for _, r := range results.rows {
		c := r.c
		if c == nil {
			c = newCounts()
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %s | %s | %d | %d |\n", r.name, r.result, r.elapsed.Round(time.Second),
			c.sent, cell(formatMap(c.answered)), cell(formatMap(c.notSent)), c.lostTotal(), sum(c.bad))
	}
	for _, r := range results.rows {
		fmt.Fprintf(&b, "\n## %s: %s\n\n", r.name, r.result)
		for _, f := range r.failures {
			fmt.Fprintf(&b, "- **failed**: %s\n", f)
		}
		if c := r.c; c != nil {
			if len(c.reasons) > 0 {
				fmt.Fprintf(&b, "- error answers by reason: %s\n", formatMap(c.reasons))
			}
			if len(c.lost) > 0 {
				fmt.Fprintf(&b, "- LOST by reason: %s\n", formatMap(c.lost))
			}
			if len(c.bad) > 0 {
				fmt.Fprintf(&b, "- malformed answers: %s\n", formatMap(c.bad))
			}
			if c.skipped > 0 {
				fmt.Fprintf(&b, "- arrivals not sent because the load had its maximum in flight: %d\n", c.skipped)
			}
		}
		for _, n := range r.notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	path := summaryPath()
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "writing the summary: %v\n", err)
		return ""
	}
	return path
}

func cell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }
