package bench

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// maxSweepPoints bounds the loads of one sweep.
const maxSweepPoints = 200

// ParseRange parses a sweep's loads, "start:end:step" with end included:
// step "x2" multiplies (1:64:x2 is 1, 2, 4, ... 64), "+100" or "100" adds
// (100:500:+100 is 100, 200, ... 500); without a step, 1 is added. A
// comma-separated list ("1,4,16") is taken as it is. With integer set,
// every load must be a whole number (concurrencies) and multiplied ones
// are rounded, dropping repeats. Loads must be positive; a range has at
// most 200 of them.
func ParseRange(s string, integer bool) ([]float64, error) {
	s = strings.TrimSpace(s)
	num := func(what, v string) (float64, error) {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || !(f > 0) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("range %q: %s %q is not a positive number", s, what, v)
		}
		if integer && f != math.Trunc(f) {
			return 0, fmt.Errorf("range %q: %s %q is not a whole number", s, what, v)
		}
		return f, nil
	}
	if strings.Contains(s, ",") || !strings.Contains(s, ":") {
		var out []float64
		for _, p := range strings.Split(s, ",") {
			f, err := num("load", p)
			if err != nil {
				return nil, err
			}
			out = append(out, f)
		}
		if len(out) > maxSweepPoints {
			return nil, fmt.Errorf("range %q has %d loads, more than %d", s, len(out), maxSweepPoints)
		}
		return out, nil
	}
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return nil, fmt.Errorf("range %q: want start:end:step, such as 1:64:x2 or 100:1000:+100", s)
	}
	start, err := num("start", parts[0])
	if err != nil {
		return nil, err
	}
	end, err := num("end", parts[1])
	if err != nil {
		return nil, err
	}
	if end < start {
		return nil, fmt.Errorf("range %q: end %v is below start %v", s, end, start)
	}
	mul, add := 0.0, 1.0
	if len(parts) == 3 {
		step := strings.TrimSpace(parts[2])
		if f, ok := strings.CutPrefix(step, "x"); ok {
			m, err := strconv.ParseFloat(f, 64)
			if err != nil || !(m > 1) || math.IsInf(m, 0) {
				return nil, fmt.Errorf("range %q: step %q must multiply by more than 1", s, step)
			}
			mul = m
		} else {
			a, err := num("step", strings.TrimPrefix(step, "+"))
			if err != nil {
				return nil, err
			}
			add = a
		}
	}
	var out []float64
	// A relative tolerance keeps the end when float steps land a hair
	// above it (0.1 steps).
	for v := start; v <= end*(1+1e-9); {
		p := v
		if integer {
			p = math.Round(v)
		}
		if len(out) == 0 || p != out[len(out)-1] {
			out = append(out, p)
		}
		if len(out) > maxSweepPoints {
			return nil, fmt.Errorf("range %q has more than %d loads", s, maxSweepPoints)
		}
		if mul > 0 {
			v *= mul
		} else {
			v += add
		}
	}
	return out, nil
}

// StopRule says when a sweep stops before the end of its range: when the
// latency statistic Stat passes Limit, or when more than MaxErrorRatio of
// the requests failed. A zero Limit or MaxErrorRatio disables that test.
type StopRule struct {
	// Stat names the statistic compared with Limit (Result.Stat; default
	// p99).
	Stat  string
	Limit time.Duration
	// MaxErrorRatio is the failed fraction of requests past which the
	// sweep stops, in (0, 1].
	MaxErrorRatio float64
}

// Validate checks the rule's fields.
func (s StopRule) Validate() error {
	if _, ok := (&Result{}).Stat(s.stat()); !ok {
		return fmt.Errorf("bench: latency statistic %q: want %s", s.Stat, LatencyStats)
	}
	if s.Limit < 0 {
		return fmt.Errorf("bench: latency limit %v is negative", s.Limit)
	}
	if s.MaxErrorRatio < 0 || s.MaxErrorRatio > 1 {
		return fmt.Errorf("bench: error ratio %v is not between 0 and 1", s.MaxErrorRatio)
	}
	return nil
}

func (s StopRule) stat() string {
	if s.Stat == "" {
		return "p99"
	}
	return s.Stat
}

// Check tells whether the sweep stops after the point r, and why. It is a
// pure function of the rule and r. A point with no successful request
// stops the sweep: it has no latency to compare.
func (s StopRule) Check(r *Result) (stop bool, reason string) {
	if r.Requests > 0 && r.Requests == r.Errors {
		return true, fmt.Sprintf("every request failed (%d)", r.Errors)
	}
	if s.MaxErrorRatio > 0 && r.Requests > 0 {
		if ratio := float64(r.Errors) / float64(r.Requests); ratio > s.MaxErrorRatio {
			return true, fmt.Sprintf("%.1f%% of requests failed, more than the %.1f%% limit", 100*ratio, 100*s.MaxErrorRatio)
		}
	}
	if s.Limit > 0 {
		v, _ := r.Stat(s.stat())
		if v > s.Limit {
			return true, fmt.Sprintf("%s latency %s passed the %s limit", s.stat(), FormatDuration(v), FormatDuration(s.Limit))
		}
	}
	return false, ""
}

// RunSweep runs one point per load, in order, until the loads are done, the
// rule stops it, or ctx is done. run measures one point; after, when set,
// sees each result as it comes. It returns the results so far, and why the
// rule stopped the sweep (empty when no point broke it or ctx ended it),
// the point that broke it included. An
// error from run ends the sweep and is returned with the results so far.
func RunSweep(ctx context.Context, loads []float64, rule StopRule, run func(ctx context.Context, load float64) (*Result, error), after func(load float64, r *Result)) ([]*Result, string, error) {
	var out []*Result
	for _, load := range loads {
		if ctx.Err() != nil {
			return out, "", nil
		}
		r, err := run(ctx, load)
		if err != nil {
			return out, "", err
		}
		out = append(out, r)
		if after != nil {
			after(load, r)
		}
		if ctx.Err() != nil {
			return out, "", nil
		}
		if stop, why := rule.Check(r); stop {
			return out, why, nil
		}
	}
	return out, "", nil
}
