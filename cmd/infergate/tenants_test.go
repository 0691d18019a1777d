package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/auth"
	"github.com/infergate/infergate/controlplane/tenants"
	"github.com/infergate/infergate/registry"
)

// tenantsServer serves the tenants API of a fresh store on loopback,
// mounted as the admin port mounts it, behind a stand-in for
// authentication: every request must carry "Bearer admin-key".
func tenantsServer(t *testing.T) *httptest.Server {
	t.Helper()
	reg, err := registry.Open(context.Background(), registry.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	s, err := tenants.Open(context.Background(), reg, tenants.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := tenants.NewHandler(s, tenants.HandlerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, p := range h.Patterns() {
		mux.Handle(p, h)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer admin-key" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error": "no valid API key"}`))
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// tenantsCmd runs `infergate tenants|keys ARGS EXTRA...` in process.
type tenantsCmd struct {
	t     *testing.T
	extra []string // -admin ... or -data-dir ...
}

func (c tenantsCmd) run(args ...string) (stdout, stderr string, err error) {
	c.t.Helper()
	var out, errOut bytes.Buffer
	err = run(append(args, c.extra...), &out, &errOut)
	return out.String(), errOut.String(), err
}

func (c tenantsCmd) ok(args ...string) string {
	c.t.Helper()
	out, errOut, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("infergate %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

func (c tenantsCmd) fails(args ...string) string {
	c.t.Helper()
	_, _, err := c.run(args...)
	if err == nil {
		c.t.Fatalf("infergate %s: no error", strings.Join(args, " "))
	}
	return err.Error()
}

// tenantsFlow is the same session through the admin API and on the
// store.
func tenantsFlow(t *testing.T, c tenantsCmd) {
	contains(t, c.ok("tenants", "create", "search", "-weight", "2", "-rate", "100", "-burst", "200", "-max-inflight", "16"),
		"tenant search created: weight 2, 100 requests/s (burst 200), at most 16 in flight")
	// Flags before the command word and the argument.
	contains(t, c.ok("tenants", "-weight", "3", "create", "ops"), "tenant ops created: weight 3, no rate limit")
	contains(t, c.fails("tenants", "create", "ops"), `tenants create ops: tenant "ops" already exists`)
	contains(t, c.fails("tenants", "create", "Ops!"), "DNS label")

	contains(t, c.ok("tenants", "grant", "search", "-actions", "infer,metadata", "-models", "iris,digits"),
		"grant 1 added: tenant search may infer,metadata on models digits,iris")
	contains(t, c.ok("tenants", "grant", "search", "-actions", "infer", "-models", "*"), "grant 2 added: tenant search may infer on every model")
	contains(t, c.ok("tenants", "grant", "search", "-actions", "metadata", "-selector", "team=search,tier=gold"),
		"grant 3 added: tenant search may metadata on models labelled team=search,tier=gold")
	contains(t, c.ok("tenants", "grant", "ops", "-actions", "admin,command"), "grant 4 added: tenant ops may admin,command")
	contains(t, c.fails("tenants", "grant", "search", "-actions", "infer"), "name the models that infer applies to")
	contains(t, c.fails("tenants", "grant", "search", "-actions", "write", "-models", "*"), `unknown action "write"`)
	contains(t, c.fails("tenants", "grant", "search", "-models", "*"), "-actions")

	stdout, stderr, err := c.run("keys", "create", "-tenant", "search", "-name", "ci", "-expires", "30d")
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(stdout)
	id, secret, err := auth.ParseKey(token)
	if err != nil {
		t.Fatalf("keys create printed %q on stdout, not a token alone: %v", stdout, err)
	}
	contains(t, stderr, "key "+id+" created for tenant search (expires ", "shown this once and cannot be shown again")
	var created tenants.KeyCreated
	if err := json.Unmarshal([]byte(c.ok("keys", "create", "-tenant", "ops", "-o", "json")), &created); err != nil || !strings.HasPrefix(created.Token, auth.KeyPrefix) {
		t.Fatalf("keys create -o json: %+v, %v", created, err)
	}
	contains(t, c.fails("keys", "create"), "-tenant")
	contains(t, c.fails("keys", "create", "-tenant", "nobody"), `tenant "nobody" does not exist`)
	contains(t, c.fails("keys", "create", "-tenant", "search", "-expires", "soon"), `-expires "soon"`)

	list := c.ok("keys", "list")
	contains(t, list, "KEY", "STATE", id, "ci", "active", created.Key.ID)
	if strings.Contains(list, secret) {
		t.Errorf("keys list shows a secret:\n%s", list)
	}
	if strings.Contains(c.ok("keys", "list", "-tenant", "ops"), id) {
		t.Error("keys list -tenant ops shows search's key")
	}
	contains(t, c.ok("tenants", "list"), "NAME", "search", "2", "100", "200", "16", "ops")
	var ts []tenants.TenantInfo
	if err := json.Unmarshal([]byte(c.ok("tenants", "list", "-json")), &ts); err != nil || len(ts) != 2 || ts[1].ActiveKeys != 1 || ts[1].Grants != 3 {
		t.Fatalf("tenants list -json: %+v, %v", ts, err)
	}
	get := c.ok("tenants", "get", "search")
	contains(t, get, "weight 2", id, "GRANT", "digits,iris", "every model", "labelled team=search,tier=gold")

	contains(t, c.ok("tenants", "update", "search", "-rate", "50"), "tenant search: weight 2, 50 requests/s (burst 50), at most 16 in flight")
	contains(t, c.fails("tenants", "update", "search"), "say what to change")
	contains(t, c.ok("tenants", "revoke-grant", "3"), "grant 3 removed: tenant search may no longer metadata on models labelled")
	contains(t, c.fails("tenants", "revoke-grant", "3"), "grant 3 does not exist")
	contains(t, c.fails("tenants", "revoke-grant", "three"), "want a number")

	contains(t, c.ok("keys", "revoke", id), "key "+id+" of tenant search revoked at ")
	contains(t, c.ok("keys", "list", "-tenant", "search"), "revoked")
	// A whole token given for an id: refused, and never repeated.
	msg := c.fails("keys", "revoke", token)
	contains(t, msg, "give only its id")
	if strings.Contains(msg, secret) {
		t.Errorf("the error repeats the secret: %s", msg)
	}
	contains(t, c.ok("tenants", "delete", "search"), "tenant search deleted with 1 key and 2 grants")
	contains(t, c.fails("tenants", "get", "search"), `tenant "search" does not exist`)
}

func TestTenantsCLIThroughTheAPI(t *testing.T) {
	srv := tenantsServer(t)
	t.Run("with -key", func(t *testing.T) {
		t.Setenv(envKey, "")
		tenantsFlow(t, tenantsCmd{t: t, extra: []string{"-admin", srv.URL, "-key", "admin-key"}})
	})
	t.Run("with INFERGATE_KEY", func(t *testing.T) {
		t.Setenv(envKey, "admin-key")
		c := tenantsCmd{t: t, extra: []string{"-admin", strings.TrimPrefix(srv.URL, "http://")}}
		contains(t, c.ok("tenants", "create", "env"), "tenant env created")
		// -key wins over the environment.
		contains(t, c.fails("tenants", "list", "-key", "wrong"), "no valid API key", "give an admin key with -key or INFERGATE_KEY")
	})
	t.Run("without a key", func(t *testing.T) {
		t.Setenv(envKey, "")
		contains(t, tenantsCmd{t: t, extra: []string{"-admin", srv.URL}}.fails("tenants", "list"), "401")
	})
}

func TestTenantsCLIOnTheStore(t *testing.T) {
	dir := t.TempDir()
	tenantsFlow(t, tenantsCmd{t: t, extra: []string{"-data-dir", dir}})
	// The same store, named as -store does.
	c := tenantsCmd{t: t, extra: []string{"-store", "sqlite://" + filepath.Join(dir, "infergate.db")}}
	contains(t, c.ok("tenants", "list"), "ops")
	// One way or the other, not both.
	contains(t, c.fails("tenants", "list", "-admin", "127.0.0.1:1"), "give one or the other")
}

func TestTenantsCLIArgs(t *testing.T) {
	c := tenantsCmd{t: t}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"tenants"}, "say what to do, as in: infergate tenants list"},
		{[]string{"keys", "rotate"}, `keys: unknown command "rotate"`},
		{[]string{"tenants", "create"}, "tenants create: missing NAME"},
		{[]string{"tenants", "list", "extra"}, `tenants list: unexpected argument "extra"`},
		{[]string{"keys", "list", "-o", "yaml"}, `-o "yaml": want table or json`},
		{[]string{"tenants", "list", "-nope"}, "flag provided but not defined: -nope"},
		{[]string{"tenants", "list", "-admin", "ftp://x"}, `admin address "ftp://x"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			contains(t, c.fails(tc.args...), tc.want)
		})
	}
	_, stderr, err := c.run("keys", "-h")
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr, "infergate keys create -tenant T") {
		t.Errorf("keys -h: %v\n%s", err, stderr)
	}
}

func TestParseExpiry(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		err  bool
	}{
		{"", time.Time{}, false},
		{"720h", now.Add(720 * time.Hour), false},
		{"30d", now.Add(30 * 24 * time.Hour), false},
		{"2027-01-01T00:00:00Z", time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{"-1h", time.Time{}, true},
		{"0d", time.Time{}, true},
		{"tomorrow", time.Time{}, true},
	} {
		got, err := parseExpiry(tc.in, now)
		if (err != nil) != tc.err || !got.Equal(tc.want) {
			t.Errorf("parseExpiry(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// TestKeysBootstrapBesideAServer: the real binary makes the first admin
// key on the SQLite file a server has open, and the server's watcher
// (polling the store's version) puts it in force for its authenticator.
func TestKeysBootstrapBesideAServer(t *testing.T) {
	dir := t.TempDir()
	reg, err := registry.Open(context.Background(), registry.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	s, err := tenants.Open(context.Background(), reg, tenants.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	updated := make(chan struct{}, 10)
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- s.Watch(ctx, 20*time.Millisecond, func(snap auth.Snapshot) {
			a.Update(snap)
			updated <- struct{}{}
		})
	}()
	defer func() {
		cancel()
		if err := <-watchDone; err != nil {
			t.Error(err)
		}
	}()
	wait := func() {
		t.Helper()
		select {
		case <-updated:
		case <-time.After(10 * time.Second):
			t.Fatal("the watcher saw no change within 10s")
		}
	}
	wait() // the first snapshot
	bin := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(binPath, append(args, "-data-dir", dir)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("infergate %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String()
	}
	bin("tenants", "create", "ops")
	bin("tenants", "grant", "ops", "-actions", "admin")
	token := strings.TrimSpace(bin("keys", "create", "-tenant", "ops", "-name", "bootstrap"))
	// Three changes; wait until the one holding the key is in force.
	for {
		wait()
		if p, err := a.AuthenticateString("Bearer " + token); err == nil {
			if err := p.Authorize("", nil, auth.ActionAdmin); err != nil {
				t.Fatalf("the bootstrap key is not admin: %v", err)
			}
			break
		}
	}
}
