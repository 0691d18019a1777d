package tenants

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/auth"
	"github.com/infergate/infergate/registry"
)

// watcher runs s.Watch until the test ends and hands over each snapshot.
type watcher struct {
	snaps chan auth.Snapshot
	done  chan error
}

func startWatch(t *testing.T, s *Store, interval time.Duration, fn func(auth.Snapshot)) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{snaps: make(chan auth.Snapshot, 100), done: make(chan error, 1)}
	go func() {
		w.done <- s.Watch(ctx, interval, func(snap auth.Snapshot) {
			if fn != nil {
				fn(snap)
			}
			w.snaps <- snap
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-w.done:
			if err != nil {
				t.Errorf("Watch: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Watch did not return within 10s of its context's end")
		}
	})
	return w
}

// next waits for the next snapshot.
func (w *watcher) next(t *testing.T) auth.Snapshot {
	t.Helper()
	select {
	case s := <-w.snaps:
		return s
	case err := <-w.done:
		t.Fatalf("Watch returned: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no snapshot within 10s")
	}
	return auth.Snapshot{}
}

func tenantNames(s auth.Snapshot) string {
	var names []string
	for _, t := range s.Tenants {
		names = append(names, t.Name)
	}
	return strings.Join(names, ",")
}

// TestWatchInProcess: a change made through the Store wakes Watch at
// once: with an interval of an hour, only the notification can deliver
// it.
func TestWatchInProcess(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		must[TenantInfo](t)(e.s.CreateTenant(e.ctx, auth.Tenant{Name: "first"}))
		w := startWatch(t, e.s, time.Hour, nil)
		if got := tenantNames(w.next(t)); got != "first" {
			t.Fatalf("first snapshot: tenants %q", got)
		}
		must[TenantInfo](t)(e.s.CreateTenant(e.ctx, auth.Tenant{Name: "second"}))
		if got := tenantNames(w.next(t)); got != "first,second" {
			t.Fatalf("after a change: tenants %q", got)
		}
		// A refused change notifies nothing: the next snapshot is the
		// next change's.
		_, err := e.s.CreateTenant(e.ctx, auth.Tenant{Name: "second"})
		wantErr(t, err, ErrConflict)
		must[DeleteResult](t)(e.s.DeleteTenant(e.ctx, "first"))
		if got := tenantNames(w.next(t)); got != "second" {
			t.Fatalf("after a delete: tenants %q", got)
		}
	})
}

// TestWatchOtherProcess: a change another process makes (here another
// registry and Store on the same store, which cannot notify this one) is
// seen by polling the version.
func TestWatchOtherProcess(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		_, other := e.open()
		w := startWatch(t, e.s, 10*time.Millisecond, nil)
		if got := tenantNames(w.next(t)); got != "" {
			t.Fatalf("first snapshot: tenants %q", got)
		}
		must[TenantInfo](t)(other.CreateTenant(e.ctx, auth.Tenant{Name: "remote"}))
		if got := tenantNames(w.next(t)); got != "remote" {
			t.Fatalf("after another process's change: tenants %q", got)
		}
	})
}

// TestRevocationWithoutRestart: keys made and revoked in the store are
// accepted and refused by an authenticator fed by Watch, with no restart.
func TestRevocationWithoutRestart(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		a, err := auth.New(auth.Options{})
		if err != nil {
			t.Fatal(err)
		}
		w := startWatch(t, e.s, time.Hour, func(s auth.Snapshot) {
			if err := a.Update(s); err != nil {
				t.Errorf("Authenticator.Update: %v", err)
			}
		})
		w.next(t)
		must[TenantInfo](t)(e.s.CreateTenant(e.ctx, auth.Tenant{Name: "search"}))
		w.next(t)
		must[auth.Grant](t)(e.s.AddGrant(e.ctx, auth.Grant{Tenant: "search", Actions: auth.ActionInfer, Models: []string{"iris"}}))
		w.next(t)
		token, k := must2(t)(e.s.CreateKey(e.ctx, "search", "ci", time.Time{}))
		w.next(t)
		p, err := a.AuthenticateString("Bearer " + token)
		if err != nil {
			t.Fatalf("a new key: %v", err)
		}
		if p.Tenant != "search" {
			t.Errorf("tenant %q", p.Tenant)
		}
		if err := p.Authorize("iris", nil, auth.ActionInfer); err != nil {
			t.Errorf("infer on iris: %v", err)
		}
		if err := p.Authorize("digits", nil, auth.ActionInfer); err == nil {
			t.Error("infer on digits allowed without a grant")
		}
		must[KeyInfo](t)(e.s.RevokeKey(e.ctx, k.ID))
		w.next(t)
		_, err = a.AuthenticateString("Bearer " + token)
		if err == nil || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("a revoked key: %v", err)
		}
	})
}

// TestWatchFirstReadFails: a store that cannot be read at start is an
// error, and fn is not called.
func TestWatchFirstReadFails(t *testing.T) {
	e := newEnv(t, backends[0])
	e.reg.Close()
	err := e.s.Watch(context.Background(), time.Hour, func(auth.Snapshot) { t.Error("fn called") })
	if err == nil {
		t.Fatal("Watch on a closed store: no error")
	}
	if err := e.s.Watch(context.Background(), -time.Second, nil); err == nil {
		t.Error("a negative interval: no error")
	}
}

// TestWatchKeepsGoingAfterAFailedRead: a read that fails after the first
// is logged once and tried again; the last snapshot stays meanwhile, and
// the next change is delivered once the store reads again.
func TestWatchKeepsGoingAfterAFailedRead(t *testing.T) {
	e := newEnv(t, backends[0])
	logs := make(chan string, 100)
	s, err := Open(e.ctx, e.reg, Options{Logger: slog.New(chanHandler(logs))})
	if err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, s, 5*time.Millisecond, nil)
	w.next(t)
	exec := func(q string) {
		t.Helper()
		if err := e.reg.Update(e.ctx, func(ctx context.Context, tx *registry.Tx) error {
			_, err := tx.ExecContext(ctx, q)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	exec(`ALTER TABLE auth_version RENAME TO auth_version_away`)
	waitLog(t, logs, "reading the store failed")
	exec(`ALTER TABLE auth_version_away RENAME TO auth_version`)
	waitLog(t, logs, "readable again")
	_, other := e.open()
	must[TenantInfo](t)(other.CreateTenant(e.ctx, auth.Tenant{Name: "after"}))
	if got := tenantNames(w.next(t)); got != "after" {
		t.Fatalf("after the failure: tenants %q", got)
	}
}

// chanHandler is a slog.Handler that sends each record's message to a
// channel (dropping it when the channel is full).
type chanHandler chan string

func (h chanHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h chanHandler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h <- r.Message:
	default:
	}
	return nil
}
func (h chanHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h chanHandler) WithGroup(string) slog.Handler      { return h }

func waitLog(t *testing.T, logs <-chan string, sub string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-logs:
			if strings.Contains(m, sub) {
				return
			}
		case <-deadline:
			t.Fatalf("no log line holding %q within 10s", sub)
		}
	}
}
