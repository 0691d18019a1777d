package pipelines

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/infergate/infergate/registry"
)

// runExec executes one run. Its loop goroutine owns every field below mu
// but the channels; unit goroutines talk to it through events.
type runExec struct {
	e  *Engine
	id RunID

	// done is closed when the loop has ended (and the run left e.runs).
	done     chan struct{}
	cancelCh chan cancelReq
	events   chan any
	// broken is why the loop gave up (a store write failed); set before
	// done is closed.
	broken error

	mu      sync.Mutex
	changed chan struct{} // closed and replaced at each change

	row    runRow
	pl     *Pipeline
	params map[string]any
	order  []*node
	nodes  map[string]*node

	running     int  // units executing in goroutines
	timers      int  // units waiting for a retry
	phase       int  // 0: steps; 1: finally steps
	failed      bool // a step failed: start no more steps
	failReason  string
	finFailed   string // the first finally step that failed, and why
	cancelled   bool   // Cancel applied
	cancelPhase int
	mainStatus  RunState // how the steps ended, for finally steps
}

// cancelReq is a Cancel call; ack gets the outcome once it is stored.
type cancelReq struct {
	actor string
	ack   chan error
}

// node is a step of the run.
type node struct {
	cs  *cstep
	row *stepRow
	// started: dependencies and condition passed in this execution.
	started bool
	// units are what executes: a plain step's one unit shares its row; a
	// parallelFor step has one per iteration.
	units   []*unit
	outputs Outputs
}

// unit is a plain step or one iteration: what gets attempts.
type unit struct {
	n       *node
	row     *stepRow
	item    any
	outputs Outputs

	busy    bool                    // a goroutine executes it
	cancel  context.CancelCauseFunc // its attempt's, while busy
	waiting bool                    // a retry timer runs
	quit    chan struct{}           // stops the retry timer
	retryAt time.Time
}

func (u *unit) name() string { return describeStep(u.row.step, u.row.iteration) }

// Messages from unit goroutines and timers.
type (
	retryDue  struct{ u *unit }
	unitEnded struct{ res unitResult }
)

var (
	errCancelled = errors.New("the run was cancelled")
	errTimeout   = errors.New("timed out")
	// orphanReason is the reason of an attempt the control plane lost.
	orphanReason = "the control plane stopped during the attempt"
)

func newRunExec(e *Engine, id RunID) *runExec {
	return &runExec{
		e: e, id: id,
		done:     make(chan struct{}),
		cancelCh: make(chan cancelReq),
		events:   make(chan any, 64),
		changed:  make(chan struct{}),
		nodes:    map[string]*node{},
	}
}

// notify wakes those who follow the run (Logs).
func (r *runExec) notify() {
	r.mu.Lock()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// watch returns a channel closed at the run's next change.
func (r *runExec) watch() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// write runs fn in one transaction of the store, with the event of the
// change. A failure stops the run's execution here: the loop ends as if
// the control plane had stopped, and Recover picks the run up.
func (r *runExec) write(ev registry.Event, fn func(ctx context.Context, tx *registry.Tx) error) bool {
	if r.broken != nil {
		return false
	}
	err := r.e.reg.Update(r.e.ctx, func(ctx context.Context, tx *registry.Tx) error {
		if fn != nil {
			if err := fn(ctx, tx); err != nil {
				return err
			}
		}
		if ev.Kind == "" {
			return nil
		}
		_, err := tx.AppendEvent(ev)
		return err
	})
	if err != nil {
		if r.e.ctx.Err() == nil {
			r.e.log.Error("pipelines: storing a change failed; the run stops executing until Recover", "run", r.id, "err", err)
		}
		r.broken = fmt.Errorf("pipelines: run %s: storing a change: %w", r.id, err)
		return false
	}
	r.notify()
	return true
}

func (r *runExec) event(kind, msg string, detail map[string]any) registry.Event {
	ev := runEvent(kind, r.id, r.row.pipeline, "run "+string(r.id)+": "+oneLine(msg), detail)
	ev.Actor = r.row.actor
	return ev
}

// load reads the run from the store.
func (r *runExec) load(ctx context.Context) error {
	row, err := r.e.rd.run(ctx, r.id)
	if err != nil {
		return err
	}
	r.row = row
	pl, err := ParseSource("run "+string(r.id), []byte(row.spec), row.baseDir)
	if err != nil {
		return fmt.Errorf("the stored pipeline no longer validates: %w", err)
	}
	r.pl = pl
	v, err := decodeJSON(row.params)
	if err != nil {
		return fmt.Errorf("the stored params: %w", err)
	}
	params, _ := v.(map[string]any)
	r.params = map[string]any{}
	for name, ps := range pl.Spec.Params {
		pv, err := conform(params[name], ps.Type)
		if err != nil {
			return fmt.Errorf("the stored param %s: %w", name, err)
		}
		r.params[name] = pv
	}
	rows, err := r.e.rd.steps(ctx, r.id)
	if err != nil {
		return err
	}
	byStep := map[string][]*stepRow{}
	for i := range rows {
		byStep[rows[i].step] = append(byStep[rows[i].step], &rows[i])
	}
	for _, cs := range pl.c.all() {
		n := &node{cs: cs}
		for _, s := range byStep[cs.name] {
			if s.iteration < 0 {
				n.row = s
				continue
			}
			u := &unit{n: n, row: s}
			if u.item, err = decodeJSON(s.item); err != nil {
				return fmt.Errorf("step %s: stored item: %w", u.name(), err)
			}
			if u.outputs, err = decodeOutputs(s.outputs); err != nil {
				return fmt.Errorf("step %s: stored outputs: %w", u.name(), err)
			}
			n.units = append(n.units, u)
		}
		if n.row == nil {
			n.row = &stepRow{run: r.id, step: cs.name, iteration: -1, finally: cs.finally, state: StepPending}
		}
		sort.Slice(n.units, func(i, j int) bool { return n.units[i].row.iteration < n.units[j].row.iteration })
		if n.outputs, err = decodeOutputs(n.row.outputs); err != nil {
			return fmt.Errorf("step %s: stored outputs: %w", cs.name, err)
		}
		if !cs.parallel {
			n.units = []*unit{{n: n, row: n.row, outputs: n.outputs}}
		}
		for _, s := range append([]*stepRow{n.row}, rowsOf(n.units)...) {
			if s.state == StepRunning {
				// Running when the last execution ended: its orphaned
				// attempt is failed below, the rest starts again.
				s.state = StepPending
			}
		}
		if n.row.state == StepFailed && !cs.finally && !r.failed {
			r.failed, r.failReason = true, "step "+cs.name+" failed: "+n.row.reason
		}
		r.order = append(r.order, n)
		r.nodes[cs.name] = n
	}
	return nil
}

// loop executes the run until it ends, the engine closes or the store
// fails.
func (r *runExec) loop() {
	if err := r.load(r.e.ctx); err != nil {
		r.abandon(err)
		return
	}
	if err := r.recoverOrphans(); err != nil {
		r.drain()
		return
	}
	if r.row.state == RunPending {
		now := micros(r.e.now())
		r.row.state = RunRunning
		if r.row.start == 0 {
			r.row.start = now
		}
		if !r.write(r.event("run.started", "started", nil), func(ctx context.Context, tx *registry.Tx) error {
			return saveRun(ctx, tx, &r.row)
		}) {
			return
		}
		r.e.log.Info("pipelines: run started", "run", r.id, "pipeline", r.row.pipeline)
	}
	if r.row.cancelling {
		r.applyCancel(cancelReq{actor: r.row.actor})
	}
	for {
		if r.e.ctx.Err() != nil || r.broken != nil {
			r.drain()
			return
		}
		r.schedule()
		if r.broken != nil {
			continue
		}
		if r.phase == 1 && r.running == 0 && r.timers == 0 && r.allFinal() {
			r.finish()
			return
		}
		select {
		case ev := <-r.events:
			r.handle(ev)
		case req := <-r.cancelCh:
			req.ack <- r.applyCancel(req)
		case <-r.e.ctx.Done():
		}
	}
}

// abandon ends a run that cannot be executed (its stored pipeline no
// longer loads) as failed.
func (r *runExec) abandon(err error) {
	r.e.log.Error("pipelines: run cannot be executed", "run", r.id, "err", err)
	if errors.Is(err, ErrNotFound) || r.e.ctx.Err() != nil {
		r.broken = err
		return
	}
	r.row.state, r.row.reason, r.row.end = RunFailed, "cannot execute: "+oneLine(err.Error()), micros(r.e.now())
	r.write(r.event("run.failed", r.row.reason, nil), func(ctx context.Context, tx *registry.Tx) error {
		return saveRun(ctx, tx, &r.row)
	})
	r.e.metrics.runs.WithLabelValues(string(RunFailed)).Inc()
}

func rowsOf(us []*unit) []*stepRow {
	out := make([]*stepRow, len(us))
	for i, u := range us {
		out[i] = u.row
	}
	return out
}

// drain stops the unit goroutines and waits for them to end, recording
// nothing: the engine is closing (or the store failed) and Recover takes
// over.
func (r *runExec) drain() {
	for _, n := range r.order {
		for _, u := range n.units {
			if u.busy && u.cancel != nil {
				u.cancel(errClosing)
			}
			r.stopTimer(u)
		}
	}
	for r.running > 0 {
		select {
		case ev := <-r.events:
			if m, ok := ev.(unitEnded); ok {
				m.res.u.busy = false
				r.running--
			}
		case req := <-r.cancelCh:
			req.ack <- errorf(ErrClosed, "pipelines: the engine is closing")
		}
	}
}

// recoverOrphans fails the attempts the store holds as running: the
// control plane stopped during them. What is left of their processes is
// killed first.
func (r *runExec) recoverOrphans() error {
	atts, err := r.e.rd.attempts(r.e.ctx, r.id, " AND state = $2", string(StepRunning))
	if err != nil {
		r.broken = err
		return err
	}
	for _, a := range atts {
		n := r.nodes[a.step]
		if n == nil {
			continue
		}
		var u *unit
		for _, c := range n.units {
			if c.row.iteration == a.iteration {
				u = c
			}
		}
		if u == nil {
			continue
		}
		if pgid := readPidFile(a.dir); pgid > 0 {
			if k := killOrphans(pgid, "INFERGATE_STEP_DIR="+a.dir); k > 0 {
				r.e.log.Info("pipelines: killed the processes left of an orphaned attempt", "run", r.id, "step", u.name(), "attempt", a.attempt, "processes", k)
			}
		}
		a.state, a.reason, a.end = StepFailed, orphanReason, micros(r.e.now())
		r.onEnded(unitResult{u: u, state: StepFailed, reason: orphanReason, attempt: &a, orphan: true})
		if r.broken != nil {
			return r.broken
		}
	}
	return nil
}

// allFinal reports whether every node has ended.
func (r *runExec) allFinal() bool {
	for _, n := range r.order {
		if !n.row.state.Final() {
			return false
		}
	}
	return true
}

// applyCancel cancels the run's current phase.
func (r *runExec) applyCancel(req cancelReq) error {
	if r.cancelled && r.cancelPhase == r.phase {
		return nil
	}
	r.cancelled, r.cancelPhase = true, r.phase
	if !r.row.cancelling || r.row.reason == "" {
		r.row.cancelling, r.row.reason = true, cancelReason(req.actor)
		if !r.write(r.event("run.cancelling", r.row.reason, nil), func(ctx context.Context, tx *registry.Tx) error {
			return saveRun(ctx, tx, &r.row)
		}) {
			return r.broken
		}
	}
	r.e.log.Info("pipelines: run cancelling", "run", r.id, "by", req.actor)
	for _, n := range r.order {
		if n.cs.finally != (r.phase == 1) {
			continue
		}
		for _, u := range n.units {
			if u.busy && u.cancel != nil {
				u.cancel(errCancelled)
			}
			if u.waiting {
				r.stopTimer(u)
			}
		}
	}
	return nil
}

// finish records the run's end.
func (r *runExec) finish() {
	state, reason := RunSucceeded, ""
	switch {
	case r.cancelled:
		state, reason = RunCancelled, r.row.reason
		if strings.HasPrefix(reason, "cancel requested") {
			reason = "cancelled" + strings.TrimPrefix(reason, "cancel requested")
		}
	case r.failed:
		state, reason = RunFailed, r.failReason
	case r.finFailed != "":
		state, reason = RunFailed, r.finFailed
	}
	r.row.state, r.row.reason, r.row.cancelling, r.row.end = state, reason, false, micros(r.e.now())
	r.write(r.event("run."+string(state), string(state)+optional(reason), map[string]any{"state": state, "reason": reason}),
		func(ctx context.Context, tx *registry.Tx) error { return saveRun(ctx, tx, &r.row) })
	r.e.metrics.runs.WithLabelValues(string(state)).Inc()
	r.e.log.Info("pipelines: run ended", "run", r.id, "state", state, "reason", reason)
}

func optional(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}
