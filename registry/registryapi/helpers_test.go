package registryapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/jsonhttp"
	"github.com/infergate/infergate/registry"
)

// env is a registry on SQLite in a temp dir served over loopback HTTP.
type env struct {
	t    *testing.T
	reg  *registry.Registry
	dir  string
	srv  *httptest.Server
	h    *Handler
	done chan string // "METHOD path" of each request once answered
}

type envOptions struct {
	api Options
	reg registry.Options
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	o.reg.DataDir = dir
	reg, err := registry.Open(context.Background(), o.reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	h, err := New(reg, o.api)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, reg: reg, dir: dir, h: h, done: make(chan string, 100)}
	// The mux the admin port mounts the handler with: its patterns, and a
	// catch-all that is not ours.
	mux := http.NewServeMux()
	for _, p := range h.Patterns() {
		mux.Handle(p, h)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "not the registry's", http.StatusTeapot) })
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r)
		select {
		case e.done <- r.Method + " " + r.URL.Path:
		default:
		}
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// resp is an answer read whole.
type resp struct {
	status int
	header http.Header
	body   []byte
}

// errBody decodes an error answer.
func (r resp) errBody(t *testing.T) jsonhttp.ErrorBody {
	t.Helper()
	var e jsonhttp.ErrorBody
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	return e
}

// do sends a request; a non-nil body that is not an io.Reader or []byte
// is sent as JSON. hdr are "Name: value" pairs.
func (e *env) do(method, path string, body any, hdr ...string) resp {
	e.t.Helper()
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd, ct = strings.NewReader(b), "application/json"
	case []byte:
		rd = bytes.NewReader(b)
	case io.Reader:
		rd = b
	default:
		js, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd, ct = bytes.NewReader(js), "application/json"
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for _, kv := range hdr {
		k, v, _ := strings.Cut(kv, ":")
		if v = strings.TrimSpace(v); v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

// ok sends a request that must answer want, decoding the body into out.
func (e *env) ok(want int, out any, method, path string, body any, hdr ...string) resp {
	e.t.Helper()
	r := e.do(method, path, body, hdr...)
	if r.status != want {
		e.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, r.status, want, r.body)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			e.t.Fatalf("%s %s: body %s: %v", method, path, r.body, err)
		}
	}
	return r
}

// fails sends a request that must fail with status and code as JSON, and
// returns the error's message.
func (e *env) fails(status int, code, method, path string, body any, hdr ...string) string {
	e.t.Helper()
	r := e.do(method, path, body, hdr...)
	if r.status != status {
		e.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		e.t.Fatalf("%s %s: Content-Type %q, want application/json; body %s", method, path, ct, r.body)
	}
	eb := r.errBody(e.t)
	if eb.Code != code {
		e.t.Fatalf("%s %s: code %q, want %q; error %q", method, path, eb.Code, code, eb.Error)
	}
	if eb.Error == "" {
		e.t.Fatalf("%s %s: an empty error message", method, path)
	}
	return eb.Error
}

// mentions fails t unless msg holds every one of subs.
func mentions(t *testing.T, msg string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(msg, s) {
			t.Errorf("error %q does not mention %q", msg, s)
		}
	}
}

// waitDone waits until the server has answered a request of that method
// and path (or fails after a generous deadline).
func (e *env) waitDone(methodPath string) {
	e.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case got := <-e.done:
			if got == methodPath {
				return
			}
		case <-deadline:
			e.t.Fatalf("the server never answered %s", methodPath)
		}
	}
}

// readyVersion registers a READY version of model holding one artifact.
func (e *env) readyVersion(model, content string) *registry.ModelVersion {
	e.t.Helper()
	ctx := context.Background()
	v, err := e.reg.CreateVersion(ctx, model, registry.VersionCreate{})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.reg.AddArtifact(ctx, model, v.Version, registry.ArtifactUpload{Name: "model.onnx"}, strings.NewReader(content)); err != nil {
		e.t.Fatal(err)
	}
	v, err = e.reg.MarkReady(ctx, model, v.Version)
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}
