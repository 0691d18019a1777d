package pipelines

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/infergate/infergate/registry"
)

// The scheduling of a run: which nodes start, which units run, how their
// ends are recorded. All of it runs on the run's loop goroutine.

// stopping reports whether nodes of the current phase must not start: a
// step failed or the run was cancelled (in the steps' phase), or a cancel
// came during the finally steps.
func (r *runExec) stopping(n *node) (bool, StepState, string) {
	if !n.cs.finally {
		if r.cancelled {
			return true, StepCancelled, "the run was cancelled"
		}
		if r.failed {
			return true, StepSkipped, "not run: " + r.failReason
		}
		return false, "", ""
	}
	if r.cancelled && r.cancelPhase == 1 {
		return true, StepCancelled, "the run was cancelled"
	}
	return false, "", ""
}

// schedule starts what can start and settles what has ended, until
// nothing changes.
func (r *runExec) schedule() {
	for progress := true; progress && r.broken == nil; {
		progress = false
		for _, n := range r.order {
			if r.broken != nil {
				return
			}
			if n.row.state.Final() || (n.cs.finally && r.phase == 0) {
				continue
			}
			if !n.started {
				if r.tryStart(n) {
					progress = true
				}
				if !n.started {
					continue
				}
			}
			for _, u := range n.units {
				if r.tryDispatch(n, u) {
					progress = true
				}
			}
			if r.settle(n) {
				progress = true
			}
		}
		if r.phase == 0 && r.running == 0 && r.timers == 0 && r.mainDone() {
			r.phase = 1
			r.mainStatus = RunSucceeded
			switch {
			case r.cancelled:
				r.mainStatus = RunCancelled
			case r.failed:
				r.mainStatus = RunFailed
			}
			progress = true
		}
	}
}

func (r *runExec) mainDone() bool {
	for _, n := range r.order {
		if !n.cs.finally && !n.row.state.Final() {
			return false
		}
	}
	return true
}

// endNode ends a node that will not run (and its units that have not
// ended) as state, for reason.
func (r *runExec) endNode(n *node, state StepState, reason string) {
	now := micros(r.e.now())
	var changed []*stepRow
	for _, u := range n.units {
		r.stopTimer(u)
		if u.row != n.row && !u.row.state.Final() {
			u.row.state, u.row.reason, u.row.end = state, reason, now
			changed = append(changed, u.row)
		}
	}
	n.row.state, n.row.reason, n.row.end = state, reason, now
	changed = append(changed, n.row)
	r.write(r.event("step."+string(state), "step "+n.cs.name+" "+string(state)+": "+reason, map[string]any{"step": n.cs.name, "state": state, "reason": reason}),
		func(ctx context.Context, tx *registry.Tx) error {
			for _, s := range changed {
				if err := saveStep(ctx, tx, s); err != nil {
					return err
				}
			}
			return nil
		})
	r.e.metrics.steps.WithLabelValues(string(state)).Add(float64(len(changed)))
	if state == StepFailed {
		r.noteFailure(n, reason)
	}
}

func (r *runExec) noteFailure(n *node, reason string) {
	if n.cs.finally {
		if r.finFailed == "" {
			r.finFailed = "finally step " + n.cs.name + " failed: " + reason
		}
		return
	}
	if !r.failed {
		r.failed, r.failReason = true, "step "+n.cs.name+" failed: "+reason
	}
	r.e.log.Info("pipelines: step failed", "run", r.id, "step", n.cs.name, "reason", reason)
}

// tryStart checks a node's dependencies and condition and prepares its
// units; it reports whether anything changed.
func (r *runExec) tryStart(n *node) bool {
	stop, stopState, stopReason := r.stopping(n)
	for _, d := range n.cs.deps {
		dn := r.nodes[d]
		if !dn.row.state.Final() {
			if stop {
				r.endNode(n, stopState, stopReason)
				return true
			}
			return false
		}
	}
	for _, d := range n.cs.deps {
		dn := r.nodes[d]
		if dn.row.state.ok() {
			continue
		}
		// A finally step waits for its dependsOn steps whatever their end,
		// but needs the data it reads.
		if n.cs.finally && strings.HasPrefix(n.cs.depField[d], "dependsOn") {
			continue
		}
		verb := map[StepState]string{StepFailed: "failed", StepSkipped: "was skipped", StepCancelled: "was cancelled"}[dn.row.state]
		state := StepSkipped
		if dn.row.state == StepCancelled && !n.cs.finally {
			state = StepCancelled
		}
		r.endNode(n, state, fmt.Sprintf("not run: step %s %s", d, verb))
		return true
	}
	if stop {
		r.endNode(n, stopState, stopReason)
		return true
	}
	if n.cs.when != nil {
		v, err := evalExpr(n.cs.when, r.refValue)
		if err != nil {
			r.endNode(n, StepFailed, fmt.Sprintf("condition %q: %v", n.cs.s.When, err))
			return true
		}
		if b, _ := v.(bool); !b {
			r.endNode(n, StepSkipped, fmt.Sprintf("condition %q is false", n.cs.s.When))
			return true
		}
	}
	if !n.cs.parallel {
		n.started = true
		return true
	}
	items, err := r.items(n)
	if err != nil {
		r.endNode(n, StepFailed, "parallelFor.items: "+err.Error())
		return true
	}
	if len(n.units) > 0 && len(n.units) != len(items) {
		r.endNode(n, StepFailed, fmt.Sprintf("parallelFor.items: %d items now, %d iterations before", len(items), len(n.units)))
		return true
	}
	now := micros(r.e.now())
	var fresh []*stepRow
	if len(n.units) == 0 {
		for i, it := range items {
			row := &stepRow{run: r.id, step: n.cs.name, iteration: i, finally: n.cs.finally, state: StepPending, item: jsonString(typed(it))}
			n.units = append(n.units, &unit{n: n, row: row, item: it})
			fresh = append(fresh, row)
		}
	}
	n.row.state, n.row.reason = StepRunning, ""
	if n.row.start == 0 {
		n.row.start = now
	}
	n.started = true
	r.write(r.event("step.started", fmt.Sprintf("step %s started: %d iterations", n.cs.name, len(items)), map[string]any{"step": n.cs.name, "iterations": len(items)}),
		func(ctx context.Context, tx *registry.Tx) error {
			for _, s := range append(fresh, n.row) {
				if err := saveStep(ctx, tx, s); err != nil {
					return err
				}
			}
			return nil
		})
	return true
}

// items returns a parallelFor step's items.
func (r *runExec) items(n *node) ([]any, error) {
	var list []any
	if n.cs.itemsLit != nil {
		list = n.cs.itemsLit
	} else {
		v, err := r.refValue(strings.Split(n.cs.items.text, "."))
		if err != nil {
			return nil, err
		}
		l, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("%s is %s, not a list", n.cs.items.text, describe(v))
		}
		list = l
	}
	if len(list) > MaxItems {
		return nil, fmt.Errorf("%d items is more than %d", len(list), MaxItems)
	}
	return list, nil
}

// refValue is a reference's value now: params, upstream outputs (a
// fan-in's list), run.status.
func (r *runExec) refValue(path []string) (any, error) {
	switch {
	case len(path) == 2 && path[0] == "params":
		return r.params[path[1]], nil
	case len(path) == 2 && path[0] == "run" && path[1] == "status":
		return string(r.mainStatus), nil
	case len(path) == 4 && path[0] == "steps":
		up := r.nodes[path[1]]
		if up == nil || !up.row.state.ok() {
			return nil, fmt.Errorf("step %s has no outputs (it is %s)", path[1], up.row.state)
		}
		v, ok := up.outputs.Params[path[3]]
		if !ok {
			return nil, fmt.Errorf("step %s has no output parameter %s", path[1], path[3])
		}
		return v, nil
	}
	return nil, fmt.Errorf("unknown reference %s", strings.Join(path, "."))
}

// tryDispatch ends or starts one unit; it reports whether anything
// changed.
func (r *runExec) tryDispatch(n *node, u *unit) bool {
	if u.row.state.Final() || u.busy {
		return false
	}
	if stop, state, reason := r.stopping(n); stop {
		if u.row.failures > 0 && state == StepSkipped {
			// It failed before and was waiting for a retry.
			state = StepFailed
			reason = "not retried: " + r.failReason + "; before: " + u.row.reason
		}
		r.stopTimer(u)
		r.endUnit(u, state, reason)
		return true
	}
	if u.waiting {
		return false
	}
	if now := r.e.clock.Now(); u.retryAt.After(now) {
		r.startTimer(u, u.retryAt.Sub(now))
		return true
	}
	if r.running >= r.e.opts.RunParallelism {
		return false
	}
	if n.cs.parallel && n.cs.parallelism > 0 {
		busy := 0
		for _, o := range n.units {
			if o.busy {
				busy++
			}
		}
		if busy >= n.cs.parallelism {
			return false
		}
	}
	plan, err := r.plan(u)
	if err != nil {
		r.endUnit(u, StepFailed, err.Error())
		return true
	}
	actx, cancel := context.WithCancelCause(r.e.ctx)
	u.busy, u.cancel = true, cancel
	r.running++
	r.e.wg.Add(1)
	go func() {
		defer r.e.wg.Done()
		res := r.execute(actx, u, plan)
		cancel(nil)
		r.events <- unitEnded{res: res}
	}()
	return true
}

// endUnit ends a unit that did not run (or will not run again).
func (r *runExec) endUnit(u *unit, state StepState, reason string) {
	u.row.state, u.row.reason, u.row.end = state, reason, micros(r.e.now())
	r.write(r.event("step."+string(state), "step "+u.name()+" "+string(state)+": "+reason,
		map[string]any{"step": u.row.step, "iteration": u.row.iteration, "state": state, "reason": reason}),
		func(ctx context.Context, tx *registry.Tx) error { return saveStep(ctx, tx, u.row) })
	r.e.metrics.steps.WithLabelValues(string(state)).Inc()
	if state == StepFailed {
		if u.row != u.n.row {
			reason = fmt.Sprintf("iteration %d: %s", u.row.iteration, reason)
		}
		r.noteFailure(u.n, reason)
	}
}

// settle ends a parallelFor node whose iterations have all ended, and
// takes a plain node's outputs; it reports whether anything changed.
func (r *runExec) settle(n *node) bool {
	if !n.cs.parallel {
		return false // onEnded settles it
	}
	for _, u := range n.units {
		if !u.row.state.Final() || u.busy || u.waiting {
			return false
		}
	}
	state, reason := StepSucceeded, ""
	for _, want := range []StepState{StepFailed, StepCancelled, StepSkipped} {
		for _, u := range n.units {
			if u.row.state == want {
				state, reason = want, fmt.Sprintf("iteration %d %s: %s", u.row.iteration, want, u.row.reason)
				break
			}
		}
		if state != StepSucceeded {
			break
		}
	}
	if state == StepSucceeded {
		out := Outputs{}
		for name := range n.cs.outParams {
			list := make([]any, len(n.units))
			for i, u := range n.units {
				list[i] = u.outputs.Params[name]
			}
			if out.Params == nil {
				out.Params = map[string]any{}
			}
			out.Params[name] = list
		}
		n.outputs = out
		n.row.outputs = encodeOutputs(out)
	}
	n.row.state, n.row.reason, n.row.end = state, reason, micros(r.e.now())
	r.write(r.event("step."+string(state), "step "+n.cs.name+" "+string(state), map[string]any{"step": n.cs.name, "state": state, "reason": reason}),
		func(ctx context.Context, tx *registry.Tx) error { return saveStep(ctx, tx, n.row) })
	if state == StepFailed {
		r.noteFailure(n, reason)
	}
	return true
}

// handle takes a message of a unit goroutine or a timer.
func (r *runExec) handle(ev any) {
	switch m := ev.(type) {
	case unitEnded:
		r.onEnded(m.res)
	case retryDue:
		if m.u.waiting {
			m.u.waiting = false
			m.u.retryAt = time.Time{}
			r.timers--
		}
	}
}

// backoff is the wait before retry n (n >= 1).
func backoff(p RetryPolicy, n int) time.Duration {
	d := float64(p.Backoff) * math.Pow(p.Factor, float64(n-1))
	if d > float64(p.MaxBackoff) || math.IsInf(d, 0) || math.IsNaN(d) {
		return time.Duration(p.MaxBackoff)
	}
	return time.Duration(d)
}

// onEnded records how a unit's execution ended, in one transaction.
func (r *runExec) onEnded(res unitResult) {
	u := res.u
	if !res.orphan {
		u.busy, u.cancel = false, nil
		r.running--
	}
	if res.state == "" {
		return // interrupted by Close: nothing to record
	}
	cs := u.n.cs
	now := micros(r.e.now())
	if a := res.attempt; a != nil {
		u.row.attempts = max(u.row.attempts, a.attempt)
		if u.row.start == 0 {
			u.row.start = a.start
		}
	}
	if res.cacheKey != "" && cs.cache {
		u.row.cacheKey = res.cacheKey
	}
	detail := map[string]any{"step": u.row.step, "iteration": u.row.iteration}
	if res.attempt != nil {
		detail["attempt"] = res.attempt.attempt
	}
	kind, msg := "", ""
	switch res.state {
	case StepCached:
		if u.row.start == 0 {
			u.row.start = now
		}
		u.row.state, u.row.reason, u.row.end = StepCached, "reused the outputs of "+res.cachedFrom, now
		u.row.cachedFrom, u.outputs = res.cachedFrom, res.outputs
		u.row.outputs = encodeOutputs(res.outputs)
		kind, msg = "step.cached", "step "+u.name()+" cached: "+u.row.reason
		detail["cachedFrom"] = res.cachedFrom
	case StepSucceeded:
		u.row.state, u.row.reason, u.row.end = StepSucceeded, "", now
		u.outputs, u.row.outputs = res.outputs, encodeOutputs(res.outputs)
		kind, msg = "step.succeeded", "step "+u.name()+" succeeded"
	case StepCancelled:
		u.row.state, u.row.reason, u.row.end = StepCancelled, res.reason, now
		kind, msg = "step.cancelled", "step "+u.name()+" cancelled: "+res.reason
	case StepFailed:
		u.row.failures++
		stop, _, _ := r.stopping(u.n)
		if u.row.failures <= cs.retry.Limit && !stop {
			d := backoff(cs.retry, u.row.failures)
			u.row.state = StepPending
			u.row.reason = fmt.Sprintf("retry %d of %d in %s: %s", u.row.failures, cs.retry.Limit, d, res.reason)
			u.retryAt = r.e.clock.Now().Add(d)
			kind, msg = "step.retrying", "step "+u.name()+": "+u.row.reason
			detail["backoff"] = d.String()
		} else {
			u.row.state, u.row.end = StepFailed, now
			u.row.reason = res.reason
			if u.row.attempts > 1 {
				u.row.reason = fmt.Sprintf("%s (after %d attempts)", res.reason, u.row.attempts)
			}
			kind, msg = "step.failed", "step "+u.name()+" failed: "+u.row.reason
		}
	}
	detail["state"], detail["reason"] = u.row.state, u.row.reason
	r.write(r.event(kind, msg, detail), func(ctx context.Context, tx *registry.Tx) error {
		if res.attempt != nil {
			if err := saveAttempt(ctx, tx, res.attempt); err != nil {
				return err
			}
		}
		return saveStep(ctx, tx, u.row)
	})
	if u.row == u.n.row && u.row.state.ok() {
		u.n.outputs = u.outputs
	}
	if u.row.state.Final() {
		r.e.metrics.steps.WithLabelValues(string(u.row.state)).Inc()
		if u.row.state == StepFailed {
			reason := u.row.reason
			if u.row != u.n.row {
				reason = fmt.Sprintf("iteration %d: %s", u.row.iteration, reason)
			}
			r.noteFailure(u.n, reason)
		}
	}
	if u.row.state == StepPending && !u.retryAt.IsZero() {
		r.startTimer(u, u.retryAt.Sub(r.e.clock.Now()))
	}
}

// startTimer makes a unit wait d before its next attempt.
func (r *runExec) startTimer(u *unit, d time.Duration) {
	u.waiting = true
	u.quit = make(chan struct{})
	r.timers++
	ch, stop := r.e.clock.NewTimer(max(d, 0))
	quit := u.quit
	r.e.wg.Add(1)
	go func() {
		defer r.e.wg.Done()
		select {
		case <-ch:
			select {
			case r.events <- retryDue{u: u}:
			case <-quit:
			case <-r.done:
			}
		case <-quit:
			stop()
		case <-r.e.ctx.Done():
			stop()
		}
	}()
}

// stopTimer ends a unit's wait for a retry.
func (r *runExec) stopTimer(u *unit) {
	if u.waiting {
		close(u.quit)
		u.waiting = false
		r.timers--
	}
}
