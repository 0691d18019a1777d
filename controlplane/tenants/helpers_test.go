package tenants

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infergate/infergate/registry"
)

// pgEnv names the variable holding the DSN of an empty PostgreSQL
// database (make test-postgres sets it). Every store test runs on SQLite,
// and on PostgreSQL as well when it is set.
const pgEnv = "INFERGATE_TEST_POSTGRES"

// backend makes fresh, empty stores of one kind: fresh returns the
// registry's Options.Store of a new one ("" for SQLite in the data
// directory).
type backend struct {
	name  string
	fresh func(t testing.TB) string
}

var backends = []backend{
	{name: "sqlite", fresh: func(testing.TB) string { return "" }},
	{name: "postgres", fresh: pgFresh},
}

// eachBackend runs test on every backend, each time in a fresh store.
func eachBackend(t *testing.T, test func(t *testing.T, e *env)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			if b.name == "postgres" && os.Getenv(pgEnv) == "" {
				t.Skip(pgEnv + " is not set: the PostgreSQL store tests are skipped (make test-postgres runs them)")
			}
			test(t, newEnv(t, b))
		})
	}
}

var (
	pgAdminOnce sync.Once
	pgAdmin     *sql.DB
	pgAdminErr  error
)

// pgFresh creates a schema of its own in the test database, dropped at
// the end of the test, and returns a DSN whose search_path is that
// schema.
func pgFresh(t testing.TB) string {
	t.Helper()
	base := os.Getenv(pgEnv)
	pgAdminOnce.Do(func() {
		pgAdmin, pgAdminErr = sql.Open("pgx", base)
		if pgAdminErr == nil {
			pgAdminErr = pgAdmin.Ping()
		}
	})
	if pgAdminErr != nil {
		t.Fatalf("PostgreSQL at %s: %v", pgEnv, pgAdminErr)
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	if _, err := pgAdmin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := pgAdmin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema
}

// env is one fresh store, its registry and a Store on it with a clock
// the test moves.
type env struct {
	t     testing.TB
	dir   string
	store string
	clock *fakeClock
	reg   *registry.Registry
	s     *Store
	ctx   context.Context
}

func newEnv(t testing.TB, b backend) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), store: b.fresh(t), clock: &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)},
		ctx: registry.WithActor(context.Background(), "tester")}
	e.reg, e.s = e.open()
	return e
}

// open opens another registry and Store on the env's store, as another
// process would.
func (e *env) open() (*registry.Registry, *Store) {
	e.t.Helper()
	reg, err := registry.Open(context.Background(), registry.Options{DataDir: e.dir, Store: e.store})
	if err != nil {
		e.t.Fatalf("registry.Open: %v", err)
	}
	e.t.Cleanup(func() { reg.Close() })
	s, err := Open(context.Background(), reg, Options{Now: e.clock.Now})
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	return reg, s
}

// events returns the log's events of this package's kinds.
func (e *env) events() []registry.Event {
	e.t.Helper()
	var out []registry.Event
	for _, kind := range []string{"tenant.*", "key.*", "grant.*"} {
		evs, err := e.reg.QueryEvents(e.ctx, registry.EventQuery{Kind: kind, Limit: 1000})
		if err != nil {
			e.t.Fatalf("QueryEvents: %v", err)
		}
		out = append(out, evs...)
	}
	return out
}

func (e *env) version() int64 {
	e.t.Helper()
	v, err := e.s.Version(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// wantErr fails unless err has code and its message holds every one of
// subs.
func wantErr(t testing.TB, err, code error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", code)
	}
	var te *Error
	if !errors.As(err, &te) || !errors.Is(err, code) {
		t.Fatalf("got %T %v, want a *tenants.Error of code %v", err, err, code)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func ptr[T any](v T) *T { return &v }
