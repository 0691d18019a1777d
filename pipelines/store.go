package pipelines

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/infergate/infergate/registry"
)

// The engine's tables in the registry's store: portable SQL for SQLite and
// PostgreSQL alike ($1 parameters, BIGINT micro-second times, 0 for unset,
// INTEGER 0/1 for booleans, JSON as TEXT).
var schema = []string{
	`CREATE TABLE IF NOT EXISTS pipeline_runs (
	id TEXT PRIMARY KEY,
	pipeline TEXT NOT NULL,
	spec TEXT NOT NULL,
	base_dir TEXT NOT NULL,
	params TEXT NOT NULL,
	disable_cache INTEGER NOT NULL,
	state TEXT NOT NULL,
	reason TEXT NOT NULL,
	cancelling INTEGER NOT NULL,
	actor TEXT NOT NULL,
	create_time BIGINT NOT NULL,
	start_time BIGINT NOT NULL,
	end_time BIGINT NOT NULL
)`,
	`CREATE INDEX IF NOT EXISTS pipeline_runs_by_time ON pipeline_runs (create_time, id)`,
	`CREATE INDEX IF NOT EXISTS pipeline_runs_by_state ON pipeline_runs (state)`,
	// One row per step (iteration -1) and per iteration of a parallelFor
	// step (0, 1, ...). attempts numbers the attempts made; failures counts
	// those that count against the retry limit (reset by Retry).
	`CREATE TABLE IF NOT EXISTS pipeline_steps (
	run_id TEXT NOT NULL,
	step TEXT NOT NULL,
	iteration INTEGER NOT NULL,
	finally INTEGER NOT NULL,
	state TEXT NOT NULL,
	reason TEXT NOT NULL,
	attempts INTEGER NOT NULL,
	failures INTEGER NOT NULL,
	item TEXT NOT NULL,
	cache_key TEXT NOT NULL,
	cached_from TEXT NOT NULL,
	outputs TEXT NOT NULL,
	start_time BIGINT NOT NULL,
	end_time BIGINT NOT NULL,
	PRIMARY KEY (run_id, step, iteration)
)`,
	`CREATE INDEX IF NOT EXISTS pipeline_steps_by_cache_key ON pipeline_steps (cache_key, state)`,
	`CREATE TABLE IF NOT EXISTS pipeline_attempts (
	run_id TEXT NOT NULL,
	step TEXT NOT NULL,
	iteration INTEGER NOT NULL,
	attempt INTEGER NOT NULL,
	state TEXT NOT NULL,
	reason TEXT NOT NULL,
	exit_code INTEGER NOT NULL,
	dir TEXT NOT NULL,
	start_time BIGINT NOT NULL,
	end_time BIGINT NOT NULL,
	PRIMARY KEY (run_id, step, iteration, attempt)
)`,
	`CREATE INDEX IF NOT EXISTS pipeline_attempts_by_state ON pipeline_attempts (state)`,
}

func createSchema(ctx context.Context, reg *registry.Registry) error {
	return reg.Update(ctx, func(ctx context.Context, tx *registry.Tx) error {
		for _, st := range schema {
			if _, err := tx.ExecContext(ctx, st); err != nil {
				return err
			}
		}
		return nil
	})
}

// runRow is a row of pipeline_runs.
type runRow struct {
	id           RunID
	pipeline     string
	spec         string
	baseDir      string
	params       string
	disableCache bool
	state        RunState
	reason       string
	cancelling   bool
	actor        string
	create       int64
	start, end   int64
}

// stepRow is a row of pipeline_steps.
type stepRow struct {
	run        RunID
	step       string
	iteration  int
	finally    bool
	state      StepState
	reason     string
	attempts   int
	failures   int
	item       string
	cacheKey   string
	cachedFrom string
	outputs    string
	start, end int64
}

// attemptRow is a row of pipeline_attempts.
type attemptRow struct {
	run        RunID
	step       string
	iteration  int
	attempt    int
	state      StepState
	reason     string
	exitCode   int
	dir        string
	start, end int64
}

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

const runCols = `id, pipeline, spec, base_dir, params, disable_cache, state, reason, cancelling, actor, create_time, start_time, end_time`

func scanRun(sc interface{ Scan(...any) error }) (runRow, error) {
	var r runRow
	var dc, canc int
	err := sc.Scan(&r.id, &r.pipeline, &r.spec, &r.baseDir, &r.params, &dc, &r.state, &r.reason, &canc, &r.actor, &r.create, &r.start, &r.end)
	r.disableCache, r.cancelling = dc != 0, canc != 0
	return r, err
}

func insertRun(ctx context.Context, tx *registry.Tx, r runRow) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO pipeline_runs (`+runCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		string(r.id), r.pipeline, r.spec, r.baseDir, r.params, b2i(r.disableCache), string(r.state), r.reason, b2i(r.cancelling), r.actor, r.create, r.start, r.end)
	return err
}

// saveRun writes a run's state.
func saveRun(ctx context.Context, tx *registry.Tx, r *runRow) error {
	_, err := tx.ExecContext(ctx, `UPDATE pipeline_runs SET state = $1, reason = $2, cancelling = $3, start_time = $4, end_time = $5 WHERE id = $6`,
		string(r.state), r.reason, b2i(r.cancelling), r.start, r.end, string(r.id))
	return err
}

const stepCols = `run_id, step, iteration, finally, state, reason, attempts, failures, item, cache_key, cached_from, outputs, start_time, end_time`

func scanStep(sc interface{ Scan(...any) error }) (stepRow, error) {
	var s stepRow
	var fin int
	err := sc.Scan(&s.run, &s.step, &s.iteration, &fin, &s.state, &s.reason, &s.attempts, &s.failures, &s.item, &s.cacheKey, &s.cachedFrom, &s.outputs, &s.start, &s.end)
	s.finally = fin != 0
	return s, err
}

// saveStep writes a step row, inserting it if new.
func saveStep(ctx context.Context, tx *registry.Tx, s *stepRow) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO pipeline_steps (`+stepCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (run_id, step, iteration) DO UPDATE SET state = excluded.state, reason = excluded.reason, attempts = excluded.attempts,
failures = excluded.failures, item = excluded.item, cache_key = excluded.cache_key, cached_from = excluded.cached_from,
outputs = excluded.outputs, start_time = excluded.start_time, end_time = excluded.end_time`,
		string(s.run), s.step, s.iteration, b2i(s.finally), string(s.state), s.reason, s.attempts, s.failures, s.item, s.cacheKey, s.cachedFrom, s.outputs, s.start, s.end)
	return err
}

const attemptCols = `run_id, step, iteration, attempt, state, reason, exit_code, dir, start_time, end_time`

func scanAttempt(sc interface{ Scan(...any) error }) (attemptRow, error) {
	var a attemptRow
	err := sc.Scan(&a.run, &a.step, &a.iteration, &a.attempt, &a.state, &a.reason, &a.exitCode, &a.dir, &a.start, &a.end)
	return a, err
}

// saveAttempt writes an attempt row, inserting it if new.
func saveAttempt(ctx context.Context, tx *registry.Tx, a *attemptRow) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO pipeline_attempts (`+attemptCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (run_id, step, iteration, attempt) DO UPDATE SET state = excluded.state, reason = excluded.reason,
exit_code = excluded.exit_code, dir = excluded.dir, start_time = excluded.start_time, end_time = excluded.end_time`,
		string(a.run), a.step, a.iteration, a.attempt, string(a.state), a.reason, a.exitCode, a.dir, a.start, a.end)
	return err
}

// reader reads the engine's tables outside a write transaction.
type reader struct{ db *sql.DB }

func (rd reader) run(ctx context.Context, id RunID) (runRow, error) {
	r, err := scanRun(rd.db.QueryRowContext(ctx, `SELECT `+runCols+` FROM pipeline_runs WHERE id = $1`, string(id)))
	if errors.Is(err, sql.ErrNoRows) {
		return r, errorf(ErrNotFound, "pipelines: run %s not found", id)
	}
	if err != nil {
		return r, fmt.Errorf("pipelines: reading run %s: %w", id, err)
	}
	return r, nil
}

func (rd reader) steps(ctx context.Context, id RunID) ([]stepRow, error) {
	rows, err := rd.db.QueryContext(ctx, `SELECT `+stepCols+` FROM pipeline_steps WHERE run_id = $1 ORDER BY step, iteration`, string(id))
	if err != nil {
		return nil, fmt.Errorf("pipelines: reading the steps of run %s: %w", id, err)
	}
	defer rows.Close()
	var out []stepRow
	for rows.Next() {
		s, err := scanStep(rows)
		if err != nil {
			return nil, fmt.Errorf("pipelines: reading the steps of run %s: %w", id, err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func (rd reader) attempts(ctx context.Context, id RunID, where string, args ...any) ([]attemptRow, error) {
	rows, err := rd.db.QueryContext(ctx, `SELECT `+attemptCols+` FROM pipeline_attempts WHERE run_id = $1`+where+` ORDER BY step, iteration, attempt`,
		append([]any{string(id)}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("pipelines: reading the attempts of run %s: %w", id, err)
	}
	defer rows.Close()
	var out []attemptRow
	for rows.Next() {
		a, err := scanAttempt(rows)
		if err != nil {
			return nil, fmt.Errorf("pipelines: reading the attempts of run %s: %w", id, err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// unfinished returns the runs that are pending or running in the store.
func (rd reader) unfinished(ctx context.Context) ([]RunID, error) {
	rows, err := rd.db.QueryContext(ctx, `SELECT id FROM pipeline_runs WHERE state IN ($1, $2) ORDER BY create_time, id`, string(RunPending), string(RunRunning))
	if err != nil {
		return nil, fmt.Errorf("pipelines: reading unfinished runs: %w", err)
	}
	defer rows.Close()
	var out []RunID
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, RunID(id))
	}
	return out, rows.Err()
}

// cacheHit returns the latest succeeded step (or iteration) with the key.
func (rd reader) cacheHit(ctx context.Context, key string) (stepRow, bool, error) {
	s, err := scanStep(rd.db.QueryRowContext(ctx, `SELECT `+stepCols+` FROM pipeline_steps WHERE cache_key = $1 AND state = $2 ORDER BY end_time DESC LIMIT 1`,
		key, string(StepSucceeded)))
	if errors.Is(err, sql.ErrNoRows) {
		return s, false, nil
	}
	if err != nil {
		return s, false, fmt.Errorf("pipelines: cache lookup: %w", err)
	}
	return s, true, nil
}

// ListOptions selects runs, newest first. Zero values: any pipeline, any
// state, 100 runs a page (at most 1000).
type ListOptions struct {
	Pipeline  string
	State     RunState
	PageSize  int
	PageToken string
}

// RunPage is one page of runs (without their steps); NextPageToken, when
// set, reads the next page.
type RunPage struct {
	Runs          []Run  `json:"runs"`
	NextPageToken string `json:"nextPageToken,omitempty"`
}

const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

func (rd reader) list(ctx context.Context, o ListOptions) (*RunPage, error) {
	if o.PageSize < 0 {
		return nil, errorf(ErrInvalid, "pipelines: pageSize %d is negative", o.PageSize)
	}
	if o.PageSize == 0 {
		o.PageSize = defaultPageSize
	}
	o.PageSize = min(o.PageSize, maxPageSize)
	q := `SELECT ` + runCols + ` FROM pipeline_runs WHERE 1 = 1`
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if o.Pipeline != "" {
		q += ` AND pipeline = ` + arg(o.Pipeline)
	}
	if o.State != "" {
		switch o.State {
		case RunPending, RunRunning, RunSucceeded, RunFailed, RunCancelled:
		default:
			return nil, errorf(ErrInvalid, "pipelines: state %q is not a run state (pending, running, succeeded, failed, cancelled)", o.State)
		}
		q += ` AND state = ` + arg(string(o.State))
	}
	if o.PageToken != "" {
		t, id, err := decodeToken(o.PageToken)
		if err != nil {
			return nil, err
		}
		q += ` AND (create_time < ` + arg(t) + ` OR (create_time = ` + arg(t) + ` AND id < ` + arg(id) + `))`
	}
	q += ` ORDER BY create_time DESC, id DESC LIMIT ` + arg(o.PageSize+1)
	rows, err := rd.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("pipelines: listing runs: %w", err)
	}
	defer rows.Close()
	page := &RunPage{Runs: []Run{}}
	var last runRow
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("pipelines: listing runs: %w", err)
		}
		if len(page.Runs) == o.PageSize {
			page.NextPageToken = encodeToken(last.create, string(last.id))
			break
		}
		run, err := r.api()
		if err != nil {
			return nil, err
		}
		page.Runs = append(page.Runs, run)
		last = r
	}
	return page, rows.Err()
}

func encodeToken(t int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(t, 10) + ":" + id))
}

func decodeToken(tok string) (int64, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err == nil {
		ts, id, ok := strings.Cut(string(b), ":")
		if t, err := strconv.ParseInt(ts, 10, 64); ok && err == nil {
			return t, id, nil
		}
	}
	return 0, "", errorf(ErrInvalid, "pipelines: pageToken %q is not one a list returned", clip(tok, 64))
}

// api returns the run without its steps.
func (r runRow) api() (Run, error) {
	params := map[string]any{}
	if v, err := decodeJSON(r.params); err != nil {
		return Run{}, fmt.Errorf("pipelines: run %s: stored params: %w", r.id, err)
	} else if m, ok := v.(map[string]any); ok {
		params = m
	}
	return Run{ID: r.id, Pipeline: r.pipeline, State: r.state, Reason: r.reason, Params: params, DisableCache: r.disableCache,
		Cancelling: r.cancelling, Actor: r.actor, CreateTime: fromMicros(r.create), StartTime: fromMicros(r.start), EndTime: fromMicros(r.end)}, nil
}

// decodeOutputs reads a stored Outputs.
func decodeOutputs(s string) (Outputs, error) {
	var o Outputs
	if s == "" {
		return o, nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if err := dec.Decode(&o); err != nil {
		return o, err
	}
	for k, v := range o.Params {
		c, err := canonical(v)
		if err != nil {
			return o, err
		}
		o.Params[k] = c
	}
	return o, nil
}

func encodeOutputs(o Outputs) string {
	if len(o.Params) == 0 && len(o.Artifacts) == 0 {
		return ""
	}
	params := make(map[string]any, len(o.Params))
	for k, v := range o.Params {
		params[k] = typed(v)
	}
	return jsonString(struct {
		Params    map[string]any         `json:"params,omitempty"`
		Artifacts map[string]ArtifactRef `json:"artifacts,omitempty"`
	}{params, o.Artifacts})
}
