package registry

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// migrationsFS holds the schema migrations, NNNN_name.sql, applied in order.
// A file NNNN_name.<dialect>.sql, when present, replaces NNNN_name.sql for
// that dialect; {{id}} in a migration is the dialect's auto-increment
// primary key.
//
//go:embed migrations/*.sql
var migrationsFS embed.FS

// dialect is what differs between the SQLite and the PostgreSQL store; the
// SQL itself is shared (both take $1-style parameters, row values,
// RETURNING and LIKE ... ESCAPE).
type dialect interface {
	// name is "sqlite" or "postgres", as in migration file names.
	name() string
	// idColumn is the auto-increment primary key column type.
	idColumn() string
	// forUpdate is appended to a SELECT whose rows the transaction will
	// change: PostgreSQL locks them; SQLite's write transactions hold the
	// database's write lock from BEGIN IMMEDIATE already.
	forUpdate() string
	// lockEvents is called in a write transaction before it appends an
	// event, so that event ids are committed in increasing order (a reader
	// polling "since id" never misses a late commit of a smaller id).
	lockEvents(ctx context.Context, tx *sql.Tx) error
	// lockMigrations makes concurrent Opens migrate one after the other.
	lockMigrations(ctx context.Context, tx *sql.Tx) error
	// readTx is the options of read-only transactions.
	readTx() *sql.TxOptions
	// classify turns a driver error into an *Error, or returns nil if it
	// does not know it.
	classify(err error, s *store) *Error
	// isUnique reports a unique-constraint violation.
	isUnique(err error) bool
	// retryable reports an error after which the whole transaction may be
	// run again (a PostgreSQL deadlock or serialization failure).
	retryable(err error) bool
	// busy reports that another connection held a lock.
	busy(err error) bool
}

// store is the registry's SQL storage: one implementation over
// database/sql for both databases, with a dialect for what differs.
type store struct {
	db   *sql.DB
	d    dialect
	desc string // the store, for messages (a PostgreSQL DSN without its password)

	busyTimeout time.Duration

	// writeSem admits one write transaction of this process at a time
	// (SQLite only): the database has one writer anyway, and queueing in Go
	// is fairer and cheaper than SQLite's busy-wait.
	writeSem chan struct{}

	// commitMu orders commit-then-publish, so that subscribers see events
	// in commit order.
	commitMu sync.Mutex
	publish  func([]Event)

	// stmts caches prepared statements by query (SQLite only: pgx caches
	// them per connection itself). Parsing is a quarter of the CPU of a
	// read otherwise. Bounded: queries past maxStmts run unprepared.
	cacheStmts bool
	stmtMu     sync.Mutex
	stmts      map[string]*sql.Stmt
}

// maxStmts bounds the statement cache; the registry's distinct queries
// (list filters and IN-list sizes included) are far fewer.
const maxStmts = 512

// stmt returns the cached prepared statement of query, preparing it if the
// pool has or may open a connection to prepare it on (a transaction must
// not wait long for a second connection: the pool could be exhausted by
// transactions doing the same; the timeout bounds that race). It returns
// nil to run query unprepared.
func (s *store) stmt(ctx context.Context, query string) *sql.Stmt {
	if !s.cacheStmts {
		return nil
	}
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if st, ok := s.stmts[query]; ok {
		return st
	}
	if len(s.stmts) >= maxStmts {
		return nil
	}
	if st := s.db.Stats(); st.Idle == 0 && st.OpenConnections >= st.MaxOpenConnections {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil // run unprepared; a real error shows there
	}
	s.stmts[query] = st
	return st
}

// qtx is a transaction that runs its queries through the statement cache.
type qtx struct {
	*sql.Tx
	s *store
}

func (q qtx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := q.s.stmt(ctx, query); st != nil {
		return q.Tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return q.Tx.ExecContext(ctx, query, args...)
}

func (q qtx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := q.s.stmt(ctx, query); st != nil {
		return q.Tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return q.Tx.QueryContext(ctx, query, args...)
}

func (q qtx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := q.s.stmt(ctx, query); st != nil {
		return q.Tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return q.Tx.QueryRowContext(ctx, query, args...)
}

// querier is what a read or a write transaction offers.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// wtx is a write transaction; events appended to it are published once it
// commits.
type wtx struct {
	qtx
	s      *store
	events []Event
	locked bool // events lock taken
	// after runs once the transaction has committed.
	after []func()
}

// maxWriteAttempts bounds the retries of a transaction that failed on a
// PostgreSQL deadlock or serialization failure.
const maxWriteAttempts = 3

// write runs fn in a write transaction and commits it. fn's error, or a
// store error mapped to an *Error, rolls it back: nothing is half-written.
func (s *store) write(ctx context.Context, fn func(tx *wtx) error) error {
	for attempt := 1; ; attempt++ {
		err := s.writeOnce(ctx, fn)
		if err == nil || attempt == maxWriteAttempts || !s.d.retryable(err) {
			return s.mapErr(err)
		}
	}
}

func (s *store) writeOnce(ctx context.Context, fn func(tx *wtx) error) error {
	if s.writeSem != nil {
		select {
		case s.writeSem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		defer func() { <-s.writeSem }()
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	w := &wtx{qtx: qtx{Tx: tx, s: s}, s: s}
	if err := fn(w); err != nil {
		_ = tx.Rollback()
		return err
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if err := tx.Commit(); err != nil {
		return err
	}
	if len(w.events) > 0 && s.publish != nil {
		s.publish(w.events)
	}
	for _, f := range w.after {
		f()
	}
	return nil
}

// read runs fn in a read-only transaction, so that what it reads in
// several queries is one snapshot.
func (s *store) read(ctx context.Context, fn func(q querier) error) error {
	tx, err := s.db.BeginTx(ctx, s.d.readTx())
	if err != nil {
		return s.mapErr(err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := fn(qtx{Tx: tx, s: s}); err != nil {
		return s.mapErr(err)
	}
	return s.mapErr(tx.Commit())
}

// mapErr leaves nil and *Error as they are and maps the rest: context
// errors, the dialect's driver errors, and anything else as Internal.
func (s *store) mapErr(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return errorf(CodeUnavailable, "store %s: %w", s.desc, err)
	}
	if e := s.d.classify(err, s); e != nil {
		return e
	}
	return errorf(CodeInternal, "store %s: %w", s.desc, err)
}

// migration is one schema step.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the dialect's migrations in order.
func migrations(d dialect) ([]migration, error) {
	ents, err := fs.ReadDir(migrationsFS, "migrations")
	if err != nil {
		return nil, err
	}
	byVersion := map[int]migration{}
	for _, e := range ents {
		base := strings.TrimSuffix(e.Name(), ".sql")
		specific := false
		if i := strings.LastIndexByte(base, '.'); i >= 0 {
			if base[i+1:] != d.name() {
				continue // another dialect's
			}
			base, specific = base[:i], true
		}
		num, name, ok := strings.Cut(base, "_")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || n < 1 {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", e.Name())
		}
		if _, dup := byVersion[n]; dup && !specific {
			continue
		}
		body, err := migrationsFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		byVersion[n] = migration{version: n, name: name, sql: strings.ReplaceAll(string(body), "{{id}}", d.idColumn())}
	}
	out := make([]migration, 0, len(byVersion))
	for _, m := range byVersion {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %d missing (found %d_%s)", i+1, m.version, m.name)
		}
	}
	return out, nil
}

// statements splits a migration into statements: each ends with ';' at the
// end of a line; lines starting with "--" are comments.
func statements(body string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(body, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(t, ";") {
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// migrateRetrying migrates, retrying for up to the busy timeout while the
// store is busy: SQLite reports SQLITE_BUSY at once, without its busy
// handler, when several connections switch a new file to WAL or recover its
// WAL at the same time (several processes starting together).
func (s *store) migrateRetrying(ctx context.Context, now func() time.Time) (int, int, error) {
	deadline := time.Now().Add(s.busyTimeout)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		from, to, err := s.migrate(ctx, now)
		if err == nil || CodeOf(err) != CodeUnavailable || !s.d.busy(err) || time.Now().Add(wait).After(deadline) {
			return from, to, err
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return from, to, err
		}
	}
}

// migrate brings the schema to the newest version this binary knows, in one
// transaction, and refuses a schema newer than that.
func (s *store) migrate(ctx context.Context, now func() time.Time) (from, to int, err error) {
	ms, err := migrations(s.d)
	if err != nil {
		return 0, 0, fmt.Errorf("registry: embedded migrations: %w", err)
	}
	known := len(ms)
	err = s.write(ctx, func(tx *wtx) error {
		if err := s.d.lockMigrations(ctx, tx.Tx); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
  version BIGINT PRIMARY KEY,
  name TEXT NOT NULL,
  applied_at BIGINT NOT NULL
)`); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&from); err != nil {
			return err
		}
		if from > known {
			return errorf(CodeFailedPrecondition, "store schema version %d is newer than this infergate knows (%d): upgrade infergate", from, known)
		}
		for _, m := range ms[from:] {
			for _, st := range statements(m.sql) {
				if _, err := tx.ExecContext(ctx, st); err != nil {
					return fmt.Errorf("migration %d_%s: %w", m.version, m.name, err)
				}
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version, name, applied_at) VALUES ($1, $2, $3)`,
				m.version, m.name, now().UTC().UnixMicro()); err != nil {
				return err
			}
		}
		return nil
	})
	return from, known, err
}

// micros and fromMicros convert times to and from the stored form.
func micros(t time.Time) int64 { return t.UTC().UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }
