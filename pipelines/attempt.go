package pipelines

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/infergate/infergate/registry"
)

// unitPlan is what a unit goroutine needs, copied out of the run loop's
// state when the unit is dispatched.
type unitPlan struct {
	cs       *cstep
	row      stepRow
	attempt  int
	pipeline string
	actor    string
	baseDir  string
	params   map[string]any
	inputs   map[string]*planInput
	item     any
	cacheOn  bool
	// runStatus and stepStates are told to finally steps.
	runStatus  RunState
	stepStates map[string]StepState
}

// planInput is a resolved input: a value, or artifacts.
type planInput struct {
	value any
	art   *ArtifactRef
	arts  []ArtifactRef // a fan-in of artifacts
	fanIn bool
	file  string // a file input's path, hashed by the unit goroutine
}

// unitResult is how a unit's execution ended.
type unitResult struct {
	u *unit
	// state is succeeded, failed, cancelled or cached; "" when the engine
	// is closing (nothing is recorded).
	state      StepState
	reason     string
	attempt    *attemptRow // nil when no process was started
	outputs    Outputs
	cacheKey   string
	cachedFrom string
	// orphan marks the failure of an attempt a stopped control plane left
	// running (no goroutine executed it).
	orphan bool
}

// plan resolves a unit's inputs from the run's state.
func (r *runExec) plan(u *unit) (*unitPlan, error) {
	cs := u.n.cs
	p := &unitPlan{cs: cs, row: *u.row, attempt: u.row.attempts + 1, pipeline: r.row.pipeline, actor: r.row.actor,
		baseDir: r.row.baseDir, params: r.params, item: u.item, inputs: map[string]*planInput{},
		cacheOn: cs.cache && !r.row.disableCache && !r.e.opts.DisableCache}
	if cs.finally {
		p.runStatus = r.mainStatus
		p.stepStates = map[string]StepState{}
		for _, n := range r.order {
			p.stepStates[n.cs.name] = n.row.state
		}
	}
	for _, name := range cs.inputKeys {
		in := cs.inputs[name]
		pi := &planInput{}
		switch in.kind {
		case inValue:
			pi.value = in.value
		case inFile:
			path, err := execTemplate(in.file, map[string]any{"Params": tmplParams(r.params)})
			if err != nil {
				return nil, fmt.Errorf("inputs.%s.file: %v", name, err)
			}
			if !filepath.IsAbs(path) {
				base := r.row.baseDir
				if base == "" {
					base = "."
				}
				if path, err = filepath.Abs(filepath.Join(base, path)); err != nil {
					return nil, fmt.Errorf("inputs.%s.file: %v", name, err)
				}
			}
			pi.file = path
		case inRef:
			switch in.ref.kind {
			case refParam:
				pi.value = r.params[in.ref.name]
			case refItem:
				pi.value = u.item
			case refStep:
				up := r.nodes[in.ref.step]
				if !up.row.state.ok() {
					return nil, fmt.Errorf("inputs.%s: step %s has no outputs (it is %s)", name, up.cs.name, up.row.state)
				}
				switch {
				case in.ref.artif && in.ref.fanIn:
					pi.fanIn = true
					pi.arts = make([]ArtifactRef, 0, len(up.units))
					for _, it := range up.units {
						a, ok := it.outputs.Artifacts[in.ref.name]
						if !ok {
							return nil, fmt.Errorf("inputs.%s: iteration %d of step %s has no artifact %s", name, it.row.iteration, up.cs.name, in.ref.name)
						}
						pi.arts = append(pi.arts, a)
					}
				case in.ref.artif:
					a, ok := up.outputs.Artifacts[in.ref.name]
					if !ok {
						return nil, fmt.Errorf("inputs.%s: step %s has no artifact %s", name, up.cs.name, in.ref.name)
					}
					pi.art = &a
				default:
					v, ok := up.outputs.Params[in.ref.name]
					if !ok {
						return nil, fmt.Errorf("inputs.%s: step %s has no output %s", name, up.cs.name, in.ref.name)
					}
					pi.value = v
				}
			}
			if t := cs.s.Inputs[name].Type; t != "" && t != TypeArtifact && pi.value != nil {
				v, err := conform(pi.value, t)
				if err != nil {
					return nil, fmt.Errorf("inputs.%s: %v", name, err)
				}
				pi.value = v
			}
		}
		p.inputs[name] = pi
	}
	return p, nil
}

func tmplParams(params map[string]any) map[string]any {
	out := make(map[string]any, len(params))
	for k, v := range params {
		out[k] = tmplValue(v)
	}
	return out
}

// execute runs one attempt of a unit (or finds it cached) and says how it
// ended. It runs in its own goroutine; it reads only the plan and writes
// only the attempt's start to the store.
func (r *runExec) execute(ctx context.Context, u *unit, p *unitPlan) unitResult {
	e := r.e
	res := unitResult{u: u}
	cs := p.cs
	for _, name := range cs.inputKeys {
		pi := p.inputs[name]
		if pi.file == "" {
			continue
		}
		a, err := hashArtifact(ctx, pi.file)
		if err != nil {
			if ctx.Err() != nil {
				return ended(ctx, res)
			}
			res.state, res.reason = StepFailed, fmt.Sprintf("input %s: %v", name, err)
			return res
		}
		a.Iteration = -1
		pi.art = &a
	}
	key, err := cacheKey(p)
	if err != nil {
		res.state, res.reason = StepFailed, err.Error()
		return res
	}
	res.cacheKey = key
	if p.cacheOn {
		if hit, ok, err := e.rd.cacheHit(ctx, key); err == nil && ok {
			if outs, err := decodeOutputs(hit.outputs); err == nil && stillThere(outs) == nil {
				res.state, res.outputs = StepCached, outs
				res.cachedFrom = "run " + string(hit.run) + " step " + describeStep(hit.step, hit.iteration)
				return res
			}
		}
	}
	select {
	case e.slots <- struct{}{}:
	case <-ctx.Done():
		return ended(ctx, res)
	}
	defer func() { <-e.slots }()
	return r.attempt(ctx, res, p)
}

// ended is the result of a unit whose context ended before its process
// started.
func ended(ctx context.Context, res unitResult) unitResult {
	if errors.Is(context.Cause(ctx), errCancelled) {
		res.state, res.reason = StepCancelled, "the run was cancelled"
	}
	return res
}

// attempt records, prepares and runs one attempt.
func (r *runExec) attempt(ctx context.Context, res unitResult, p *unitPlan) unitResult {
	e := r.e
	cs := p.cs
	dir := e.attemptDir(r.id, p.row.step, p.row.iteration, p.attempt)
	a := &attemptRow{run: r.id, step: p.row.step, iteration: p.row.iteration, attempt: p.attempt, state: StepRunning,
		exitCode: -1, dir: dir, start: micros(e.now())}
	res.attempt = a
	row := p.row
	row.state, row.reason, row.attempts = StepRunning, "", p.attempt
	if row.start == 0 {
		row.start = a.start
	}
	name := describeStep(row.step, row.iteration)
	ev := runEvent("step.started", r.id, p.pipeline, fmt.Sprintf("run %s: step %s attempt %d started", r.id, name, p.attempt),
		map[string]any{"step": row.step, "iteration": row.iteration, "attempt": p.attempt})
	ev.Actor = p.actor
	// Stored before the process exists, so that a crash from here on
	// leaves an attempt that Recover fails and retries.
	err := e.reg.Update(ctx, func(ctx context.Context, tx *registry.Tx) error {
		if err := saveAttempt(ctx, tx, a); err != nil {
			return err
		}
		if err := saveStep(ctx, tx, &row); err != nil {
			return err
		}
		_, err := tx.AppendEvent(ev)
		return err
	})
	if err != nil {
		res.attempt = nil
		if ctx.Err() != nil {
			return ended(ctx, res)
		}
		res.state, res.reason = StepFailed, "storing the attempt: "+err.Error()
		return res
	}
	r.notify()
	fail := func(reason string) unitResult {
		a.state, a.reason, a.end = StepFailed, reason, micros(e.now())
		res.state, res.reason = StepFailed, reason
		return res
	}
	outDir := filepath.Join(dir, "outputs")
	if err := os.RemoveAll(dir); err != nil {
		return fail("preparing the attempt directory: " + err.Error())
	}
	for _, d := range []string{filepath.Join(outDir, "params"), filepath.Join(outDir, "artifacts")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fail("preparing the attempt directory: " + err.Error())
		}
	}
	inputsPath := filepath.Join(dir, "inputs.json")
	if err := os.WriteFile(inputsPath, []byte(executorInput(r.id, p, dir)+"\n"), 0o644); err != nil {
		return fail("writing inputs.json: " + err.Error())
	}
	argv, env, err := render(p, templateData(r.id, p, dir, false))
	if err != nil {
		return fail(err.Error())
	}
	argv[0], err = e.program(argv[0], p.baseDir)
	if err != nil {
		return fail(err.Error())
	}
	env = append(e.baseEnv(), append(env, engineEnv(r.id, p, dir)...)...)
	out := e.runProcess(ctx, cs, argv, env, dir, a)
	res.state, res.reason = out.state, out.reason
	a.state, a.reason, a.exitCode, a.end = out.state, out.reason, out.exitCode, micros(out.exited)
	if out.state != StepSucceeded {
		if out.state == "" {
			res.attempt = nil // closing: the attempt stays running for Recover
		}
		return res
	}
	outs, err := collectOutputs(ctx, cs, outDir, ArtifactRef{Run: r.id, Step: row.step, Iteration: row.iteration})
	if err == nil {
		err = storeArtifacts(registry.WithActor(ctx, p.actor), e.reg, outs, p.attempt)
	}
	if err != nil {
		appendLog(dir, "infergate: "+err.Error())
		if ctx.Err() != nil {
			res.attempt = nil
			return ended(ctx, res)
		}
		a.state, a.reason = StepFailed, err.Error()
		res.state, res.reason = StepFailed, err.Error()
		e.metrics.attempts.WithLabelValues("failed").Inc()
		return res
	}
	res.outputs = outs
	return res
}

// program resolves a command's first word.
func (e *Engine) program(name, baseDir string) (string, error) {
	switch {
	case name == "infergate" && e.opts.Infergate != "":
		return e.opts.Infergate, nil
	case strings.Contains(name, "/") && !filepath.IsAbs(name):
		if baseDir == "" {
			baseDir = "."
		}
		return filepath.Abs(filepath.Join(baseDir, name))
	}
	return name, nil
}

func (e *Engine) baseEnv() []string {
	if e.opts.Env != nil {
		return append([]string(nil), e.opts.Env...)
	}
	return os.Environ()
}

// engineEnv are the INFERGATE_ variables of an attempt.
func engineEnv(id RunID, p *unitPlan, dir string) []string {
	env := []string{
		"INFERGATE_RUN_ID=" + string(id),
		"INFERGATE_PIPELINE=" + p.pipeline,
		"INFERGATE_STEP=" + p.row.step,
		"INFERGATE_ATTEMPT=" + strconv.Itoa(p.attempt),
		"INFERGATE_STEP_DIR=" + dir,
		"INFERGATE_INPUTS=" + filepath.Join(dir, "inputs.json"),
		"INFERGATE_OUTPUTS=" + filepath.Join(dir, "outputs"),
	}
	if p.cs.parallel {
		env = append(env, "INFERGATE_ITERATION="+strconv.Itoa(p.row.iteration), "INFERGATE_ITEM="+format(p.item))
	}
	if p.cs.finally {
		env = append(env, "INFERGATE_RUN_STATUS="+string(p.runStatus))
	}
	return env
}

// templateData is what command and env templates see. For the cache key
// (canonical), paths that differ from run to run are replaced by the
// names of the variables that hold them and artifact inputs by their
// digests.
func templateData(id RunID, p *unitPlan, dir string, canonical bool) map[string]any {
	outDir := filepath.Join(dir, "outputs")
	if canonical {
		dir, outDir = "$INFERGATE_STEP_DIR", "$INFERGATE_OUTPUTS"
	}
	inputs := map[string]any{}
	for name, pi := range p.inputs {
		switch {
		case pi.art != nil:
			inputs[name] = pi.art.Path
			if canonical {
				inputs[name] = pi.art.Digest
			}
		case pi.fanIn:
			l := make(listValue, len(pi.arts))
			for i, a := range pi.arts {
				l[i] = a.Path
				if canonical {
					l[i] = a.Digest
				}
			}
			inputs[name] = l
		default:
			inputs[name] = tmplValue(pi.value)
		}
	}
	outputs := map[string]any{}
	for name := range p.cs.outParams {
		outputs[name] = outDir + "/params/" + name
	}
	for _, name := range p.cs.outArtifacts {
		outputs[name] = outDir + "/artifacts/" + name
	}
	d := map[string]any{
		"Params": tmplParams(p.params), "Inputs": inputs, "Outputs": outputs,
		"OutputDir": outDir, "StepDir": dir, "RunID": string(id), "Attempt": p.attempt,
	}
	if canonical {
		d["RunID"], d["Attempt"] = "$INFERGATE_RUN_ID", 0
	}
	if p.cs.parallel {
		d["Item"], d["Iteration"] = tmplValue(p.item), p.row.iteration
	}
	if p.cs.finally {
		d["Status"] = string(p.runStatus)
	}
	return d
}

// render expands the command and the env.
func render(p *unitPlan, data map[string]any) ([]string, []string, error) {
	argv := make([]string, len(p.cs.cmd))
	for i, t := range p.cs.cmd {
		s, err := execTemplate(t, data)
		if err != nil {
			return nil, nil, fmt.Errorf("command[%d]: %v", i, err)
		}
		argv[i] = s
	}
	if argv[0] == "" {
		return nil, nil, errors.New("command[0]: the program is empty")
	}
	env := make([]string, 0, len(p.cs.envKeys))
	for _, k := range p.cs.envKeys {
		s, err := execTemplate(p.cs.env[k], data)
		if err != nil {
			return nil, nil, fmt.Errorf("env.%s: %v", k, err)
		}
		env = append(env, k+"="+s)
	}
	return argv, env, nil
}

// cacheKey hashes what determines a step's outputs: its command and env
// as rendered (run-specific paths canonical, artifact inputs by digest),
// its input values and artifact digests, its item, and its declared
// outputs. Two executions with equal keys are expected to produce equal
// outputs.
func cacheKey(p *unitPlan) (string, error) {
	argv, env, err := render(p, templateData("", p, "", true))
	if err != nil {
		return "", err
	}
	params := map[string]any{}
	arts := map[string]any{}
	for name, pi := range p.inputs {
		switch {
		case pi.art != nil:
			arts[name] = pi.art.Digest
		case pi.fanIn:
			ds := make([]any, len(pi.arts))
			for i, a := range pi.arts {
				ds[i] = a.Digest
			}
			arts[name] = ds
		default:
			params[name] = pi.value
		}
	}
	outs := map[string]any{}
	for n, t := range p.cs.outParams {
		outs[n] = string(t)
		if op, ok := p.cs.outFrom[n]; ok {
			outs[n] = string(t) + " " + op.Artifact + "." + op.Key
		}
	}
	for _, n := range p.cs.outArtifacts {
		outs[n] = "artifact"
	}
	doc := map[string]any{"v": 1, "command": argv, "env": env, "params": params, "artifacts": arts, "outputs": outs}
	if p.cs.parallel {
		doc["item"] = p.item
	}
	if p.cs.finally {
		doc["runStatus"] = string(p.runStatus)
	}
	sum := sha256.Sum256([]byte(jsonString(doc)))
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// executorInput is inputs.json: see the package documentation.
func executorInput(id RunID, p *unitPlan, dir string) string {
	params := map[string]any{}
	arts := map[string]any{}
	for name, pi := range p.inputs {
		switch {
		case pi.art != nil:
			arts[name] = *pi.art
		case pi.fanIn:
			arts[name] = pi.arts
		default:
			params[name] = pi.value
		}
	}
	outDir := filepath.Join(dir, "outputs")
	outParams := map[string]any{}
	for n, t := range p.cs.outParams {
		if op, ok := p.cs.outFrom[n]; ok {
			outParams[n] = map[string]any{"type": t, "artifact": op.Artifact, "key": op.Key}
			continue
		}
		outParams[n] = map[string]any{"type": t, "path": filepath.Join(outDir, "params", n)}
	}
	outArts := map[string]any{}
	for _, n := range p.cs.outArtifacts {
		outArts[n] = map[string]any{"path": filepath.Join(outDir, "artifacts", n)}
	}
	doc := map[string]any{
		"run": id, "pipeline": p.pipeline, "step": p.row.step, "attempt": p.attempt,
		"inputs":  map[string]any{"parameters": params, "artifacts": arts},
		"outputs": map[string]any{"dir": outDir, "parameters": outParams, "artifacts": outArts},
	}
	if p.cs.parallel {
		doc["iteration"], doc["item"] = p.row.iteration, p.item
	}
	if p.cs.finally {
		doc["runStatus"], doc["steps"] = p.runStatus, p.stepStates
	}
	var b bytes.Buffer
	b.WriteString(jsonString(doc))
	return b.String()
}

// procOutcome is how a process ended.
type procOutcome struct {
	state    StepState // "" when the engine is closing
	reason   string
	exitCode int
	exited   time.Time
}

// runProcess runs a step's process in its own process group, its output
// to dir/log, until it exits, its timeout passes or ctx ends (then the
// group gets SIGTERM, and SIGKILL after KillGrace). Whatever is left of
// the group after the process exits is killed.
func (e *Engine) runProcess(ctx context.Context, cs *cstep, argv, env []string, dir string, a *attemptRow) procOutcome {
	now := func() time.Time { return e.now() }
	logf, err := os.OpenFile(filepath.Join(dir, "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return procOutcome{state: StepFailed, reason: "opening the log: " + err.Error(), exitCode: -1, exited: now()}
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(logf, "infergate: cannot start %s: %v\n", argv[0], err)
		e.metrics.attempts.WithLabelValues("failed").Inc()
		return procOutcome{state: StepFailed, reason: "cannot start the command: " + err.Error(), exitCode: -1, exited: now()}
	}
	pgid := cmd.Process.Pid
	started := now()
	// The attempt was stored as started just before; it now records when
	// the process did.
	a.start = micros(started)
	e.metrics.running.Inc()
	defer e.metrics.running.Dec()
	// The group's id, for Recover to kill what a crash leaves running.
	_ = os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(pgid)+"\n"), 0o644)
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var timeout <-chan time.Time
	if cs.timeout > 0 {
		ch, stop := e.clock.NewTimer(cs.timeout)
		defer stop()
		timeout = ch
	}
	var werr error
	why := ""
	select {
	case werr = <-waited:
	case <-timeout:
		why = "timeout"
		werr = e.kill(pgid, waited)
	case <-ctx.Done():
		why = "ctx"
		werr = e.kill(pgid, waited)
	}
	exited := now()
	_ = signalGroup(pgid, syscall.SIGKILL) // what the process left behind
	e.metrics.duration.Observe(exited.Sub(started).Seconds())
	out := procOutcome{exitCode: -1, exited: exited}
	if st := cmd.ProcessState; st != nil {
		out.exitCode = st.ExitCode()
	}
	switch {
	case why == "timeout":
		out.state, out.reason = StepFailed, fmt.Sprintf("timed out after %s (the process group was killed)", cs.timeout)
		fmt.Fprintf(logf, "infergate: %s\n", out.reason)
		e.metrics.attempts.WithLabelValues("timeout").Inc()
	case why == "ctx" && errors.Is(context.Cause(ctx), errCancelled):
		out.state, out.reason = StepCancelled, "the run was cancelled (the process group was killed)"
		fmt.Fprintf(logf, "infergate: %s\n", out.reason)
		e.metrics.attempts.WithLabelValues("cancelled").Inc()
	case why == "ctx":
		fmt.Fprintf(logf, "infergate: the control plane stopped; the process group was killed\n")
	case werr == nil:
		out.state = StepSucceeded
		e.metrics.attempts.WithLabelValues("succeeded").Inc()
	default:
		out.state = StepFailed
		var ee *exec.ExitError
		if errors.As(werr, &ee) && ee.ProcessState.ExitCode() >= 0 {
			out.reason = "exit code " + strconv.Itoa(ee.ProcessState.ExitCode())
		} else if errors.As(werr, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				out.reason = "killed by signal " + ws.Signal().String()
			} else {
				out.reason = werr.Error()
			}
		} else {
			out.reason = werr.Error()
		}
		if last := lastLine(filepath.Join(dir, "log")); last != "" {
			out.reason += ": " + last
		}
		e.metrics.attempts.WithLabelValues("failed").Inc()
	}
	return out
}

// kill stops a process group: SIGTERM, then SIGKILL after KillGrace if
// the process has not exited; it returns the process's wait error.
func (e *Engine) kill(pgid int, waited <-chan error) error {
	_ = signalGroup(pgid, syscall.SIGTERM)
	grace, stop := e.clock.NewTimer(e.opts.KillGrace)
	defer stop()
	select {
	case err := <-waited:
		return err
	case <-grace:
		_ = signalGroup(pgid, syscall.SIGKILL)
		return <-waited
	}
}

// lastLine returns the last non-empty line of a log (of its last 4 KiB),
// shortened, for a failure's reason.
func lastLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(info.Size()-4096, 0)
	b := make([]byte, info.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\r\n\t "), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return clip(oneLine(l), 300)
		}
	}
	return ""
}

// appendLog adds an engine line to an attempt's log.
func appendLog(dir, line string) {
	f, err := os.OpenFile(filepath.Join(dir, "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	fmt.Fprintln(f, line)
	f.Close()
}

// readPidFile returns the process group id an attempt recorded, or 0.
func readPidFile(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "pid"))
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return n
}
