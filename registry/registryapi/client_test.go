package registryapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/infergate/infergate/registry"
)

func TestNewClient(t *testing.T) {
	for _, tc := range []struct{ admin, base string }{
		{"127.0.0.1:8090", "http://127.0.0.1:8090"},
		{"http://127.0.0.1:8090/", "http://127.0.0.1:8090"},
		{"https://admin.example:443", "https://admin.example:443"},
	} {
		c, err := NewClient(tc.admin, ClientOptions{})
		if err != nil || c.Base() != tc.base {
			t.Errorf("NewClient(%q): %v, %v", tc.admin, c, err)
		}
	}
	for _, bad := range []string{"ftp://x:1", "http://", "http://h:1/some/path", "::"} {
		if _, err := NewClient(bad, ClientOptions{}); err == nil {
			t.Errorf("NewClient(%q): no error", bad)
		}
	}
}

func TestClientCallAndUpload(t *testing.T) {
	e := newEnv(t, envOptions{})
	c, err := NewClient(e.srv.URL, ClientOptions{Actor: "dana"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var m registry.RegisteredModel
	if err := c.Call(ctx, "POST", "/api/v1/registry/models", registry.ModelCreate{Name: "iris"}, &m); err != nil || m.Owner != "dana" {
		t.Fatalf("create: %+v, %v", m, err)
	}
	err = c.Call(ctx, "POST", "/api/v1/registry/models", registry.ModelCreate{Name: "iris"}, nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || ae.Code != "ALREADY_EXISTS" || ae.Message == "" {
		t.Fatalf("duplicate: %#v", err)
	}
	// Not the API's JSON: the status and the body's first line.
	err = c.Call(ctx, "GET", "/elsewhere", nil, nil)
	if !errors.As(err, &ae) || ae.Status != http.StatusTeapot || ae.Message == "" {
		t.Fatalf("an answer from elsewhere: %#v", err)
	}

	dir := t.TempDir()
	writeFile := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile("1/model.onnx", "weights")
	writeFile("config.json", "{}")
	writeFile("empty", "")
	ups, err := PrepareUploads(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range ups {
		h, _ := sha(mustRead(t, u.Path))
		if u.SHA256 != h || u.Size != int64(len(mustRead(t, u.Path))) {
			t.Errorf("%s: size %d, sha256 %s", u.Name, u.Size, u.SHA256)
		}
		names = append(names, u.Name)
	}
	if diff := cmp.Diff([]string{"1/model.onnx", "config.json", "empty"}, names); diff != "" {
		t.Errorf("PrepareUploads (-want +got):\n%s", diff)
	}
	if one, err := PrepareUploads(filepath.Join(dir, "1", "model.onnx")); err != nil || len(one) != 1 || one[0].Name != "model.onnx" {
		t.Errorf("PrepareUploads of a file: %+v, %v", one, err)
	}
	if err := os.Mkdir(filepath.Join(dir, "void"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := PrepareUploads(filepath.Join(dir, "void")); err == nil {
		t.Error("PrepareUploads of an empty directory: no error")
	}

	var v registry.ModelVersion
	if err := c.Call(ctx, "POST", "/api/v1/registry/models/iris/versions", struct{}{}, &v); err != nil {
		t.Fatal(err)
	}
	for _, u := range ups {
		a, err := c.UploadFile(ctx, "iris", v.Version, u)
		if err != nil || a.Name != u.Name || a.Digest != "sha256:"+u.SHA256 {
			t.Fatalf("upload %s: %+v, %v", u.Name, a, err)
		}
	}
	// A file changed after it was hashed is refused, and nothing stored.
	writeFile("config.json", "[]")
	ups[1].Name = "changed.json"
	_, err = c.UploadFile(ctx, "iris", v.Version, ups[1])
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Fatalf("a file changed after hashing: %v", err)
	}
	if got := e.artifactNames("iris", int(v.Version)); len(got) != 3 {
		t.Errorf("artifacts: %v", got)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestClientFollow drops the first stream after it delivered events (as a
// restart would): Follow reconnects with Last-Event-ID and delivers each
// event once, in order.
func TestClientFollow(t *testing.T) {
	e := newEnv(t, envOptions{api: Options{Heartbeat: time.Hour}})
	ctx := context.Background()
	var ids []int64
	for i := range 3 {
		ev, err := e.reg.AppendEvent(ctx, registry.Event{Kind: "test.before", Message: strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.ID)
	}
	c, err := NewClient(e.srv.URL, ClientOptions{RetryMin: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan registry.Event, 100)
	var mu sync.Mutex
	var notes []error
	done := make(chan error, 1)
	go func() {
		done <- c.Follow(fctx, url.Values{"since": {"0"}}, func(ev registry.Event) { got <- ev },
			func(why error, _ time.Duration) { mu.Lock(); notes = append(notes, why); mu.Unlock() })
	}()
	next := func() registry.Event {
		t.Helper()
		select {
		case ev := <-got:
			return ev
		case <-time.After(30 * time.Second):
			t.Fatal("Follow delivered nothing")
		}
		return registry.Event{}
	}
	for _, want := range ids {
		if ev := next(); ev.ID != want {
			t.Fatalf("event %d, want %d", ev.ID, want)
		}
	}
	// Drop every open stream: the server closes the client's connections.
	e.srv.CloseClientConnections()
	after, err := e.reg.AppendEvent(ctx, registry.Event{Kind: "test.after"})
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev.ID != after.ID {
		t.Fatalf("after the drop: event %d (%s), want %d once", ev.ID, ev.Kind, after.ID)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Follow after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Follow did not return")
	}
	mu.Lock()
	if len(notes) == 0 {
		t.Error("the drop was not reported")
	}
	mu.Unlock()

	t.Run("a refused request ends it", func(t *testing.T) {
		err := c.Follow(ctx, url.Values{"since": {"soon"}}, func(registry.Event) {}, nil)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
			t.Errorf("Follow with since=soon: %v", err)
		}
	})
	t.Run("gives up after MaxFailures", func(t *testing.T) {
		// A loopback port nobody listens on any more.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		dead, err := NewClient(addr, ClientOptions{RetryMin: time.Millisecond, RetryMax: time.Millisecond, MaxFailures: 3})
		if err != nil {
			t.Fatal(err)
		}
		if err := dead.Follow(ctx, nil, func(registry.Event) {}, nil); err == nil {
			t.Error("Follow of a closed port: no error")
		}
	})
}
