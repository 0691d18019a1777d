package pipelinesapi

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/pipelines"
	"github.com/infergate/infergate/registry"
)

const waitLimit = 60 * time.Second

type env struct {
	t   *testing.T
	e   *pipelines.Engine
	srv *httptest.Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	reg, err := registry.Open(t.Context(), registry.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	e, err := pipelines.Open(t.Context(), pipelines.Options{Registry: reg, DataDir: dir, KillGrace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	guard := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Refuse") != "" {
				http.Error(w, `{"error": "refused"}`, http.StatusForbidden)
				return
			}
			h(w, r)
		}
	}
	h, err := New(Options{Engine: e, Guard: guard, MaxBodyBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h) // 127.0.0.1, port 0
	t.Cleanup(func() {
		srv.Close()
		e.Close()
		reg.Close()
	})
	return &env{t: t, e: e, srv: srv}
}

// do sends a request and decodes a JSON answer into out (if not nil).
func (v *env) do(method, path string, body any, out any, hdr ...string) int {
	v.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			v.t.Fatal(err)
		}
		r = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(v.t.Context(), method, v.srv.URL+path, r)
	if err != nil {
		v.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			v.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

func (v *env) wait(id pipelines.RunID) *pipelines.Run {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(v.t.Context(), waitLimit)
	defer cancel()
	run, err := v.e.Wait(ctx, id)
	if err != nil {
		v.t.Fatal(err)
	}
	return run
}

const okYAML = `
apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: api}
spec:
  params:
    word: {type: string, default: hi}
    count: {type: int, default: 1}
  steps:
    - name: say
      command: [sh, -c, 'echo "{{.Params.word}} {{.Params.count}}"; echo {{.Params.count}} > outputs/params/c']
      outputs: {params: {c: {type: int}}}
`

func TestSubmitGetList(t *testing.T) {
	v := newEnv(t)
	var run pipelines.Run
	code := v.do("POST", "/api/v1/runs", map[string]any{"pipeline": okYAML, "params": map[string]any{"word": "hello", "count": 3}}, &run)
	if code != http.StatusCreated || run.ID == "" || run.Pipeline != "api" {
		t.Fatalf("submit: %d %+v", code, run)
	}
	if run.Actor != "127.0.0.1" {
		t.Errorf("submitted by %q, want the client's address (no %s header)", run.Actor, ActorHeader)
	}
	done := v.wait(run.ID)
	if done.State != pipelines.RunSucceeded || done.Steps[0].Outputs.Params["c"] != int64(3) {
		t.Fatalf("run %+v", done)
	}
	var got pipelines.Run
	if code := v.do("GET", "/api/v1/runs/"+string(run.ID), nil, &got); code != http.StatusOK || got.State != pipelines.RunSucceeded || len(got.Steps) != 1 {
		t.Errorf("get: %d %+v", code, got)
	}
	var page pipelines.RunPage
	if code := v.do("GET", "/api/v1/runs?pipeline=api&state=succeeded&pageSize=10", nil, &page); code != http.StatusOK || len(page.Runs) != 1 || page.Runs[0].ID != run.ID {
		t.Errorf("list: %d %+v", code, page)
	}
	resp, err := http.Get(v.srv.URL + "/api/v1/runs/" + string(run.ID) + "/steps/say/logs")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "hello 3\n" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("logs: %d %q", resp.StatusCode, b)
	}
	// The finished run: cancel conflicts, retry conflicts.
	var e map[string]string
	if code := v.do("POST", "/api/v1/runs/"+string(run.ID)+"/cancel", nil, &e); code != http.StatusConflict || !strings.Contains(e["error"], "has ended") {
		t.Errorf("cancel of an ended run: %d %v", code, e)
	}
	if code := v.do("POST", "/api/v1/runs/"+string(run.ID)+"/retry", nil, &e); code != http.StatusConflict {
		t.Errorf("retry of a succeeded run: %d %v", code, e)
	}
}

func TestErrors(t *testing.T) {
	v := newEnv(t)
	cases := []struct {
		name, method, path string
		body               any
		hdr                []string
		code               int
		want               string
	}{
		{"bad pipeline", "POST", "/api/v1/runs", map[string]any{"source": "p.yaml", "pipeline": strings.Replace(okYAML, "Params.word", "Params.wrd", 1)}, nil,
			400, "p.yaml: step say: command[2]: template"},
		{"bad param", "POST", "/api/v1/runs", map[string]any{"pipeline": okYAML, "params": map[string]any{"count": "many"}}, nil,
			400, `params.count: want an int, got "many"`},
		{"unknown param", "POST", "/api/v1/runs", map[string]any{"pipeline": okYAML, "params": map[string]any{"cnt": 1}}, nil,
			400, `params.cnt: the pipeline has no such param (did you mean count?)`},
		{"no pipeline", "POST", "/api/v1/runs", map[string]any{}, nil, 400, "pipeline: missing"},
		{"unknown field", "POST", "/api/v1/runs", map[string]any{"pipeline": okYAML, "parms": 1}, nil, 400, `unknown field "parms"`},
		{"too large", "POST", "/api/v1/runs", map[string]any{"pipeline": strings.Repeat("#", 70<<10)}, nil, 413, "larger than 65536 bytes"},
		{"guarded", "POST", "/api/v1/runs", map[string]any{"pipeline": okYAML}, []string{"X-Refuse", "1"}, 403, "refused"},
		{"unknown run", "GET", "/api/v1/runs/nope-aaaaaaaa", nil, nil, 404, "run nope-aaaaaaaa not found"},
		{"cancel unknown", "POST", "/api/v1/runs/nope-aaaaaaaa/cancel", nil, nil, 404, "not found"},
		{"retry unknown", "POST", "/api/v1/runs/nope-aaaaaaaa/retry", nil, nil, 404, "not found"},
		{"logs unknown", "GET", "/api/v1/runs/nope-aaaaaaaa/steps/x/logs", nil, nil, 404, "not found"},
		{"bad state", "GET", "/api/v1/runs?state=done", nil, nil, 400, `state "done" is not a run state`},
		{"bad page size", "GET", "/api/v1/runs?pageSize=ten", nil, nil, 400, `pageSize "ten" is not a number`},
		{"no route", "DELETE", "/api/v1/runs/x", nil, nil, 404, "no pipelines API at DELETE /api/v1/runs/x"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var e map[string]string
			code := v.do(tc.method, tc.path, tc.body, &e, tc.hdr...)
			if code != tc.code || !strings.Contains(e["error"], tc.want) {
				t.Errorf("%d %q, want %d with %q", code, e["error"], tc.code, tc.want)
			}
		})
	}
}

func TestCancelAndFollow(t *testing.T) {
	v := newEnv(t)
	gate := filepath.Join(t.TempDir(), "gate")
	yaml := `
apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: long}
spec:
  steps:
    - name: wait
      command: [sh, -c, 'echo started; while [ ! -e ` + gate + ` ]; do sleep 0.02; done; echo released; sleep 300']
`
	var run pipelines.Run
	if code := v.do("POST", "/api/v1/runs", map[string]any{"pipeline": yaml}, &run); code != http.StatusCreated {
		t.Fatalf("submit: %d", code)
	}
	resp, err := http.Get(v.srv.URL + "/api/v1/runs/" + string(run.ID) + "/steps/wait/logs?follow=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("follow: %d", resp.StatusCode)
	}
	lines := bufio.NewScanner(resp.Body)
	// Each line arrives while the step still runs: the stream is flushed.
	if !lines.Scan() || lines.Text() != "started" {
		t.Fatalf("first line %q (%v)", lines.Text(), lines.Err())
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !lines.Scan() || lines.Text() != "released" {
		t.Fatalf("second line %q (%v)", lines.Text(), lines.Err())
	}
	var got pipelines.Run
	if code := v.do("POST", "/api/v1/runs/"+string(run.ID)+"/retry", nil, &map[string]string{}); code != http.StatusConflict {
		t.Errorf("retry of a running run: %d, want 409", code)
	}
	if code := v.do("POST", "/api/v1/runs/"+string(run.ID)+"/cancel", nil, &got); code != http.StatusAccepted || !got.Cancelling {
		t.Errorf("cancel: %d %+v", code, got)
	}
	var rest []string
	for lines.Scan() {
		rest = append(rest, lines.Text())
	}
	if len(rest) != 1 || !strings.Contains(rest[0], "infergate: the run was cancelled") {
		t.Errorf("the followed log ended with %q", rest)
	}
	if done := v.wait(run.ID); done.State != pipelines.RunCancelled {
		t.Errorf("run %s, want cancelled", done.State)
	}
	var again pipelines.Run
	if code := v.do("POST", "/api/v1/runs/"+string(run.ID)+"/retry", nil, &again); code != http.StatusAccepted {
		t.Fatalf("retry of a cancelled run: %d", code)
	}
	// Follow the step into its second attempt before cancelling it.
	resp2, err := http.Get(v.srv.URL + "/api/v1/runs/" + string(run.ID) + "/steps/wait/logs?follow=1&attempt=2")
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	lines2 := bufio.NewScanner(resp2.Body)
	for lines2.Scan() && lines2.Text() != "released" {
	}
	if code := v.do("POST", "/api/v1/runs/"+string(run.ID)+"/cancel", nil, &again); code != http.StatusAccepted {
		t.Errorf("cancel of the retried run: %d", code)
	}
	if done := v.wait(run.ID); done.State != pipelines.RunCancelled || len(done.Steps[0].Attempts) != 2 {
		t.Errorf("retried run %s with %d attempts", done.State, len(done.Steps[0].Attempts))
	}
}
