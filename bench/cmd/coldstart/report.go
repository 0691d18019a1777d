package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// quantile returns the q-quantile of ds by nearest rank (the smallest
// value with at least q of the values at or below it): with 20 values,
// p99 is the largest. 0 for none.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

// summary is one model's row of the table.
type summary struct {
	label                     string
	cycles, answered, split   int
	first, startToReady, gate []time.Duration
	gaps                      []time.Duration
	warm, toZero              []time.Duration
	sent, failed              int64
	failure                   string
	multi                     int // cycles where more than one replica started
	source                    string
	err                       error
}

func summarize(r *modelRun) summary {
	s := summary{label: r.label, cycles: len(r.cycles), source: r.source, err: r.err}
	for _, c := range r.cycles {
		s.sent += c.sent
		s.failed += c.failed
		if s.failure == "" {
			s.failure = c.failure
		}
		s.warm = append(s.warm, c.warm...)
		if c.toZero > 0 {
			s.toZero = append(s.toZero, c.toZero)
		}
		if c.replicas > 1 {
			s.multi++
		}
		if c.firstErr != "" {
			continue
		}
		s.answered++
		s.first = append(s.first, c.first)
		if !c.known {
			continue
		}
		s.split++
		s.startToReady = append(s.startToReady, c.startToReady)
		s.gate = append(s.gate, c.first-c.startToReady)
		if c.gapKnown {
			s.gaps = append(s.gaps, c.gap)
		}
	}
	return s
}

// report prints the table and the two checks. It reports what the cycles
// measured, whatever the figures; a check that cannot be made says so.
func report(w io.Writer, f flags, runs []*modelRun) {
	sums := make([]summary, len(runs))
	for i, r := range runs {
		sums[i] = summarize(r)
	}
	fmt.Fprintf(w, "%-16s %6s | %9s %9s | %9s %9s | %9s %9s | %9s %9s | %9s | %8s | %8s %6s\n",
		"model", "cycles", "first p50", "p99", "start>rdy", "p99", "gateway", "p99", "gap p50", "p99", "warm p50", "zero p50", "requests", "failed")
	for _, s := range sums {
		gap50, gap99 := "-", "-"
		if len(s.gaps) > 0 {
			gap50, gap99 = ms(quantile(s.gaps, 0.5)), ms(quantile(s.gaps, 0.99))
		}
		fmt.Fprintf(w, "%-16s %6d | %9s %9s | %9s %9s | %9s %9s | %9s %9s | %9s | %8s | %8d %6d\n",
			s.label, s.cycles,
			ms(quantile(s.first, 0.5)), ms(quantile(s.first, 0.99)),
			ms(quantile(s.startToReady, 0.5)), ms(quantile(s.startToReady, 0.99)),
			ms(quantile(s.gate, 0.5)), ms(quantile(s.gate, 0.99)),
			gap50, gap99, ms(quantile(s.warm, 0.5)), secs(quantile(s.toZero, 0.5)), s.sent, s.failed)
	}
	fmt.Fprintln(w, "first: the first request's latency at the client, the model at zero replicas. start>rdy: the runtime's")
	fmt.Fprintln(w, "process start to its first ready answer, from the gateway's supervisor. gateway: first - start>rdy, per cycle.")
	fmt.Fprintln(w, "gap: from the last probe that found the runtime not ready (or its start, when the first found it ready) to")
	fmt.Fprintln(w, "the first ready answer: the most it may have been ready unseen, which start>rdy counts as the runtime's.")
	fmt.Fprintln(w, "warm: requests after the first answer. zero: from the end of the load to zero replicas (stable window 6s")
	fmt.Fprintln(w, "+ grace 1s, decided every 2s). Percentiles by nearest rank: p99 of 20 values is the largest.")
	var sources []string
	for _, s := range sums {
		if s.source != "" {
			sources = append(sources, s.label+": "+sourceName(s.source))
		}
		if s.multi > 0 {
			fmt.Fprintf(w, "note: %s: %d cycles started more than one replica; their split is left out\n", s.label, s.multi)
		}
		if s.err != nil {
			fmt.Fprintf(w, "note: %s stopped after %d cycles: %v\n", s.label, s.cycles, s.err)
		}
	}
	if len(sources) > 0 {
		fmt.Fprintf(w, "start-to-ready read from %s\n", strings.Join(sources, "; "))
	}

	for _, s := range sums {
		if s.split == 0 {
			fmt.Fprintf(w, "SKIP  %s: no cycle with a start-to-ready time: the gateway's share is unknown\n", s.label)
			continue
		}
		p99 := quantile(s.gate, 0.99)
		fmt.Fprintf(w, "%s  %s: gateway's share of a cold start p99 %s over %d cycles (want < %s)\n",
			verdict(p99 < f.gateShare), s.label, ms(p99), s.split, ms(f.gateShare))
	}
	var sent, failed int64
	cycles, failure := 0, ""
	for _, s := range sums {
		sent += s.sent
		failed += s.failed
		cycles += s.cycles
		if failure == "" && s.failure != "" {
			failure = s.label + ": " + s.failure
		}
	}
	line := fmt.Sprintf("%s  %d failed of %d requests across %d cycles of scale to zero and back under load (want 0)",
		verdict(failed == 0 && cycles > 0), failed, sent, cycles)
	if failure != "" {
		line += "; the first: " + failure
	}
	fmt.Fprintln(w, line)
}

func sourceName(s string) string {
	if s == "metrics" {
		return "/metrics (" + metricStartToReady + ")"
	}
	return "the gateway's log (\"replica ready\"; /metrics has no " + metricStartToReady + ")"
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}
