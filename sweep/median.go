package sweep

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
)

// Goal is the direction of the objective.
type Goal string

const (
	Maximize Goal = "maximize"
	Minimize Goal = "minimize"
)

// better reports whether a is strictly better than b.
func (g Goal) better(a, b float64) bool {
	if g == Minimize {
		return a < b
	}
	return a > b
}

// point is one progress report: the objective at an epoch.
type point struct {
	epoch int
	value float64
}

// medianVerdict is the median stopping rule's answer for one trial.
type medianVerdict struct {
	stop   bool
	epoch  int     // the trial's latest epoch, the rule's step S
	best   float64 // the trial's best objective up to S
	median float64 // the median of the completed trials' running averages up to S
	n      int     // how many completed trials the median is over
}

// medianStop applies the median stopping rule as Katib (and Google
// Vizier, where it comes from) define it: a trial that has reported epoch
// S >= after is stopped when its best objective up to S is strictly worse
// than the median of the completed trials' running averages of the
// objective up to S, once at least minTrials completed trials have
// reported by S. curve is the trial's progress in report order; each of
// completed is a succeeded trial's.
func medianStop(goal Goal, curve []point, completed [][]point, after, minTrials int) medianVerdict {
	if len(curve) == 0 {
		return medianVerdict{}
	}
	s := curve[len(curve)-1].epoch
	if s < after {
		return medianVerdict{epoch: s}
	}
	best := curve[0].value
	for _, p := range curve[1:] {
		if p.epoch <= s && goal.better(p.value, best) {
			best = p.value
		}
	}
	var avgs []float64
	for _, c := range completed {
		sum, n := 0.0, 0
		for _, p := range c {
			if p.epoch <= s {
				sum += p.value
				n++
			}
		}
		if n > 0 {
			avgs = append(avgs, sum/float64(n))
		}
	}
	v := medianVerdict{epoch: s, best: best, n: len(avgs)}
	if len(avgs) == 0 || len(avgs) < minTrials {
		return v
	}
	v.median = median(avgs)
	v.stop = goal.better(v.median, best)
	return v
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// maxProgressLine bounds one line of a progress file; a longer one is
// reported and skipped.
const maxProgressLine = 64 << 10

// progressReader reads a trial's progress file (JSON lines, each an
// object with "epoch" and the objective) as it grows, from where it
// stopped the last time. A last line without its newline is left for the
// next read, so a line caught half-written is never misread.
type progressReader struct {
	path      string
	objective string
	off       int64
	curve     []point
	// problems holds one message per line that could not be used
	// (malformed, without the objective, too long), for the sweep's log.
	problems []string
	line     int
}

// read reads what was appended since the last call. A file not written yet
// is no error.
func (r *progressReader) read() error {
	f, err := os.Open(r.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(r.off, io.SeekStart); err != nil {
		return err
	}
	// Bounded: a trial writing faster than we read is read over several
	// polls.
	buf, err := io.ReadAll(io.LimitReader(f, 4<<20))
	if err != nil {
		return err
	}
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			if len(buf) > maxProgressLine { // a line that will never fit: skip what is here
				r.line++
				r.problems = append(r.problems, fmt.Sprintf("line %d is longer than %d bytes", r.line, maxProgressLine))
				r.off += int64(len(buf))
			}
			return nil
		}
		r.off += int64(i + 1)
		r.line++
		r.parse(bytes.TrimSpace(buf[:i]))
		buf = buf[i+1:]
	}
}

func (r *progressReader) parse(line []byte) {
	if len(line) == 0 {
		return
	}
	if len(line) > maxProgressLine {
		r.problems = append(r.problems, fmt.Sprintf("line %d is longer than %d bytes", r.line, maxProgressLine))
		return
	}
	var rec map[string]any
	if err := json.Unmarshal(line, &rec); err != nil {
		r.problems = append(r.problems, fmt.Sprintf("line %d is not a JSON object: %v", r.line, err))
		return
	}
	e, ok := rec["epoch"].(float64)
	if !ok || e != math.Trunc(e) || e < 0 || e > math.MaxInt32 {
		r.problems = append(r.problems, fmt.Sprintf(`line %d has no whole number "epoch"`, r.line))
		return
	}
	v, ok := rec[r.objective].(float64)
	if !ok {
		r.problems = append(r.problems, fmt.Sprintf("line %d has no number %q", r.line, r.objective))
		return
	}
	if n := len(r.curve); n > 0 && int(e) <= r.curve[n-1].epoch {
		r.problems = append(r.problems, fmt.Sprintf("line %d: epoch %d does not follow epoch %d", r.line, int(e), r.curve[n-1].epoch))
		return
	}
	r.curve = append(r.curve, point{epoch: int(e), value: v})
}

// takeProblems returns the problems found since the last call.
func (r *progressReader) takeProblems() []string {
	p := r.problems
	r.problems = nil
	return p
}
