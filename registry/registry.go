package registry

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMaxArtifactBytes is the default size limit of one artifact: 4 GiB.
const DefaultMaxArtifactBytes = 4 << 30

// Options configures Open. Every zero value has a documented default.
type Options struct {
	// DataDir holds the artifacts (<DataDir>/artifacts) and, by default,
	// the SQLite store. "" means "data", relative to the working directory.
	// Several processes sharing one PostgreSQL store must share DataDir too.
	DataDir string
	// Store is where the metadata lives: "" is the SQLite file
	// <DataDir>/infergate.db; "sqlite:///path/file.db" (or
	// "sqlite://relative/file.db") another SQLite file; "postgres://..." or
	// "postgresql://..." a PostgreSQL database (a pgx connection string; the
	// schema is the connection's current schema, see search_path).
	Store string
	// Logger gets the registry's rare informational lines (migrations, a
	// store opened). nil discards them.
	Logger *slog.Logger
	// MaxArtifactBytes is the size limit of one artifact; an upload past it
	// is refused with CodeTooLarge and leaves nothing. 0 means
	// DefaultMaxArtifactBytes.
	MaxArtifactBytes int64
	// BusyTimeout bounds how long a write waits for a lock another process
	// holds (SQLite busy_timeout, PostgreSQL lock_timeout) before it fails
	// with CodeUnavailable. 0 means 5s.
	BusyTimeout time.Duration
	// EventBuffer is how many events a slow Subscribe reader may fall
	// behind before events are dropped for it (with a gap marker). 0 means
	// 1024.
	EventBuffer int
	// Registerer gets the registry's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now. Times are stored in UTC with
	// microsecond precision.
	Now func() time.Time
}

// Registry is the model registry: models, versions, artifacts, aliases,
// deployment uses and the event log, in one store. Its methods are safe for
// concurrent use, by any number of goroutines and (with PostgreSQL) of
// processes.
type Registry struct {
	st       *store
	blobs    *blobStore
	log      *slog.Logger
	maxBytes int64
	now      func() time.Time
	events   *broker
	metrics  *metrics
}

// Open opens the registry's store, creating it (and DataDir) when missing,
// and applies the embedded schema migrations in one transaction. It refuses
// a store whose schema is newer than this binary knows, a file that is not
// an SQLite database, and a store locked past BusyTimeout, with an error
// that says so. It starts no goroutine.
func Open(ctx context.Context, opts Options) (*Registry, error) {
	if opts.DataDir == "" {
		opts.DataDir = "data"
	}
	if opts.MaxArtifactBytes == 0 {
		opts.MaxArtifactBytes = DefaultMaxArtifactBytes
	}
	if opts.MaxArtifactBytes < 0 {
		return nil, errorf(CodeInvalidArgument, "registry: MaxArtifactBytes %d is negative", opts.MaxArtifactBytes)
	}
	if opts.BusyTimeout == 0 {
		opts.BusyTimeout = 5 * time.Second
	}
	if opts.BusyTimeout < 0 {
		return nil, errorf(CodeInvalidArgument, "registry: BusyTimeout %s is negative", opts.BusyTimeout)
	}
	if opts.EventBuffer == 0 {
		opts.EventBuffer = 1024
	}
	if opts.EventBuffer < 0 {
		return nil, errorf(CodeInvalidArgument, "registry: EventBuffer %d is negative", opts.EventBuffer)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("registry: metrics: %w", err)
	}
	if err := os.MkdirAll(opts.DataDir, 0o755); err != nil {
		return nil, errorf(CodeUnavailable, "registry: data directory %s: %w", opts.DataDir, err)
	}
	blobs, err := newBlobStore(filepath.Join(opts.DataDir, "artifacts"), opts.Now)
	if err != nil {
		return nil, errorf(CodeUnavailable, "registry: artifact store: %w", err)
	}
	st, err := openStore(ctx, opts)
	if err != nil {
		return nil, err
	}
	now := func() time.Time { return opts.Now().UTC().Truncate(time.Microsecond) }
	r := &Registry{
		st:       st,
		blobs:    blobs,
		log:      opts.Logger,
		maxBytes: opts.MaxArtifactBytes,
		now:      now,
		events:   newBroker(opts.EventBuffer, m, now),
		metrics:  m,
	}
	st.publish = r.events.publish
	from, to, err := st.migrateRetrying(ctx, r.now)
	if err != nil {
		st.db.Close()
		return nil, err
	}
	if from != to {
		r.log.Info("registry: store schema migrated", "store", st.desc, "from", from, "to", to)
	}
	r.log.Info("registry: store opened", "store", st.desc, "dialect", st.d.name(), "artifacts", blobs.root)
	return r, nil
}

// openStore opens the database Options.Store names.
func openStore(ctx context.Context, opts Options) (*store, error) {
	s := &store{busyTimeout: opts.BusyTimeout}
	switch {
	case opts.Store == "" || strings.HasPrefix(opts.Store, "sqlite://"):
		path := strings.TrimPrefix(opts.Store, "sqlite://")
		if opts.Store == "" {
			path = filepath.Join(opts.DataDir, "infergate.db")
		}
		if path == "" {
			return nil, errorf(CodeInvalidArgument, "registry: store %q names no file (want sqlite:///path/file.db)", opts.Store)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, errorf(CodeUnavailable, "registry: store directory: %w", err)
		}
		db, abs, err := openSQLite(path, opts.BusyTimeout)
		if err != nil {
			return nil, errorf(CodeInvalidArgument, "registry: store %s: %w", path, err)
		}
		s.db, s.d, s.desc = db, sqliteDialect{}, abs
		s.writeSem = make(chan struct{}, 1)
		s.cacheStmts, s.stmts = true, map[string]*sql.Stmt{}
	case strings.HasPrefix(opts.Store, "postgres://") || strings.HasPrefix(opts.Store, "postgresql://"):
		s.desc = redactDSN(opts.Store)
		db, d, err := openPostgres(ctx, opts.Store, opts.BusyTimeout)
		if err != nil {
			// pgx's parse errors redact the password themselves.
			s.d = postgresDialect{}
			if e := s.mapErr(err); CodeOf(e) != CodeInternal {
				return nil, e
			}
			return nil, errorf(CodeUnavailable, "registry: store %s: %w", s.desc, err)
		}
		s.db, s.d = db, d
	default:
		return nil, errorf(CodeInvalidArgument, "registry: store %q: want \"\" (SQLite in the data directory), sqlite:///path/file.db or postgres://...", redactDSN(opts.Store))
	}
	return s, nil
}

// redactDSN hides the password of a URL-form connection string.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		if i := strings.Index(dsn, "://"); i >= 0 {
			return dsn[:i+3] + "..."
		}
		return "..."
	}
	return u.Redacted()
}

// Close closes the store. Subscriptions end when their contexts do; Close
// does not wait for them.
func (r *Registry) Close() error {
	if r.st.d.name() == "sqlite" {
		// SQLite's advice for long-lived connections: refresh the planner's
		// statistics where they went stale, cheaply, before closing.
		ctx, cancel := context.WithTimeout(context.Background(), r.st.busyTimeout)
		_, _ = r.st.db.ExecContext(ctx, `PRAGMA optimize`)
		cancel()
	}
	return r.st.db.Close()
}

// DB returns the store's database handle and its dialect name ("sqlite" or
// "postgres"), for the control plane's own tables in the same store. The
// registry's tables are the registry's: write them only through its methods.
func (r *Registry) DB() (*sql.DB, string) { return r.st.db, r.st.d.name() }

type actorKey struct{}

// WithActor returns a context that names who acts (a CLI user, an API
// client, "rollout-gate"...). Every change records it: in the event log, in
// alias history, and as the default author and source actor of a version.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorFrom returns the actor WithActor put in ctx, or "".
func ActorFrom(ctx context.Context) string {
	a, _ := ctx.Value(actorKey{}).(string)
	return a
}

// actor returns ctx's actor, validated.
func actorOf(ctx context.Context) (string, error) {
	a := ActorFrom(ctx)
	if err := checkText("actor", a, maxShortText, false); err != nil {
		return "", err
	}
	return a, nil
}

// notFound is the error of a missing model.
func modelNotFound(name string) error {
	return errorf(CodeNotFound, "model %s not found", name)
}

func versionNotFound(model string, version int64) error {
	return errorf(CodeNotFound, "version %s/%d not found", model, version)
}
