package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/infergate/infergate/registry"
	"github.com/infergate/infergate/registry/registryapi"
)

// registryServer serves the registry API of a fresh registry on loopback,
// as the admin port mounts it; wrap, when set, wraps the handler.
func registryServer(t *testing.T, wrap func(http.Handler) http.Handler) (*httptest.Server, *registry.Registry) {
	t.Helper()
	reg, err := registry.Open(context.Background(), registry.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	h, err := registryapi.New(reg, registryapi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, p := range h.Patterns() {
		mux.Handle(p, h)
	}
	var handler http.Handler = mux
	if wrap != nil {
		handler = wrap(mux)
	}
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return srv, reg
}

// cli runs `infergate registry ARGS -admin ADMIN` and returns its output.
type cli struct {
	t     *testing.T
	admin string
}

func (c cli) run(args ...string) (string, error) {
	c.t.Helper()
	var out, errOut bytes.Buffer
	err := runRegistry(context.Background(), append(args, "-admin", c.admin), &out, &errOut)
	return out.String(), err
}

func (c cli) ok(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("infergate registry %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func contains(t *testing.T, out string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(out, s) {
			t.Errorf("output does not hold %q:\n%s", s, out)
		}
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func sha256Of(s string) string {
	h := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(h[:])
}

func TestRegistryCLI(t *testing.T) {
	srv, reg := registryServer(t, nil)
	ctx := context.Background()
	// -admin as a URL here, as HOST:PORT below.
	c := cli{t: t, admin: srv.URL}

	contains(t, c.ok("models", "create", "iris", "-description", "Fisher's iris", "-label", "team=ml"), "model iris registered")
	// Flags before the words, between them and after the argument.
	c.ok("-label", "team=cv", "models", "-o", "table", "create", "digits", "-owner", "bob")

	out := c.ok("models", "list")
	contains(t, out, "NAME", "STATE", "OWNER", "iris", "digits", "team=ml", "bob", "Fisher's iris")
	var ms []registry.RegisteredModel
	if err := json.Unmarshal([]byte(c.ok("models", "list", "-label", "team=ml", "-o", "json")), &ms); err != nil || len(ms) != 1 || ms[0].Name != "iris" {
		t.Fatalf("models list -label team=ml -o json: %+v, %v", ms, err)
	}

	t.Run("upload a directory", func(t *testing.T) {
		dir := t.TempDir()
		files := map[string]string{"1/model.onnx": "onnx weights", "config.json": `{"name": "iris"}`}
		writeFiles(t, dir, files)
		out := c.ok("upload", "iris", dir, "-ready", "-metric", "accuracy=0.97", "-property", "epochs=int:10", "-label", "stage=dev")
		v, err := reg.GetVersion(ctx, "iris", 1)
		if err != nil {
			t.Fatal(err)
		}
		contains(t, out, "uploaded 2 file(s) to iris version 1", "1/model.onnx", "config.json", "iris version 1: READY, digest "+v.Digest)
		if v.Status != registry.StatusReady || v.Metrics["accuracy"] != 0.97 || v.CustomProperties["epochs"].Int() != 10 || v.Labels["stage"] != "dev" {
			t.Errorf("version 1: %+v", v)
		}
		got := map[string]string{}
		for _, a := range v.Artifacts {
			got[a.Name] = a.Digest + " " + a.Format
		}
		want := map[string]string{"1/model.onnx": sha256Of(files["1/model.onnx"]) + " onnx", "config.json": sha256Of(files["config.json"]) + " "}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("artifacts (-want +got):\n%s", diff)
		}
		if v.Author == "" || v.Author == "127.0.0.1" {
			t.Errorf("author %q: want the OS user the CLI sends", v.Author)
		}
	})

	t.Run("upload a file into a version", func(t *testing.T) {
		contains(t, c.ok("versions", "create", "iris", "-description", "second"), "iris version 2 registered: PENDING")
		f := filepath.Join(t.TempDir(), "model.onnx")
		writeFiles(t, filepath.Dir(f), map[string]string{"model.onnx": "better weights"})
		contains(t, c.ok("upload", "-version", "2", "iris", f), "iris version 2: PENDING", "model.onnx", sha256Of("better weights"))
		contains(t, c.ok("versions", "ready", "iris", "2"), "iris version 2: READY, digest sha256:")
		// -version with the flags of a new version is refused.
		_, err := c.run("upload", "iris", f, "-version", "2", "-metric", "a=1")
		if err == nil || !strings.Contains(err.Error(), "new version") {
			t.Errorf("upload -version with -metric: %v", err)
		}
	})

	t.Run("a failed upload leaves its version FAILED", func(t *testing.T) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"ok.bin": "x", `bad\name.bin`: "y"})
		_, err := c.run("upload", "iris", dir)
		if err == nil || !strings.Contains(err.Error(), "backslash") || !strings.Contains(err.Error(), "version 3 (now FAILED)") {
			t.Fatalf("upload of a file the registry refuses: %v", err)
		}
		v, err := reg.GetVersion(ctx, "iris", 3)
		if err != nil || v.Status != registry.StatusFailed || !strings.Contains(v.StatusMessage, "backslash") {
			t.Fatalf("version 3: %+v, %v", v, err)
		}
	})

	c = cli{t: t, admin: strings.TrimPrefix(srv.URL, "http://")}
	t.Run("aliases and resolve", func(t *testing.T) {
		contains(t, c.ok("aliases", "set", "iris", "prod", "1", "-reason", "first release"), "iris@prod -> version 1")
		c.ok("aliases", "set", "-reason", "better", "iris", "prod", "2")
		contains(t, c.ok("aliases", "list", "iris"), "ALIAS", "prod", "2")
		out := c.ok("aliases", "history", "iris", "prod")
		contains(t, out, "FROM", "REASON", "first release", "better")
		if i, j := strings.Index(out, "better"), strings.Index(out, "first release"); i > j {
			t.Errorf("history not newest first:\n%s", out)
		}
		contains(t, c.ok("resolve", "registry://iris@prod"), "registry://iris@prod -> iris version 2 (READY", "model.onnx")
		var v registry.ModelVersion
		if err := json.Unmarshal([]byte(c.ok("resolve", "iris@prod", "-json")), &v); err != nil || v.Version != 2 {
			t.Errorf("resolve -json: %+v, %v", v, err)
		}
	})

	t.Run("versions list and get", func(t *testing.T) {
		out := c.ok("versions", "list", "iris")
		contains(t, out, "VERSION", "STATUS", "READY", "FAILED: upload failed", "prod")
		if i, j := strings.Index(out, "\n2 "), strings.Index(out, "\n1 "); i < 0 || j < 0 || i > j {
			t.Errorf("versions not newest first:\n%s", out)
		}
		contains(t, c.ok("versions", "get", "iris", "1"), "Digest:", "1/model.onnx", "accuracy=0.97", `epochs={"intValue":"10"}`)
		contains(t, c.ok("versions", "list", "iris", "-status", "FAILED"), "FAILED")
	})

	t.Run("errors carry the API's message", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"versions", "archive", "iris", "2"}, "registry versions archive iris 2: "},
			{[]string{"versions", "archive", "iris", "2"}, "prod"},
			{[]string{"models", "get", "nope"}, "model nope not found"},
			{[]string{"models", "create", "Bad_Name"}, "Bad_Name"},
			{[]string{"aliases", "set", "iris", "prod", "9"}, "9"},
			{[]string{"resolve", "registry://iris@staging"}, "staging"},
			{[]string{"models", "get"}, "missing NAME"},
			{[]string{"models", "get", "iris", "extra"}, `unexpected argument "extra"`},
			{[]string{"models", "frobnicate"}, `unknown command "models frobnicate"`},
			{[]string{"models", "get", "iris", "-ready"}, "flag provided but not defined: -ready"},
			{[]string{"models", "list", "-o", "yaml"}, `-o "yaml"`},
			{[]string{"versions", "create", "iris", "-property", "x=float:1"}, "float"},
			{[]string{"versions", "get", "iris", "two"}, `"two"`},
		} {
			_, err := c.run(tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: error %v, want one holding %q", strings.Join(tc.args, " "), err, tc.want)
			}
		}
		if _, err := c.run("models", "get", "iris", "-h"); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("-h: %v", err)
		}
	})

	t.Run("archive", func(t *testing.T) {
		contains(t, c.ok("aliases", "delete", "iris", "prod", "-reason", "withdrawn"), "iris@prod deleted")
		contains(t, c.ok("versions", "archive", "iris", "2"), "iris version 2 archived")
		contains(t, c.ok("models", "archive", "digits"), "model digits archived")
		contains(t, c.ok("models", "get", "digits"), "ARCHIVED")
		contains(t, c.ok("models", "list", "-state", "ARCHIVED"), "digits")
	})
}

// TestEventsCLI reads the log, then follows it across a dropped
// connection: the CLI resumes with Last-Event-ID and prints each event
// once.
func TestEventsCLI(t *testing.T) {
	var (
		mu          sync.Mutex
		streams     int
		lastEventID []string
	)
	// The first stream is ended by the server after its first write of
	// events, as a restart would; lastEventID records each stream's
	// Last-Event-ID.
	srv, reg := registryServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/api/v1/events/stream" {
				h.ServeHTTP(w, r)
				return
			}
			mu.Lock()
			streams++
			first := streams == 1
			lastEventID = append(lastEventID, r.Header.Get("Last-Event-ID"))
			mu.Unlock()
			if first {
				ctx, cancel := context.WithCancel(r.Context())
				defer cancel()
				r = r.WithContext(ctx)
				w = &cutAfterEvent{ResponseWriter: w, cancel: cancel}
			}
			h.ServeHTTP(w, r)
		})
	})
	ctx := context.Background()
	for _, name := range []string{"iris", "digits"} {
		if _, err := reg.CreateModel(registry.WithActor(ctx, "alice"), registry.ModelCreate{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	events := func(args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := runEvents(ctx, append(args, "-admin", srv.URL), &out, &errOut)
		return out.String(), errOut.String(), err
	}

	out, _, err := events()
	if err != nil {
		t.Fatal(err)
	}
	contains(t, out, "TIME", "KIND", "model.created", "iris", "digits", "alice")
	out, _, err = events("-model", "digits", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var e registry.Event
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &e) != nil || e.Model != "digits" {
		t.Errorf("-model digits -o json: %q", out)
	}
	out, errOut, err := events("-limit", "1", "-since", "0")
	if err != nil || strings.Count(out, "model.created") != 1 || !strings.Contains(errOut, "-since") {
		t.Errorf("-limit 1: %v\n%s\n%s", err, out, errOut)
	}
	if _, _, err := events("-since", "last week"); err == nil || !strings.Contains(err.Error(), "last week") {
		t.Errorf("-since 'last week': %v", err)
	}

	// Follow from the start: two events, a drop, then one more.
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		var errOut bytes.Buffer
		done <- runEvents(fctx, []string{"-f", "-since", "0", "-o", "json", "-admin", srv.URL}, pw, &errOut)
		pw.Close()
	}()
	got := make(chan registry.Event, 100)
	go func() {
		defer close(got)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var e registry.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err == nil {
				got <- e
			}
		}
	}()
	next := func() registry.Event {
		t.Helper()
		select {
		case e, ok := <-got:
			if !ok {
				t.Fatal("events -f ended")
			}
			return e
		case <-time.After(30 * time.Second):
			t.Fatal("events -f printed nothing")
		}
		return registry.Event{}
	}
	first, second := next(), next()
	if first.Model != "iris" || second.Model != "digits" {
		t.Fatalf("followed %+v, %+v", first, second)
	}
	if _, err := reg.AppendEvent(ctx, registry.Event{Kind: "test.after-drop", Model: "iris"}); err != nil {
		t.Fatal(err)
	}
	if e := next(); e.Kind != "test.after-drop" {
		t.Fatalf("after the drop: %+v (an event printed twice?)", e)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("events -f after its context ended: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("events -f did not stop")
	}
	// A request the server refuses ends -f at once.
	if _, _, err := events("-f", "-since", "-3"); err == nil || !strings.Contains(err.Error(), "-3") {
		t.Errorf("-f with a bad since: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lastEventID) < 2 || lastEventID[0] != "" || lastEventID[1] != "2" {
		t.Errorf("Last-Event-ID of each connection: %q, want \"\" then \"2\"", lastEventID)
	}
}

// cutAfterEvent ends its request (through cancel) once it has written
// events.
type cutAfterEvent struct {
	http.ResponseWriter
	cancel context.CancelFunc
}

func (c *cutAfterEvent) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	if bytes.Contains(b, []byte("\ndata: ")) {
		c.cancel()
	}
	return n, err
}

func (c *cutAfterEvent) Unwrap() http.ResponseWriter { return c.ResponseWriter }
