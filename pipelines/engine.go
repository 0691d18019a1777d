package pipelines

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/registry"
)

// Options configures Open. Every zero value has a documented default.
type Options struct {
	// Registry is the store the engine keeps its runs in (its own tables,
	// through Registry.Update) and appends its events to. Required.
	Registry *registry.Registry
	// DataDir holds the runs' working directories, <DataDir>/runs/<run>/...;
	// "" means "data" (the registry's default data directory).
	DataDir string
	// Parallelism bounds the step processes running at once in the
	// engine; 0 means 4 per CPU, at least 8.
	Parallelism int
	// RunParallelism bounds the steps of one run running at once; 0 means
	// Parallelism.
	RunParallelism int
	// MaxActiveRuns bounds the runs executing at once; Submit and Retry
	// past it fail with ErrTooManyRuns. 0 means 256.
	MaxActiveRuns int
	// DisableCache turns step caching off for every run: no step reuses
	// earlier outputs (steps still record their cache keys).
	DisableCache bool
	// KillGrace is how long a step's process group has between SIGTERM
	// and SIGKILL when it is cancelled or times out; 0 means 10s.
	KillGrace time.Duration
	// Infergate is the program a command whose first word is "infergate"
	// runs (the built-in steps: `infergate step train ...`); "" looks
	// infergate up in PATH.
	Infergate string
	// Env is the environment steps start from (the step's env and the
	// INFERGATE_ variables are added); nil means the engine's own.
	Env []string
	// Logger gets a line per run state change and step failure; nil
	// discards them.
	Logger *slog.Logger
	// Clock is the engine's time; nil is the wall clock.
	Clock Clock
	// Registerer gets the engine's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// SubmitOptions are a run's own settings.
type SubmitOptions struct {
	// DisableCache runs every step of the run even where an earlier run's
	// outputs could be reused.
	DisableCache bool
}

// Engine runs pipelines as local processes and keeps their state in the
// registry's store. Its methods are safe for concurrent use. One engine
// executes the runs of a store: with PostgreSQL, run the engine in one
// control-plane process only.
type Engine struct {
	opts    Options
	reg     *registry.Registry
	db      *sql.DB
	rd      reader
	clock   Clock
	log     *slog.Logger
	metrics *metrics
	slots   chan struct{} // the engine-wide parallelism

	ctx  context.Context // done at Close
	stop context.CancelCauseFunc

	mu     sync.Mutex
	runs   map[RunID]*runExec
	closed bool
	wg     sync.WaitGroup
}

// errClosing is the cause of the engine context's end.
var errClosing = errors.New("the engine is closing")

// Open makes the engine's tables in the registry's store if they are not
// there yet and returns the engine. It starts no goroutine: runs start
// with Submit, Retry and Recover.
func Open(ctx context.Context, opts Options) (*Engine, error) {
	if opts.Registry == nil {
		return nil, errors.New("pipelines: Options.Registry is required")
	}
	if opts.DataDir == "" {
		opts.DataDir = "data"
	}
	abs, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("pipelines: data directory: %w", err)
	}
	opts.DataDir = abs
	switch {
	case opts.Parallelism < 0:
		return nil, fmt.Errorf("pipelines: Options.Parallelism %d is negative", opts.Parallelism)
	case opts.RunParallelism < 0:
		return nil, fmt.Errorf("pipelines: Options.RunParallelism %d is negative", opts.RunParallelism)
	case opts.MaxActiveRuns < 0:
		return nil, fmt.Errorf("pipelines: Options.MaxActiveRuns %d is negative", opts.MaxActiveRuns)
	case opts.KillGrace < 0:
		return nil, fmt.Errorf("pipelines: Options.KillGrace %s is negative", opts.KillGrace)
	}
	if opts.Parallelism == 0 {
		opts.Parallelism = max(8, 4*runtime.NumCPU())
	}
	if opts.RunParallelism == 0 {
		opts.RunParallelism = opts.Parallelism
	}
	if opts.MaxActiveRuns == 0 {
		opts.MaxActiveRuns = 256
	}
	if opts.KillGrace == 0 {
		opts.KillGrace = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("pipelines: metrics: %w", err)
	}
	if err := createSchema(ctx, opts.Registry); err != nil {
		return nil, fmt.Errorf("pipelines: the engine's tables: %w", err)
	}
	db, _ := opts.Registry.DB()
	e := &Engine{
		opts: opts, reg: opts.Registry, db: db, rd: reader{db: db}, clock: opts.Clock, log: opts.Logger, metrics: m,
		slots: make(chan struct{}, opts.Parallelism),
		runs:  map[RunID]*runExec{},
	}
	e.ctx, e.stop = context.WithCancelCause(context.Background())
	return e, nil
}

// now is the engine's time, in the store's precision.
func (e *Engine) now() time.Time { return e.clock.Now().UTC().Truncate(time.Microsecond) }

// Submit validates p (if Validate has not) and the parameters (by name, as
// text: an int, double or bool as Go parses it, a list as a JSON array;
// unknown or missing ones are errors), stores the run with every step
// pending, and starts it. Errors: ErrInvalid (the pipeline or a
// parameter), ErrTooManyRuns, ErrClosed, or a store error.
func (e *Engine) Submit(ctx context.Context, p *Pipeline, params map[string]string, o SubmitOptions) (RunID, error) {
	if p == nil {
		return "", errorf(ErrInvalid, "pipelines: no pipeline to submit")
	}
	if p.c == nil {
		if err := p.Validate(); err != nil {
			return "", err
		}
	}
	vals, err := resolveParams(p, params)
	if err != nil {
		return "", err
	}
	spec, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("pipelines: encoding the pipeline: %w", err)
	}
	if err := e.admit(); err != nil {
		return "", err
	}
	now := micros(e.now())
	row := runRow{pipeline: p.Metadata.Name, spec: string(spec), baseDir: p.BaseDir, params: jsonString(typed(vals)),
		disableCache: o.DisableCache, state: RunPending, actor: registry.ActorFrom(ctx), create: now}
	err = e.reg.Update(ctx, func(ctx context.Context, tx *registry.Tx) error {
		for try := 0; ; try++ {
			row.id = newRunID(p.Metadata.Name)
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM pipeline_runs WHERE id = $1`, string(row.id)).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				break
			}
			if try == 5 {
				return fmt.Errorf("pipelines: no free run id for %s", p.Metadata.Name)
			}
		}
		if err := insertRun(ctx, tx, row); err != nil {
			return err
		}
		for _, cs := range p.c.all() {
			if err := saveStep(ctx, tx, &stepRow{run: row.id, step: cs.name, iteration: -1, finally: cs.finally, state: StepPending}); err != nil {
				return err
			}
		}
		_, err := tx.AppendEvent(runEvent("run.submitted", row.id, p.Metadata.Name, "run "+string(row.id)+" of pipeline "+p.Metadata.Name+" submitted",
			map[string]any{"params": vals, "disableCache": o.DisableCache}))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("pipelines: storing the run: %w", err)
	}
	if err := e.start(row.id); err != nil {
		return row.id, err
	}
	return row.id, nil
}

// admit refuses a new active run past MaxActiveRuns or once closed.
func (e *Engine) admit() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errorf(ErrClosed, "pipelines: the engine is closed")
	}
	if len(e.runs) >= e.opts.MaxActiveRuns {
		return errorf(ErrTooManyRuns, "pipelines: %d runs are active already (MaxActiveRuns); retry when some have ended", len(e.runs))
	}
	return nil
}

// resolveParams types the submitted parameters and applies defaults.
func resolveParams(p *Pipeline, given map[string]string) (map[string]any, error) {
	pr := &problems{source: p.Source}
	top := at{p: pr}
	out := make(map[string]any, len(p.Spec.Params))
	for _, name := range keys(given) {
		if _, ok := p.Spec.Params[name]; !ok {
			top.addf("params."+name, "the pipeline has no such param%s", suggest(name, keys(p.Spec.Params)))
		}
	}
	for _, name := range keys(p.Spec.Params) {
		ps := p.Spec.Params[name]
		if s, ok := given[name]; ok {
			v, err := parseText(s, ps.Type)
			if err != nil {
				top.addf("params."+name, "%v", err)
				continue
			}
			out[name] = v
			continue
		}
		if ps.Default == nil {
			top.addf("params."+name, "missing: the param has no default, give a %s", ps.Type)
			continue
		}
		v, _ := canonical(ps.Default)
		v, err := conform(v, ps.Type)
		if err != nil {
			top.addf("params."+name, "%v", err)
			continue
		}
		out[name] = v
	}
	if pr.len() > 0 {
		return nil, pr.err()
	}
	return out, nil
}

var runIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newRunID returns the pipeline's name and 8 random characters.
func newRunID(pipeline string) RunID {
	var b [5]byte
	rand.Read(b[:])
	return RunID(pipeline + "-" + runIDEncoding.EncodeToString(b[:]))
}

// maxEventDetail bounds the detail of an event (the registry allows
// 64 KiB).
const maxEventDetail = 16 << 10

// runEvent makes the event of a run's change.
func runEvent(kind string, id RunID, pipeline, msg string, detail map[string]any) registry.Event {
	d := map[string]any{"run": id, "pipeline": pipeline}
	for k, v := range detail {
		d[k] = v
	}
	b, _ := json.Marshal(d)
	if len(b) > maxEventDetail {
		// The registry bounds an event's detail; the run's own tables
		// hold the full figures.
		b, _ = json.Marshal(map[string]any{"run": id, "pipeline": pipeline, "truncated": len(b)})
	}
	return registry.Event{Kind: kind, Message: clip(msg, 2000), Detail: b}
}

// start starts executing a stored run in this engine.
func (e *Engine) start(id RunID) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errorf(ErrClosed, "pipelines: the engine is closed")
	}
	if _, ok := e.runs[id]; ok {
		return nil
	}
	r := newRunExec(e, id)
	e.runs[id] = r
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		r.loop()
		e.mu.Lock()
		delete(e.runs, id)
		e.mu.Unlock()
		close(r.done)
	}()
	return nil
}

func (e *Engine) active(id RunID) *runExec {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.runs[id]
}

// Recover resumes the runs the store holds as pending or running that no
// goroutine of this engine executes: after the control plane stopped
// (Close, a crash, SIGKILL). An attempt found running is marked failed
// ("the control plane stopped during the attempt"), what is left of its
// processes is killed, and it is retried per its step's retry policy;
// the run continues from where it was. It returns the runs resumed.
func (e *Engine) Recover(ctx context.Context) (int, error) {
	ids, err := e.rd.unfinished(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		if e.active(id) != nil {
			continue
		}
		if err := e.start(id); err != nil {
			return n, err
		}
		n++
	}
	if n > 0 {
		e.log.Info("pipelines: runs resumed", "runs", n)
	}
	return n, nil
}

// Get returns a run with its steps, iterations and attempts, as stored.
func (e *Engine) Get(ctx context.Context, id RunID) (*Run, error) {
	row, err := e.rd.run(ctx, id)
	if err != nil {
		return nil, err
	}
	run, err := row.api()
	if err != nil {
		return nil, err
	}
	steps, err := e.rd.steps(ctx, id)
	if err != nil {
		return nil, err
	}
	atts, err := e.rd.attempts(ctx, id, "")
	if err != nil {
		return nil, err
	}
	byKey := map[[2]any][]Attempt{}
	for _, a := range atts {
		k := [2]any{a.step, a.iteration}
		byKey[k] = append(byKey[k], Attempt{Number: a.attempt, State: a.state, Reason: a.reason, ExitCode: a.exitCode, Dir: a.dir,
			StartTime: fromMicros(a.start), EndTime: fromMicros(a.end)})
	}
	var top []StepRun
	iters := map[string][]StepRun{}
	for _, s := range steps {
		sr := StepRun{Name: s.step, Finally: s.finally, Iteration: s.iteration, State: s.state, Reason: s.reason,
			CacheKey: s.cacheKey, CachedFrom: s.cachedFrom, StartTime: fromMicros(s.start), EndTime: fromMicros(s.end),
			Attempts: byKey[[2]any{s.step, s.iteration}]}
		if s.item != "" {
			sr.Item, _ = decodeJSON(s.item)
		}
		if sr.Outputs, err = decodeOutputs(s.outputs); err != nil {
			return nil, fmt.Errorf("pipelines: run %s step %s: stored outputs: %w", id, s.step, err)
		}
		if s.iteration >= 0 {
			iters[s.step] = append(iters[s.step], sr)
		} else {
			top = append(top, sr)
		}
	}
	order := stepOrder(row.spec)
	slices.SortStableFunc(top, func(a, b StepRun) int { return order[a.Name] - order[b.Name] })
	for i := range top {
		it := iters[top[i].Name]
		slices.SortFunc(it, func(a, b StepRun) int { return a.Iteration - b.Iteration })
		top[i].Iterations = it
	}
	run.Steps = top
	return &run, nil
}

// stepOrder returns the steps' declaration order from a stored spec.
func stepOrder(spec string) map[string]int {
	order, _ := specSteps(spec)
	return order
}

// specSteps returns the steps' declaration order from a stored spec, and
// which are parallelFor steps.
func specSteps(spec string) (order map[string]int, parallel map[string]bool) {
	var s struct {
		Spec struct {
			Steps, Finally []struct {
				Name        string          `json:"name"`
				ParallelFor json.RawMessage `json:"parallelFor"`
			}
		} `json:"spec"`
	}
	_ = json.Unmarshal([]byte(spec), &s)
	order, parallel = map[string]int{}, map[string]bool{}
	for i, st := range append(s.Spec.Steps, s.Spec.Finally...) {
		order[st.Name] = i
		parallel[st.Name] = len(st.ParallelFor) > 0 && string(st.ParallelFor) != "null"
	}
	return order, parallel
}

// List returns a page of runs, newest first, without their steps.
func (e *Engine) List(ctx context.Context, o ListOptions) (*RunPage, error) {
	return e.rd.list(ctx, o)
}

// Cancel asks a run to stop: its running steps' process groups get
// SIGTERM (SIGKILL after Options.KillGrace) and end cancelled, its pending
// steps are cancelled, then its finally steps run (a Cancel while they
// run cancels them too), and the run ends cancelled. It returns once the
// request is stored; Wait for the end. A run that is stored as running
// but that no engine executes is marked to be cancelled when Recover
// resumes it. ErrConflict if the run has ended; ErrNotFound.
func (e *Engine) Cancel(ctx context.Context, id RunID) error {
	actor := registry.ActorFrom(ctx)
	if r := e.active(id); r != nil {
		ack := make(chan error, 1)
		select {
		case r.cancelCh <- cancelReq{actor: actor, ack: ack}:
		case <-r.done:
			return e.cancelStored(ctx, id, actor)
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case err := <-ack:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return e.cancelStored(ctx, id, actor)
}

// cancelStored marks a run no engine executes to be cancelled.
func (e *Engine) cancelStored(ctx context.Context, id RunID, actor string) error {
	return e.reg.Update(ctx, func(ctx context.Context, tx *registry.Tx) error {
		r, err := scanRun(tx.QueryRowContext(ctx, `SELECT `+runCols+` FROM pipeline_runs WHERE id = $1`, string(id)))
		if errors.Is(err, sql.ErrNoRows) {
			return errorf(ErrNotFound, "pipelines: run %s not found", id)
		}
		if err != nil {
			return err
		}
		if r.state.Final() {
			return errorf(ErrConflict, "pipelines: run %s has ended (%s): nothing to cancel", id, r.state)
		}
		if r.cancelling {
			return nil
		}
		r.cancelling, r.reason = true, cancelReason(actor)
		if err := saveRun(ctx, tx, &r); err != nil {
			return err
		}
		_, err = tx.AppendEvent(runEvent("run.cancelling", id, r.pipeline, "run "+string(id)+": "+r.reason, nil))
		return err
	})
}

func cancelReason(actor string) string {
	if actor == "" {
		return "cancel requested"
	}
	return "cancel requested by " + actor
}

// Retry runs again what did not succeed in a failed or cancelled run: its
// failed, cancelled and skipped steps and iterations go back to pending
// with a fresh retry budget, and its finally steps run again; succeeded
// and cached steps keep their outputs, which the others read as before.
// ErrConflict if the run is running or succeeded; ErrNotFound.
func (e *Engine) Retry(ctx context.Context, id RunID) error {
	if e.active(id) != nil {
		return errorf(ErrConflict, "pipelines: run %s is running: cancel it or wait for it to end first", id)
	}
	if err := e.admit(); err != nil {
		return err
	}
	err := e.reg.Update(ctx, func(ctx context.Context, tx *registry.Tx) error {
		r, err := scanRun(tx.QueryRowContext(ctx, `SELECT `+runCols+` FROM pipeline_runs WHERE id = $1`, string(id)))
		if errors.Is(err, sql.ErrNoRows) {
			return errorf(ErrNotFound, "pipelines: run %s not found", id)
		}
		if err != nil {
			return err
		}
		if r.state != RunFailed && r.state != RunCancelled {
			return errorf(ErrConflict, "pipelines: run %s is %s: only a failed or cancelled run can be retried", id, r.state)
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+stepCols+` FROM pipeline_steps WHERE run_id = $1`, string(id))
		if err != nil {
			return err
		}
		var steps []stepRow
		for rows.Next() {
			s, err := scanStep(rows)
			if err != nil {
				rows.Close()
				return err
			}
			steps = append(steps, s)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		reset := 0
		for i := range steps {
			s := &steps[i]
			if s.state.ok() && !s.finally {
				continue
			}
			s.state, s.reason, s.failures, s.end, s.cachedFrom = StepPending, "", 0, 0, ""
			s.outputs = ""
			if err := saveStep(ctx, tx, s); err != nil {
				return err
			}
			reset++
		}
		r.state, r.reason, r.cancelling, r.end = RunPending, "", false, 0
		if err := saveRun(ctx, tx, &r); err != nil {
			return err
		}
		_, err = tx.AppendEvent(runEvent("run.retried", id, r.pipeline, fmt.Sprintf("run %s retried: %d steps to run again", id, reset),
			map[string]any{"steps": reset}))
		return err
	})
	if err != nil {
		return err
	}
	return e.start(id)
}

// Wait returns the run once it has ended. It waits on the run's end, not
// by polling; a run stored as unfinished that no engine executes
// (Recover was not called) is an ErrConflict, not a wait forever.
func (e *Engine) Wait(ctx context.Context, id RunID) (*Run, error) {
	if r := e.active(id); r != nil {
		select {
		case <-r.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if r.broken != nil {
			return nil, r.broken
		}
	}
	run, err := e.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if !run.State.Final() {
		if r := e.active(id); r != nil {
			// Retried meanwhile: wait for that execution.
			return e.Wait(ctx, id)
		}
		return run, errorf(ErrConflict, "pipelines: run %s is %s in the store but not executing in this engine (call Recover)", id, run.State)
	}
	return run, nil
}

// Close stops the engine: running steps' process groups are killed
// (SIGTERM, then SIGKILL after KillGrace) and Close waits for them and
// for every goroutine of the engine. Their attempts stay running in the
// store: the next Recover treats them as after a crash. Calls after the
// first return nil at once.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.stop(errClosing)
	e.wg.Wait()
	return nil
}

// runDir is the directory of a run's attempts.
func (e *Engine) runDir(id RunID) string { return filepath.Join(e.opts.DataDir, "runs", string(id)) }

// attemptDir is <DataDir>/runs/<run>/<step>[/<iteration>]/attempt-<n>.
func (e *Engine) attemptDir(id RunID, step string, iteration, attempt int) string {
	parts := []string{e.runDir(id), step}
	if iteration >= 0 {
		parts = append(parts, fmt.Sprint(iteration))
	}
	return filepath.Join(append(parts, fmt.Sprintf("attempt-%d", attempt))...)
}

// describeStep names a step or an iteration for messages.
func describeStep(step string, iteration int) string {
	if iteration < 0 {
		return step
	}
	return fmt.Sprintf("%s[%d]", step, iteration)
}

// oneLine flattens a message for an event or a reason.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
