package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// pgEnv names the variable holding the DSN of an empty PostgreSQL database
// (make test-postgres sets it). The store suite runs against SQLite always
// and against PostgreSQL when it is set.
const pgEnv = "INFERGATE_TEST_POSTGRES"

// backend makes fresh, empty stores of one kind.
type backend struct {
	name string
	// fresh returns the Options.Store of a new empty store for t ("" for
	// SQLite in the data directory).
	fresh func(t testing.TB) string
}

var backends = []backend{
	{name: "sqlite", fresh: func(testing.TB) string { return "" }},
	{name: "postgres", fresh: pgFresh},
}

// storeCase is one test of the store suite, run on every backend.
type storeCase struct {
	name string
	run  func(t *testing.T, e *env)
}

// runSuite runs cases against every backend, each in a fresh store.
func runSuite(t *testing.T, cases []storeCase) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			if b.name == "postgres" && os.Getenv(pgEnv) == "" {
				t.Skip(pgEnv + " is not set: the PostgreSQL store tests are skipped (make test-postgres runs them)")
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.run(t, newEnv(t, b))
				})
			}
		})
	}
}

var (
	pgAdminOnce sync.Once
	pgAdmin     *sql.DB
	pgAdminErr  error
)

// pgFresh creates a schema of its own in the test database, dropped at the
// end of the test, and returns a DSN whose search_path is that schema.
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
		t.Fatalf("PostgreSQL at %s: %v", redactDSN(base), pgAdminErr)
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

// env is one fresh store and data directory, and the registry open on it.
type env struct {
	t     *testing.T
	b     backend
	dir   string
	store string
	r     *Registry
	ctx   context.Context
}

func newEnv(t *testing.T, b backend) *env {
	t.Helper()
	e := &env{t: t, b: b, dir: t.TempDir(), store: b.fresh(t), ctx: WithActor(context.Background(), "tester")}
	e.r = e.open(nil)
	return e
}

// open opens another Registry on the env's store and data directory.
func (e *env) open(mod func(*Options)) *Registry {
	e.t.Helper()
	r, err := e.tryOpen(mod)
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	return r
}

func (e *env) tryOpen(mod func(*Options)) (*Registry, error) {
	o := Options{DataDir: e.dir, Store: e.store}
	if mod != nil {
		mod(&o)
	}
	r, err := Open(context.Background(), o)
	if err == nil {
		e.t.Cleanup(func() { r.Close() })
	}
	return r, err
}

// model creates a model.
func (e *env) model(name string, labels map[string]string) *RegisteredModel {
	e.t.Helper()
	m, err := e.r.CreateModel(e.ctx, ModelCreate{Name: name, Labels: labels})
	if err != nil {
		e.t.Fatalf("CreateModel %s: %v", name, err)
	}
	return m
}

// version registers a READY version of model with files (name -> content).
func (e *env) version(model string, files map[string]string) *ModelVersion {
	e.t.Helper()
	v, err := e.r.CreateVersion(e.ctx, model, VersionCreate{})
	if err != nil {
		e.t.Fatalf("CreateVersion %s: %v", model, err)
	}
	for name, content := range files {
		if _, err := e.r.AddArtifact(e.ctx, model, v.Version, ArtifactUpload{Name: name}, strings.NewReader(content)); err != nil {
			e.t.Fatalf("AddArtifact %s/%d %s: %v", model, v.Version, name, err)
		}
	}
	v, err = e.r.MarkReady(e.ctx, model, v.Version)
	if err != nil {
		e.t.Fatalf("MarkReady %s: %v", model, err)
	}
	return v
}

// blobFiles lists the files under the artifact store's sha256 and tmp
// directories.
func (e *env) blobFiles() (blobs, tmp []string) {
	e.t.Helper()
	for _, d := range []struct {
		dir string
		out *[]string
	}{{filepath.Join(e.dir, "artifacts", "sha256"), &blobs}, {filepath.Join(e.dir, "artifacts", "tmp"), &tmp}} {
		ents, err := os.ReadDir(d.dir)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, x := range ents {
			*d.out = append(*d.out, x.Name())
		}
	}
	return blobs, tmp
}

// events returns every event in the log.
func (e *env) events() []Event {
	e.t.Helper()
	evs, err := e.r.QueryEvents(e.ctx, EventQuery{Limit: maxPageSize})
	if err != nil {
		e.t.Fatalf("QueryEvents: %v", err)
	}
	return evs
}

// wantCode fails unless err is an *Error of code whose message holds every
// one of subs.
func wantCode(t testing.TB, err error, code Code, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %T %v, want a *registry.Error of code %s", err, err, code)
	}
	if e.Code != code {
		t.Fatalf("got code %s (%v), want %s", e.Code, err, code)
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

func digestOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(h[:])
}

func ptr[T any](v T) *T { return &v }

// waitEvent reads one event from ch within a generous deadline.
func waitEvent(t testing.TB, ch <-chan Event) Event {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("subscription closed")
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return Event{}
}
