package pipelines

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// LogOptions selects the log Logs returns.
type LogOptions struct {
	// Iteration selects an iteration of a parallelFor step (0 by
	// default); for another step it must be 0 or -1.
	Iteration int
	// Attempt selects an attempt; 0 means the latest.
	Attempt int
	// Follow keeps the reader open while the run executes in this engine:
	// it returns what the process writes as it writes it, goes on to the
	// next attempt of the step when it is retried (after a line
	// "infergate: attempt N"), and ends when the step (or iteration) has
	// ended and its last attempt's log is read.
	Follow bool
}

// followPoll is how often a follower looks for more of a log that grows:
// a process's writes to its log file signal nothing.
const followPoll = 200 * time.Millisecond

// Logs returns the log (stdout and stderr) of an attempt of a step. The
// caller closes it; a follower also ends when ctx does. ErrNotFound for an
// unknown run, step, iteration or attempt, or a step that has not started
// yet (without Follow).
func (e *Engine) Logs(ctx context.Context, id RunID, step string, o LogOptions) (io.ReadCloser, error) {
	row, err := e.rd.run(ctx, id)
	if err != nil {
		return nil, err
	}
	order, par := specSteps(row.spec)
	if _, ok := order[step]; !ok {
		return nil, errorf(ErrNotFound, "pipelines: run %s has no step %s", id, step)
	}
	iter := o.Iteration
	if iter < -1 {
		return nil, errorf(ErrInvalid, "pipelines: iteration %d is negative", iter)
	}
	if o.Attempt < 0 {
		return nil, errorf(ErrInvalid, "pipelines: attempt %d is negative", o.Attempt)
	}
	parallel := par[step]
	if !parallel && iter == 0 {
		iter = -1
	}
	if parallel && iter < 0 {
		return nil, errorf(ErrInvalid, "pipelines: step %s of run %s is a parallelFor step: name an iteration", step, id)
	}
	f := &follower{e: e, id: id, step: step, iter: iter, attempt: o.Attempt, fixed: o.Attempt > 0, follow: o.Follow, ctx: ctx}
	a, found, exists, _, err := f.latest()
	if err != nil {
		return nil, err
	}
	if !found {
		if !o.Follow || (!exists && iter < 0) {
			what := "no attempt yet"
			switch {
			case !exists:
				what = fmt.Sprintf("no iteration %d", iter)
			case o.Attempt > 0:
				what = fmt.Sprintf("no attempt %d", o.Attempt)
			}
			return nil, errorf(ErrNotFound, "pipelines: step %s of run %s has %s", step, id, what)
		}
		return f, nil
	}
	if err := f.open(a); err != nil {
		return nil, err
	}
	return f, nil
}

// follower reads an attempt's log, and with follow the next attempts'.
type follower struct {
	e       *Engine
	id      RunID
	step    string
	iter    int
	attempt int  // the attempt read (or asked for), 0 before one opens
	fixed   bool // an attempt was asked for: do not move on
	follow  bool
	ctx     context.Context
	f       *os.File
	pending []byte // a line to give before the next attempt's log
}

// latest returns the step's latest attempt (or the one asked for) if
// found, whether the step (or iteration) exists and whether it has ended.
func (f *follower) latest() (a attemptRow, found, exists, ended bool, err error) {
	atts, err := f.e.rd.attempts(f.ctx, f.id, " AND step = $2 AND iteration = $3", f.step, f.iter)
	if err != nil {
		return a, false, false, false, err
	}
	steps, err := f.e.rd.steps(f.ctx, f.id)
	if err != nil {
		return a, false, false, false, err
	}
	for _, s := range steps {
		if s.step == f.step && s.iteration == f.iter {
			exists, ended = true, s.state.Final()
		}
	}
	for _, at := range atts {
		if !f.fixed || at.attempt == f.attempt {
			a, found = at, true
		}
	}
	return a, found, exists, ended, nil
}

// open opens an attempt's log, after a line naming it if another was
// read before.
func (f *follower) open(a attemptRow) error {
	file, err := os.Open(filepath.Join(a.dir, "log"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && f.follow {
			return nil // not created yet: the next look opens it
		}
		return errorf(ErrNotFound, "pipelines: the log of step %s attempt %d of run %s: %v", describeStep(f.step, f.iter), a.attempt, f.id, err)
	}
	if f.f != nil {
		f.f.Close()
		f.pending = fmt.Appendf(nil, "infergate: attempt %d\n", a.attempt)
	}
	f.f, f.attempt = file, a.attempt
	return nil
}

// Read reads the log; when following, it waits for more at its end.
func (f *follower) Read(p []byte) (int, error) {
	for {
		if len(f.pending) > 0 {
			n := copy(p, f.pending)
			f.pending = f.pending[n:]
			return n, nil
		}
		if f.f != nil {
			n, err := f.f.Read(p)
			if n > 0 || (err != nil && !errors.Is(err, io.EOF)) {
				return n, err
			}
		}
		if !f.follow {
			return 0, io.EOF
		}
		// At the end of what is written: is there a newer attempt, has
		// this one ended, has the step?
		a, found, _, ended, err := f.latest()
		if err != nil {
			return 0, err
		}
		if found && (f.f == nil || a.attempt != f.attempt) {
			if err := f.open(a); err != nil {
				return 0, err
			}
			if f.f != nil {
				continue
			}
		}
		current := found && f.f != nil && a.attempt == f.attempt
		if (current && a.state.Final() && (ended || f.fixed)) || (!found && ended) {
			return f.last(p)
		}
		r := f.e.active(f.id)
		if r == nil {
			// Nobody executes the run here: what is written is all there is.
			return f.last(p)
		}
		tick, stop := f.e.clock.NewTimer(followPoll)
		select {
		case <-tick:
		case <-r.watch():
		case <-r.done:
		case <-f.ctx.Done():
			stop()
			return 0, f.ctx.Err()
		}
		stop()
	}
}

// last reads what a process wrote between the last read and its end,
// then ends the log.
func (f *follower) last(p []byte) (int, error) {
	if f.f != nil {
		if n, _ := f.f.Read(p); n > 0 {
			return n, nil
		}
	}
	return 0, io.EOF
}

// Close closes the log.
func (f *follower) Close() error {
	if f.f != nil {
		return f.f.Close()
	}
	return nil
}
