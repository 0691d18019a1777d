package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/infergate/infergate/controlplane"
	"github.com/infergate/infergate/pipelines"
	"github.com/infergate/infergate/pipelines/pipelinesapi"
	"github.com/infergate/infergate/registry"
)

// runLimit bounds each CLI call and each wait of these tests: generous,
// never a timing assertion.
const runLimit = 2 * time.Minute

// runsServer serves the runs API of a pipeline engine on a fresh SQLite
// registry on loopback, guarded as `infergate serve` mounts it.
func runsServer(t *testing.T) (string, *pipelines.Engine) {
	t.Helper()
	dir := t.TempDir()
	reg, err := registry.Open(context.Background(), registry.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	e, err := pipelines.Open(context.Background(), pipelines.Options{Registry: reg, DataDir: dir, KillGrace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h, err := pipelinesapi.New(pipelinesapi.Options{
		Engine: e,
		Guard:  func(h http.HandlerFunc) http.HandlerFunc { return controlplane.Guard(false, h) },
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h) // 127.0.0.1, port 0
	t.Cleanup(func() {
		srv.Close()
		e.Close()
		reg.Close()
	})
	return srv.URL, e
}

// runCmd runs `infergate run ARGS -admin ADMIN`.
type runCmd struct {
	t     *testing.T
	admin string
}

func (c runCmd) run(args ...string) (stdout, stderr string, err error) {
	c.t.Helper()
	var out, errOut bytes.Buffer
	err = c.runTo(&out, &errOut, args...)
	return out.String(), errOut.String(), err
}

// runTo runs the command with its output to the writers given, bounded
// by runLimit.
func (c runCmd) runTo(stdout, stderr interface{ Write([]byte) (int, error) }, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), runLimit)
	defer cancel()
	return runRunContext(ctx, append(args, "-admin", c.admin), stdout, stderr)
}

func (c runCmd) ok(args ...string) string {
	c.t.Helper()
	out, errOut, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("infergate run %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// fails runs a command that must fail and returns its error's text.
func (c runCmd) fails(args ...string) string {
	c.t.Helper()
	out, _, err := c.run(args...)
	if err == nil {
		c.t.Fatalf("infergate run %s succeeded; want an error\n%s", strings.Join(args, " "), out)
	}
	return err.Error()
}

// getRun reads a run through `run get -o json`.
func (c runCmd) getRun(id string) pipelines.Run {
	c.t.Helper()
	var r pipelines.Run
	if err := json.Unmarshal([]byte(c.ok("get", id, "-o", "json")), &r); err != nil {
		c.t.Fatal(err)
	}
	return r
}

// watchedBuffer is a Writer safe for concurrent use whose reader can wait
// until it holds a text.
type watchedBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{}
}

func newWatchedBuffer() *watchedBuffer { return &watchedBuffer{changed: make(chan struct{})} }

func (w *watchedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	close(w.changed)
	w.changed = make(chan struct{})
	return w.b.Write(p)
}

func (w *watchedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// waitFor waits until the buffer holds s, failing the test after
// runLimit.
func (w *watchedBuffer) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.NewTimer(runLimit)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		has, ch := strings.Contains(w.b.String(), s), w.changed
		w.mu.Unlock()
		if has {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("no %q after %s in:\n%s", s, runLimit, w.String())
		}
	}
}

// waitDone waits for a command started in a goroutine.
func waitDone(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(runLimit + 10*time.Second):
		t.Fatal("the command did not return")
		return nil
	}
}

const typedPipeline = `apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: typed}
spec:
  params:
    epochs: {type: int, default: 1}
    rate: {type: double, default: 0.1}
    fast: {type: bool, default: false}
    xs: {type: list, default: [1]}
    who: {type: string, default: nobody}
  steps:
    - name: show
      command: [sh, -c, 'echo "epochs={{.Params.epochs}} rate={{.Params.rate}} fast={{.Params.fast}} xs={{.Params.xs}} who={{.Params.who}}"']
    - name: check
      # Runs only if the values arrived as an int and a bool.
      when: params.epochs > 10 && params.fast
      command: [sh, -c, 'echo checked']
    - name: square
      parallelFor: {items: params.xs, parallelism: 2}
      command: [sh, -c, 'echo $(( {{.Item}} * {{.Item}} )) > {{.Outputs.sq}}']
      outputs:
        params: {sq: {type: int}}
  finally:
    - name: done
      command: [sh, -c, 'echo "run {{.Status}}"']
`

// rowOf returns the step table's row that starts with the fields given.
func rowOf(t *testing.T, out string, prefix ...string) []string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(prefix) && cmp.Equal(f[:len(prefix)], prefix) {
			return f
		}
	}
	t.Fatalf("no row %q in:\n%s", prefix, out)
	return nil
}

func TestRunSubmitWaitGetAndList(t *testing.T) {
	admin, _ := runsServer(t)
	c := runCmd{t: t, admin: admin}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"typed.yaml": typedPipeline, "fail.yaml": failPipeline})
	typed := filepath.Join(dir, "typed.yaml")

	// Typed parameters given as text; -f after the flags it follows.
	out := c.ok("submit", "-p", "epochs=20", "-p", "rate=0.5", "-p", "fast=true", "-p", "xs=[1,2,3]", "-p", "who=a b", "-f", typed, "-wait")
	id := strings.SplitN(out, "\n", 2)[0]
	if !strings.HasPrefix(id, "typed-") {
		t.Fatalf("first line %q is not the run's id:\n%s", id, out)
	}
	contains(t, out, "State:", "succeeded", "STEP", "ITERATION", "STATE", "ATTEMPTS", "DURATION", "CACHED", "REASON")
	r := c.getRun(id)
	want := map[string]any{"epochs": 20.0, "rate": 0.5, "fast": true, "xs": []any{1.0, 2.0, 3.0}, "who": "a b"}
	if diff := cmp.Diff(want, r.Params); diff != "" {
		t.Errorf("params (-want +got):\n%s", diff)
	}
	contains(t, c.ok("logs", id, "show"), "epochs=20 rate=0.5 fast=true xs=[1,2,3] who=a b")

	// The step table: the condition held, the parallelFor step sums up
	// its iterations, the finally step is marked.
	got := c.ok("get", id)
	contains(t, got, "Run:", id, "Pipeline:", "typed", "epochs=20 fast=true rate=0.5 who=a b xs=[1,2,3]")
	for _, row := range [][]string{
		{"show", "-", "succeeded", "1"},
		{"check", "-", "succeeded", "1"},
		{"square", "all", "succeeded", "3"},
		{"square", "0", "succeeded", "1"},
		{"square", "2", "succeeded", "1"},
		{"done", "(finally)", "-", "succeeded", "1"},
	} {
		rowOf(t, got, row...)
	}
	if f := rowOf(t, got, "square", "all"); f[5] != "0/3" {
		t.Errorf("square's CACHED = %q, want 0/3:\n%s", f[5], got)
	}

	// The same run again reuses every output; -no-cache reuses none.
	again := strings.SplitN(c.ok("submit", "-f", typed, "-p", "epochs=20", "-p", "rate=0.5", "-p", "fast=true", "-p", "xs=[1,2,3]", "-p", "who=a b", "-wait"), "\n", 2)[0]
	got = c.ok("get", again)
	if f := rowOf(t, got, "show"); f[2] != "cached" || f[4] != "-" || f[5] != "yes" || !strings.Contains(strings.Join(f, " "), "reused the outputs of run "+id) {
		t.Errorf("show row %q: want cached, yes, from %s:\n%s", f, id, got)
	}
	if f := rowOf(t, got, "square", "all"); f[5] != "3/3" {
		t.Errorf("square's CACHED = %q, want 3/3:\n%s", f[5], got)
	}
	noCache := strings.SplitN(c.ok("submit", "-f", typed, "-no-cache", "-wait"), "\n", 2)[0]
	got = c.ok("get", noCache)
	contains(t, got, "Cache:", "off for this run")
	if f := rowOf(t, got, "show"); f[2] != "succeeded" || f[5] != "no" {
		t.Errorf("show row %q with -no-cache: want succeeded, no:\n%s", f, got)
	}
	// Defaults applied: the condition was false.
	if f := rowOf(t, got, "check"); f[2] != "skipped" || f[3] != "0" || f[4] != "-" || f[5] != "-" {
		t.Errorf("check row %q: want skipped with the defaults, having never run", f)
	}

	// A failing run: -wait prints its table and fails with the reason.
	out, _, err := c.run("-wait", "submit", "-f", filepath.Join(dir, "fail.yaml"))
	if err == nil {
		t.Fatalf("submit -wait of a failing run succeeded:\n%s", out)
	}
	contains(t, err.Error(), "the run failed", "step boom")
	failed := strings.SplitN(out, "\n", 2)[0]
	if f := rowOf(t, out, "boom"); f[2] != "failed" || f[3] != "2" {
		t.Errorf("boom row %q: want failed after 2 attempts:\n%s", f, out)
	}
	contains(t, c.ok("logs", failed, "boom", "-attempt", "1"), "boom on stderr")

	// list: newest first, filtered, as JSON, bounded.
	list := c.ok("list")
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if diff := cmp.Diff([]string{"ID", "PIPELINE", "STATE", "STARTED", "DURATION"}, strings.Fields(lines[0])); diff != "" {
		t.Errorf("list header (-want +got):\n%s", diff)
	}
	var ids []string
	for _, l := range lines[1:] {
		ids = append(ids, strings.Fields(l)[0])
	}
	if diff := cmp.Diff([]string{failed, noCache, again, id}, ids); diff != "" {
		t.Errorf("list ids (-want +got):\n%s", diff)
	}
	rowOf(t, list, failed, "fail", "failed")
	rowOf(t, list, id, "typed", "succeeded")
	only := c.ok("-state", "failed", "list")
	if strings.Contains(only, id) || !strings.Contains(only, failed) {
		t.Errorf("list -state failed:\n%s", only)
	}
	if only := c.ok("list", "-pipeline", "typed"); strings.Contains(only, failed) || !strings.Contains(only, again) {
		t.Errorf("list -pipeline typed:\n%s", only)
	}
	var runs []pipelines.Run
	if err := json.Unmarshal([]byte(c.ok("list", "-json")), &runs); err != nil || len(runs) != 4 || string(runs[0].ID) != failed {
		t.Errorf("list -json: %v, %+v", err, runs)
	}
	limited, errOut, err := c.run("list", "-limit", "2")
	if err != nil || strings.Count(limited, "\n") != 3 || !strings.Contains(errOut, "more than 2 runs") {
		t.Errorf("list -limit 2: %v\n%s\n%s", err, limited, errOut)
	}
}

const failPipeline = `apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: fail}
spec:
  steps:
    - name: boom
      command: [sh, -c, 'echo boom on stderr >&2; exit 3']
      retry: {limit: 1, backoff: 10ms}
`

func TestRunLogsFollow(t *testing.T) {
	admin, _ := runsServer(t)
	c := runCmd{t: t, admin: admin}
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	// The step prints a line, then waits (bounded) for the test to let it
	// print the second and end.
	writeFiles(t, dir, map[string]string{"slow.yaml": `apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: slow}
spec:
  params:
    gate: {type: string}
  steps:
    - name: talk
      cache: false
      command: [sh, -c, 'echo line one; i=0; while [ ! -e {{.Params.gate}} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; echo line two']
`})
	id := strings.TrimSpace(c.ok("submit", "-f", filepath.Join(dir, "slow.yaml"), "-p", "gate="+gate))

	out := newWatchedBuffer()
	done := make(chan error, 1)
	go func() { done <- c.runTo(out, new(bytes.Buffer), "logs", "-f", id, "talk") }()
	out.waitFor(t, "line one\n")
	// The step cannot end before the gate exists: the follower is still
	// streaming.
	select {
	case err := <-done:
		t.Fatalf("logs -f returned (%v) while the step runs:\n%s", err, out)
	default:
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := waitDone(t, done); err != nil {
		t.Fatalf("logs -f: %v", err)
	}
	if got := out.String(); !strings.Contains(got, "line one\nline two\n") {
		t.Errorf("logs -f printed:\n%s", got)
	}
	// Without -f, the whole log of the ended step.
	contains(t, c.ok("logs", id, "talk"), "line one\nline two\n")
}

func TestRunCancelAndRetry(t *testing.T) {
	admin, _ := runsServer(t)
	c := runCmd{t: t, admin: admin}
	dir := t.TempDir()
	mark := filepath.Join(dir, "mark")
	writeFiles(t, dir, map[string]string{
		"sleeper.yaml": `apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: sleeper}
spec:
  steps:
    - name: nap
      command: [sh, -c, 'echo napping; exec sleep 600']
`,
		"gated.yaml": `apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: gated}
spec:
  params:
    mark: {type: string}
  steps:
    - name: first
      command: [sh, -c, 'echo first']
    - name: needs-mark
      dependsOn: [first]
      command: [sh, -c, 'test -e {{.Params.mark}}']
`})

	// Cancel a running run that submit -wait follows: the wait ends
	// non-zero, naming the cancel.
	out, errOut := newWatchedBuffer(), newWatchedBuffer()
	done := make(chan error, 1)
	go func() { done <- c.runTo(out, errOut, "submit", "-f", filepath.Join(dir, "sleeper.yaml"), "-wait") }()
	errOut.waitFor(t, "nap running")
	id := strings.SplitN(out.String(), "\n", 2)[0]
	contains(t, c.ok("cancel", id), "run "+id+" cancelling")
	err := waitDone(t, done)
	if err == nil || !strings.Contains(err.Error(), "the run cancelled") {
		t.Fatalf("submit -wait of a cancelled run: %v", err)
	}
	if f := rowOf(t, out.String(), "nap"); f[2] != "cancelled" {
		t.Errorf("nap row %q: want cancelled", f)
	}
	contains(t, c.fails("cancel", id), "has ended (cancelled): nothing to cancel")

	// Retry runs again only what did not succeed.
	out2, _, err := c.run("submit", "-f", filepath.Join(dir, "gated.yaml"), "-p", "mark="+mark, "-wait")
	if err == nil {
		t.Fatalf("gated run succeeded without its mark:\n%s", out2)
	}
	gated := strings.SplitN(out2, "\n", 2)[0]
	if err := os.WriteFile(mark, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got := c.ok("retry", gated, "-wait")
	contains(t, got, "run "+gated+" retrying", "State:", "succeeded")
	if f := rowOf(t, got, "first"); f[3] != "1" {
		t.Errorf("first row %q: want its one attempt, not run again", f)
	}
	if f := rowOf(t, got, "needs-mark"); f[2] != "succeeded" || f[3] != "2" {
		t.Errorf("needs-mark row %q: want succeeded at its second attempt", f)
	}
	contains(t, c.fails("retry", gated), "only a failed or cancelled run can be retried")

	// retry without -wait answers at once; as JSON, the run.
	var r pipelines.Run
	if err := json.Unmarshal([]byte(c.ok("retry", id, "-o", "json")), &r); err != nil || string(r.ID) != id {
		t.Fatalf("retry -o json: %v, %+v", err, r)
	}
	contains(t, c.ok("cancel", id), "cancelling")
}

func TestRunAPIErrors(t *testing.T) {
	admin, _ := runsServer(t)
	c := runCmd{t: t, admin: admin}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"typo.yaml": `apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: typo}
spec:
  steps:
    - name: train
      command: [sh, -c, 'echo 1 > {{.Outputs.model}}']
      outputs: {params: {model: {type: int}}}
    - name: eval
      command: [sh, -c, 'echo {{.Inputs.model}}']
      inputs:
        model: {from: steps.trian.outputs.model}
`,
		"field.yaml": `apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: field}
spec:
  steps:
    - name: a
      comand: [sh, -c, 'true']
`,
		"ok.yaml": `apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: ok}
spec:
  params:
    count: {type: int, default: 1}
  steps:
    - name: a
      command: [sh, -c, 'true']
`,
	})
	typo := filepath.Join(dir, "typo.yaml")
	ok := c.ok("submit", "-f", filepath.Join(dir, "ok.yaml"), "-wait")
	id := strings.SplitN(ok, "\n", 2)[0]
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"unknown run", []string{"get", "nope-12345"}, []string{"run get nope-12345: ", "run nope-12345 not found"}},
		{"unknown run's logs", []string{"logs", "nope-12345", "a"}, []string{"not found"}},
		{"unknown step's logs", []string{"logs", id, "zz"}, []string{"run logs " + id + " zz: ", "zz"}},
		{"cancel unknown run", []string{"cancel", "nope-12345"}, []string{"not found"}},
		{"unknown reference", []string{"submit", "-f", typo}, []string{typo + ": step eval: inputs.model.from: no step trian (did you mean train?)"}},
		{"unknown field", []string{"submit", "-f", filepath.Join(dir, "field.yaml")}, []string{"comand"}},
		{"bad parameter", []string{"submit", "-f", filepath.Join(dir, "ok.yaml"), "-p", "count=many"}, []string{"count", "many"}},
		{"unknown parameter", []string{"submit", "-f", filepath.Join(dir, "ok.yaml"), "-p", "m=1"}, []string{"m"}},
		{"bad state", []string{"list", "-state", "done"}, []string{`state "done" is not a run state`}},
		{"retry succeeded", []string{"retry", id}, []string{"is succeeded: only a failed or cancelled run can be retried"}},
		{"bad attempt", []string{"logs", id, "a", "-attempt", "9"}, []string{"attempt"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			contains(t, c.fails(tc.args...), tc.want...)
		})
	}
	if got := c.fails("submit", "-f", typo); strings.Contains(got, "answered") {
		t.Errorf("the error is not the API's message: %s", got)
	}
}

// TestRunArgs covers what is refused before any request: each case runs
// against a server that fails the test if it is called.
func TestRunArgs(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("unexpected request %s %s", r.Method, r.URL)
		http.Error(w, `{"error": "unexpected"}`, http.StatusTeapot)
	}))
	defer srv.Close()
	dir := t.TempDir()
	big, small := filepath.Join(dir, "big.yaml"), filepath.Join(dir, "small.yaml")
	writeFiles(t, dir, map[string]string{"big.yaml": strings.Repeat("#", pipelines.MaxPipelineBytes+1), "small.yaml": "# a comment\n"})
	for _, tc := range []struct {
		name   string
		args   []string
		help   bool
		want   string
		stderr string
	}{
		{name: "nothing", args: nil, want: "say what to do", stderr: "infergate run submit -f FILE"},
		{name: "help", args: []string{"-h"}, help: true, stderr: "infergate run logs [-f]"},
		{name: "help word", args: []string{"--help"}, help: true, stderr: "infergate run list"},
		{name: "command help", args: []string{"submit", "-h"}, help: true, stderr: "Usage: infergate run submit"},
		{name: "help before command", args: []string{"-h", "logs"}, help: true, stderr: "Usage: infergate run logs ID STEP"},
		{name: "unknown command", args: []string{"frob"}, want: `unknown command "frob"`},
		{name: "unknown command after a flag value", args: []string{"-admin", "x:1", "frob"}, want: `unknown command "frob"`},
		{name: "unknown flag", args: []string{"list", "-bogus"}, want: "flag provided but not defined: -bogus", stderr: "Usage: infergate run list"},
		{name: "no -o for logs", args: []string{"logs", "a", "b", "-o", "json"}, want: "flag provided but not defined: -o"},
		{name: "bad -o", args: []string{"get", "a", "-o", "yaml"}, want: `-o "yaml": want table or json`},
		{name: "missing id", args: []string{"get"}, want: "run get: missing ID"},
		{name: "missing step", args: []string{"logs", "a"}, want: "run logs: missing STEP"},
		{name: "extra argument", args: []string{"cancel", "a", "b"}, want: `unexpected argument "b"`},
		{name: "no file", args: []string{"submit", "-wait"}, want: "give the pipeline file with -f"},
		{name: "missing file", args: []string{"submit", "-f", "/nonexistent/p.yaml"}, want: "no such file"},
		{name: "too large", args: []string{"submit", "-f", big}, want: "larger than"},
		{name: "bad -p", args: []string{"submit", "-f", small, "-p", "epochs"}, want: `-p "epochs": want key=value`},
		{name: "bad limit", args: []string{"list", "-limit", "0"}, want: "-limit 0: want 1 or more"},
		{name: "bad admin", args: []string{"get", "a", "-admin", "ftp://x"}, want: "want HOST:PORT or an http:// URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := runRunContext(context.Background(), append([]string{"-admin", srv.URL}, tc.args...), &out, &errOut)
			switch {
			case tc.help:
				if !errors.Is(err, flag.ErrHelp) {
					t.Errorf("err = %v, want flag.ErrHelp", err)
				}
			case err == nil:
				t.Errorf("no error; want %q", tc.want)
			case !strings.Contains(err.Error(), tc.want):
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			if !strings.Contains(errOut.String(), tc.stderr) {
				t.Errorf("stderr does not hold %q:\n%s", tc.stderr, errOut.String())
			}
		})
	}
}

func TestFindRunCommand(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
		at   int
	}{
		{"word first", []string{"list", "-state", "failed"}, "list", 0},
		{"file before submit", []string{"-f", "p.yaml", "submit"}, "submit", 2},
		{"follow before logs", []string{"-f", "logs", "id", "step"}, "logs", 1},
		{"flag value named like a command", []string{"-pipeline", "get", "list"}, "list", 2},
		{"admin value named like a command", []string{"-admin", "list", "get", "x"}, "get", 2},
		{"json before get", []string{"-json", "get", "x"}, "get", 1},
		{"help skipped", []string{"-h", "-wait", "retry", "x"}, "retry", 2},
		{"none", []string{"-admin", "x", "frob"}, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, at, _ := findRunCommand(tc.args)
			got := ""
			if cmd != nil {
				got = cmd.name
			}
			if got != tc.want || at != tc.at {
				t.Errorf("findRunCommand(%q) = %q at %d, want %q at %d", tc.args, got, at, tc.want, tc.at)
			}
		})
	}
}
