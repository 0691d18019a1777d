package pipelines

import (
	"bufio"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLogsFollow(t *testing.T) {
	te := newTestEnv(t, nil)
	// Attempt 1 prints a line, waits for the test's go-ahead file, fails;
	// attempt 2 succeeds.
	p := mustParse(t, `
apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: logs}
spec:
  params:
    gate: {type: string}
  steps:
    - name: talk
      command: [sh, -c, 'echo "attempt $INFERGATE_ATTEMPT says hello"; if [ "$INFERGATE_ATTEMPT" = 1 ]; then while [ ! -e {{.Params.gate}} ]; do sleep 0.02; done; echo bye >&2; exit 1; fi; echo done']
      retry: {limit: 1, backoff: 10ms}
`)
	gate := filepath.Join(t.TempDir(), "go")
	id, err := te.e.Submit(t.Context(), p, map[string]string{"gate": gate}, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := te.e.Logs(t.Context(), id, "talk", LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(rc)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func() string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the log ended early")
			}
			return l
		case <-time.After(waitLimit):
			t.Fatal("no log line")
		}
		return ""
	}
	if l := next(); l != "attempt 1 says hello" {
		t.Fatalf("first line %q", l)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	want := []string{"bye", "infergate: attempt 2", "attempt 2 says hello", "done"}
	if strings.Join(rest, "|") != strings.Join(want, "|") {
		t.Errorf("followed log %q, want %q", rest, want)
	}
	run := te.wait(id)
	wantState(t, run, RunSucceeded)

	// Without follow: the latest attempt, or the one asked for.
	for attempt, want := range map[int]string{0: "attempt 2 says hello\ndone\n", 1: "attempt 1 says hello\nbye\n", 2: "attempt 2 says hello\ndone\n"} {
		rc, err := te.e.Logs(t.Context(), id, "talk", LogOptions{Attempt: attempt})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(b) != want {
			t.Errorf("attempt %d log %q (%v), want %q", attempt, b, err, want)
		}
	}
	for _, tc := range []struct {
		run  RunID
		step string
		o    LogOptions
		want error
	}{
		{"nope-aaaaaaaa", "talk", LogOptions{}, ErrNotFound},
		{id, "walk", LogOptions{}, ErrNotFound},
		{id, "talk", LogOptions{Attempt: 3}, ErrNotFound},
		{id, "talk", LogOptions{Attempt: -1}, ErrInvalid},
	} {
		if _, err := te.e.Logs(t.Context(), tc.run, tc.step, tc.o); !errors.Is(err, tc.want) {
			t.Errorf("Logs(%s, %s, %+v) = %v, want %v", tc.run, tc.step, tc.o, err, tc.want)
		}
	}
}

func TestRetryRun(t *testing.T) {
	te := newTestEnv(t, nil)
	p := mustParse(t, `
apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: again}
spec:
  params:
    marker: {type: string}
  steps:
    - name: a
      command: [sh, -c, 'echo 1 > outputs/params/v']
      outputs: {params: {v: {type: int}}}
      cache: false
    - name: b
      command: [sh, -c, 'test -e {{.Params.marker}} && echo $(( {{.Inputs.v}} + 1 )) > outputs/params/v']
      inputs: {v: {from: steps.a.outputs.v}}
      outputs: {params: {v: {type: int}}}
    - name: c
      dependsOn: [b]
      command: ["true"]
      cache: false
  finally:
    - name: f
      command: [sh, -c, 'echo {{.Status}} > outputs/params/s']
      outputs: {params: {s: {type: string}}}
      cache: false
`)
	marker := filepath.Join(t.TempDir(), "marker")
	run := te.run(p, map[string]string{"marker": marker}, SubmitOptions{})
	wantState(t, run, RunFailed)
	if err := te.e.Retry(t.Context(), "nope-aaaaaaaa"); !errors.Is(err, ErrNotFound) {
		t.Errorf("retry of an unknown run: %v", err)
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := te.e.Retry(t.Context(), run.ID); err != nil {
		t.Fatal(err)
	}
	run = te.wait(run.ID)
	wantState(t, run, RunSucceeded)
	for name, attempts := range map[string]int{"a": 1, "b": 2, "c": 1, "f": 2} {
		s := step(t, run, name)
		if len(s.Attempts) != attempts || !s.State.ok() {
			t.Errorf("step %s: %s with %d attempts, want %d", name, s.State, len(s.Attempts), attempts)
		}
	}
	if got := step(t, run, "b").Outputs.Params["v"]; got != int64(2) {
		t.Errorf("b v = %v, want 2", got)
	}
	if got := step(t, run, "f").Outputs.Params["s"]; got != "succeeded" {
		t.Errorf("f saw %v, want succeeded", got)
	}
	if err := te.e.Retry(t.Context(), run.ID); !errors.Is(err, ErrConflict) {
		t.Errorf("retry of a succeeded run: %v, want ErrConflict", err)
	}
}

func TestList(t *testing.T) {
	te := newTestEnv(t, nil)
	ok := mustParse(t, doc("", "- {name: a, command: [\"true\"]}", ""))
	bad := mustParse(t, strings.Replace(doc("", "- {name: a, command: [\"false\"]}", ""), "name: v", "name: w", 1))
	var ids []RunID
	for _, p := range []*Pipeline{ok, bad, ok, ok} {
		run := te.run(p, nil, SubmitOptions{DisableCache: true})
		ids = append(ids, run.ID)
	}
	var got []RunID
	tok := ""
	for range 3 {
		page, err := te.e.List(t.Context(), ListOptions{PageSize: 3, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Runs {
			got = append(got, r.ID)
			if len(r.Steps) != 0 {
				t.Errorf("list returned steps")
			}
		}
		if tok = page.NextPageToken; tok == "" {
			break
		}
	}
	if len(got) != 4 || got[0] != ids[3] || got[3] != ids[0] {
		t.Errorf("listed %v, want %v newest first", got, ids)
	}
	page, err := te.e.List(t.Context(), ListOptions{State: RunFailed})
	if err != nil || len(page.Runs) != 1 || page.Runs[0].ID != ids[1] {
		t.Errorf("failed runs: %+v, %v", page, err)
	}
	page, err = te.e.List(t.Context(), ListOptions{Pipeline: "v"})
	if err != nil || len(page.Runs) != 3 {
		t.Errorf("runs of v: %+v, %v", page, err)
	}
	for _, o := range []ListOptions{{State: "done"}, {PageToken: "garbage"}, {PageSize: -1}} {
		if _, err := te.e.List(t.Context(), o); !errors.Is(err, ErrInvalid) {
			t.Errorf("List(%+v) = %v, want ErrInvalid", o, err)
		}
	}
}
