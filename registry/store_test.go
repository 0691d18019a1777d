package registry

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestStore(t *testing.T) {
	runSuite(t, []storeCase{
		{"reopen keeps everything", func(t *testing.T, e *env) {
			e.model("iris", map[string]string{"team": "a"})
			v := e.version("iris", map[string]string{"model.onnx": "weights"})
			must[*Alias](t)(e.r.SetAlias(e.ctx, "iris", "prod", 1, "go"))
			if err := e.r.SetUses(e.ctx, "inferenceservice/iris", []VersionRef{{"iris", 1}}); err != nil {
				t.Fatal(err)
			}
			m := must[*RegisteredModel](t)(e.r.GetModel(e.ctx, "iris"))
			evs := e.events()
			if err := e.r.Close(); err != nil {
				t.Fatal(err)
			}
			r := e.open(nil)
			if diff := cmp.Diff(m, must[*RegisteredModel](t)(r.GetModel(e.ctx, "iris"))); diff != "" {
				t.Errorf("model after reopen (-before +after):\n%s", diff)
			}
			got := must[*ModelVersion](t)(r.Resolve(e.ctx, "registry://iris@prod"))
			v.Aliases = []string{"prod"}
			if diff := cmp.Diff(v, got, cmp.AllowUnexported(Value{})); diff != "" {
				t.Errorf("version after reopen (-before +after):\n%s", diff)
			}
			after, err := r.QueryEvents(e.ctx, EventQuery{Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(evs, after); diff != "" {
				t.Errorf("events after reopen (-before +after):\n%s", diff)
			}
			_, err = r.ArchiveVersion(e.ctx, "iris", 1)
			wantCode(t, err, CodeConflict, "alias prod", "inferenceservice/iris")
			// Numbering goes on.
			if n := must[*ModelVersion](t)(r.CreateVersion(e.ctx, "iris", VersionCreate{})).Version; n != 2 {
				t.Errorf("next version after reopen: %d", n)
			}
			if _, err := r.Materialize(e.ctx, v.Ref(), t.TempDir()); err != nil {
				t.Error(err)
			}
		}},
		{"a newer schema is refused", func(t *testing.T, e *env) {
			if _, err := e.r.st.db.Exec(`INSERT INTO schema_version (version, name, applied_at) VALUES (99, 'future', 0)`); err != nil {
				t.Fatal(err)
			}
			known := len(must[[]migration](t)(migrations(e.r.st.d)))
			_, err := e.tryOpen(nil)
			wantCode(t, err, CodeFailedPrecondition, fmt.Sprintf("store schema version 99 is newer than this infergate knows (%d): upgrade infergate", known))
		}},
		{"concurrent opens migrate once", func(t *testing.T, e *env) {
			// A store nobody opened yet, opened by several at once.
			store := e.b.fresh(t)
			dir := t.TempDir()
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := Open(context.Background(), Options{DataDir: dir, Store: store})
					if err != nil {
						errs <- err
						return
					}
					r.Close()
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			r, err := Open(context.Background(), Options{DataDir: dir, Store: store})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			var rows, max int
			if err := r.st.db.QueryRow(`SELECT COUNT(*), MAX(version) FROM schema_version`).Scan(&rows, &max); err != nil {
				t.Fatal(err)
			}
			if known := len(must[[]migration](t)(migrations(r.st.d))); rows != known || max != known {
				t.Errorf("schema_version has %d rows up to %d, want %d", rows, max, known)
			}
		}},
	})
}

func TestSQLiteFile(t *testing.T) {
	ctx := context.Background()
	t.Run("a locked store is Unavailable", func(t *testing.T) {
		dir := t.TempDir()
		r, err := Open(ctx, Options{DataDir: dir, BusyTimeout: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		// Another process holds the write lock.
		other, err := sql.Open("sqlite", filepath.Join(dir, "infergate.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		conn, err := other.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
			t.Fatal(err)
		}
		_, err = r.CreateModel(ctx, ModelCreate{Name: "iris"})
		wantCode(t, err, CodeUnavailable, "infergate.db is locked", "50ms")
		// Reads go on under WAL.
		if _, err := r.ListModels(ctx, ListOptions{}); err != nil {
			t.Errorf("read while locked: %v", err)
		}
		// A second Open cannot migrate either, and says why.
		_, err = Open(ctx, Options{DataDir: dir, Store: "sqlite://" + filepath.Join(dir, "infergate.db"), BusyTimeout: 50 * time.Millisecond})
		wantCode(t, err, CodeUnavailable, "locked")
		if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
			t.Fatal(err)
		}
		if _, err := r.CreateModel(ctx, ModelCreate{Name: "iris"}); err != nil {
			t.Errorf("after the lock is released: %v", err)
		}
	})
	t.Run("a corrupt store is DataLoss", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "infergate.db"), []byte(strings.Repeat("not a database ", 512)), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Open(ctx, Options{DataDir: dir})
		wantCode(t, err, CodeDataLoss, "infergate.db is not an SQLite database or is corrupt")
	})
	t.Run("store option forms", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(t.TempDir(), "sub", "my store?.db")
		r, err := Open(ctx, Options{DataDir: dir, Store: "sqlite://" + path})
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
		if _, err := os.Stat(path); err != nil {
			t.Errorf("store file: %v", err)
		}
		_, err = Open(ctx, Options{DataDir: dir, Store: "mysql://u:secret@h/db"})
		wantCode(t, err, CodeInvalidArgument, "mysql://u:xxxxx@h/db", "want")
		_, err = Open(ctx, Options{DataDir: dir, Store: "sqlite://"})
		wantCode(t, err, CodeInvalidArgument, "names no file")
		_, err = Open(ctx, Options{DataDir: dir, MaxArtifactBytes: -1})
		wantCode(t, err, CodeInvalidArgument, "MaxArtifactBytes")
		if strings.Contains(fmt.Sprint(err), "secret") {
			t.Error("a password in an error")
		}
	})
	t.Run("an unreachable postgres is Unavailable without its password", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		// Port 1 on loopback: nothing listens there.
		_, err := Open(ctx, Options{DataDir: t.TempDir(), Store: "postgres://u:secret@127.0.0.1:1/db?connect_timeout=2"})
		wantCode(t, err, CodeUnavailable, "127.0.0.1")
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("password in %v", err)
		}
	})
	t.Run("stale temp files are removed at open", func(t *testing.T) {
		dir := t.TempDir()
		tmp := filepath.Join(dir, "artifacts", "tmp")
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			t.Fatal(err)
		}
		old, fresh := filepath.Join(tmp, "upload-old"), filepath.Join(tmp, "upload-new")
		os.WriteFile(old, []byte("x"), 0o644)
		os.WriteFile(fresh, []byte("x"), 0o644)
		os.Chtimes(old, time.Now().Add(-2*time.Hour), time.Now().Add(-2*time.Hour))
		r, err := Open(ctx, Options{DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
		if _, err := os.Stat(old); !os.IsNotExist(err) {
			t.Errorf("stale temp file kept: %v", err)
		}
		if _, err := os.Stat(fresh); err != nil {
			t.Errorf("recent temp file (maybe another process's upload) removed: %v", err)
		}
	})
}
