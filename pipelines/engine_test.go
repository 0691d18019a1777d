package pipelines

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/infergate/infergate/registry"
)

// dagYAML passes a parameter, an output parameter and an artifact down a
// small DAG: gen → (double, copy) → check.
const dagYAML = `
apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: dag}
spec:
  params:
    count: {type: int, default: 21}
    greeting: {type: string, default: hello}
  steps:
    - name: gen
      command: [sh, -c, 'echo {{.Params.count}} > {{.Outputs.count}} && printf "%s world" "{{.Params.greeting}}" > {{.Outputs.text}}']
      outputs:
        params: {count: {type: int}}
        artifacts: [text]
    - name: double
      command: [sh, -c, 'echo $(( {{.Inputs.count}} * 2 )) > outputs/params/n2']
      inputs:
        count: {from: steps.gen.outputs.count}
      outputs:
        params: {n2: {type: int}}
    - name: copy
      command: [sh, -c, 'mkdir -p "$INFERGATE_OUTPUTS/artifacts/dir" && cp "{{.Inputs.text}}" "$INFERGATE_OUTPUTS/artifacts/dir/t.txt" && echo ok']
      inputs:
        text: {from: steps.gen.outputs.text}
      outputs:
        artifacts: [dir]
    - name: check
      command: [sh, -c, 'test "$(cat {{.Inputs.dir}}/t.txt)" = "hello world" && echo "{{.Inputs.n2}}" > outputs/params/sum']
      inputs:
        n2: {from: steps.double.outputs.n2, type: double}
        dir: {from: steps.copy.outputs.dir}
      outputs:
        params: {sum: {type: double}}
`

func TestDAGPassesData(t *testing.T) {
	te := newTestEnv(t, nil)
	run := te.run(mustParse(t, dagYAML), nil, SubmitOptions{})
	wantState(t, run, RunSucceeded)
	if got := step(t, run, "double").Outputs.Params["n2"]; got != int64(42) {
		t.Errorf("double n2 = %#v, want 42", got)
	}
	if got := step(t, run, "check").Outputs.Params["sum"]; got != float64(42) {
		t.Errorf("check sum = %#v, want 42.0", got)
	}
	gen := step(t, run, "gen")
	text := gen.Outputs.Artifacts["text"]
	if text.Digest != "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9" || text.Size != 11 {
		t.Errorf("gen text = %+v, want the digest of \"hello world\"", text)
	}
	if text.Run != run.ID || text.Step != "gen" || text.Iteration != -1 {
		t.Errorf("gen text lineage = %+v", text)
	}
	dir := step(t, run, "copy").Outputs.Artifacts["dir"]
	want := registry.ManifestDigest([]registry.Artifact{{Name: "t.txt", Digest: text.Digest, Size: 11}})
	if !dir.Dir || dir.Digest != want {
		t.Errorf("copy dir = %+v, want a directory of digest %s", dir, want)
	}
	// The attempt's directory and its contract files.
	a := gen.Attempts[0]
	if want := filepath.Join(te.dir, "runs", string(run.ID), "gen", "attempt-1"); a.Dir != want {
		t.Errorf("attempt dir %s, want %s", a.Dir, want)
	}
	if a.State != StepSucceeded || a.ExitCode != 0 || a.StartTime.IsZero() || a.EndTime.Before(a.StartTime) {
		t.Errorf("attempt = %+v", a)
	}
	var in map[string]any
	b, err := os.ReadFile(filepath.Join(step(t, run, "check").Attempts[0].Dir, "inputs.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &in); err != nil {
		t.Fatal(err)
	}
	inputs := in["inputs"].(map[string]any)
	if got := inputs["parameters"].(map[string]any)["n2"]; got != float64(42) {
		t.Errorf("inputs.json parameters.n2 = %v", got)
	}
	art := inputs["artifacts"].(map[string]any)["dir"].(map[string]any)
	if art["path"] != dir.Path || art["digest"] != dir.Digest || art["step"] != "copy" {
		t.Errorf("inputs.json artifacts.dir = %v, want %+v", art, dir)
	}
	outs := in["outputs"].(map[string]any)["parameters"].(map[string]any)["sum"].(map[string]any)
	if outs["type"] != "double" || !strings.HasSuffix(outs["path"].(string), "/outputs/params/sum") {
		t.Errorf("inputs.json outputs.parameters.sum = %v", outs)
	}
	// Events: the run's, in order, with a step's.
	evs, err := te.reg.QueryEvents(t.Context(), registry.EventQuery{Kind: "run.*"})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	if diff := cmp.Diff([]string{"run.submitted", "run.started", "run.succeeded"}, kinds); diff != "" {
		t.Errorf("run events (-want +got):\n%s", diff)
	}
	stepEvs, err := te.reg.QueryEvents(t.Context(), registry.EventQuery{Kind: "step.succeeded"})
	if err != nil {
		t.Fatal(err)
	}
	if len(stepEvs) != 4 {
		t.Errorf("%d step.succeeded events, want 4", len(stepEvs))
	}
}

// nextTimer returns the duration of the next timer the engine makes that
// is not one of ignore (the log follower's polls, say).
func nextTimer(t *testing.T, c *fakeClock) time.Duration {
	t.Helper()
	select {
	case d := <-c.added:
		return d
	case <-time.After(waitLimit):
		t.Fatal("the engine made no timer")
	}
	return 0
}

func TestRetryBackoff(t *testing.T) {
	clk := newFakeClock()
	te := newTestEnv(t, func(o *Options) { o.Clock = clk })
	p := mustParse(t, `
apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: retries}
spec:
  steps:
    - name: flaky
      command: [sh, -c, 'echo "attempt $INFERGATE_ATTEMPT failing"; exit 3']
      retry: {limit: 3, backoff: 1s, factor: 2, maxBackoff: 3s}
    - name: after
      dependsOn: [flaky]
      command: ["true"]
`)
	id, err := te.e.Submit(t.Context(), p, nil, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Each failure waits its backoff on the clock: 1s, 2s, then 4s capped
	// at 3s; the test fires each timer, so no time passes.
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second} {
		if got := nextTimer(t, clk); got != want {
			t.Fatalf("backoff timer %s, want %s", got, want)
		}
		if n := clk.fire(want); n != 1 {
			t.Fatalf("fired %d timers of %s, want 1", n, want)
		}
	}
	run := te.wait(id)
	wantState(t, run, RunFailed)
	flaky := step(t, run, "flaky")
	if len(flaky.Attempts) != 4 {
		t.Fatalf("%d attempts, want 4 (1 + 3 retries): %+v", len(flaky.Attempts), flaky.Attempts)
	}
	for i, a := range flaky.Attempts {
		if a.Number != i+1 || a.State != StepFailed || a.ExitCode != 3 {
			t.Errorf("attempt %d = %+v, want failed with exit code 3", i+1, a)
		}
		if want := "exit code 3: attempt " + strconv.Itoa(i+1) + " failing"; a.Reason != want {
			t.Errorf("attempt %d reason %q, want %q", i+1, a.Reason, want)
		}
	}
	if want := "exit code 3: attempt 4 failing (after 4 attempts)"; flaky.State != StepFailed || flaky.Reason != want {
		t.Errorf("flaky = %s %q, want failed %q", flaky.State, flaky.Reason, want)
	}
	if want := "step flaky failed: exit code 3: attempt 4 failing (after 4 attempts)"; run.Reason != want {
		t.Errorf("run reason %q, want %q", run.Reason, want)
	}
	if a := step(t, run, "after"); a.State != StepSkipped || a.Reason != "not run: step flaky failed" {
		t.Errorf("after = %s %q, want skipped", a.State, a.Reason)
	}
	evs, err := te.reg.QueryEvents(t.Context(), registry.EventQuery{Kind: "step.retrying"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || !strings.Contains(evs[0].Message, "retry 1 of 3 in 1s: exit code 3") {
		t.Errorf("retrying events: %d, first %q", len(evs), evs[0].Message)
	}
}

func TestBackoff(t *testing.T) {
	p := RetryPolicy{Backoff: Duration(time.Second), Factor: 3, MaxBackoff: Duration(20 * time.Second)}
	for n, want := range map[int]time.Duration{1: time.Second, 2: 3 * time.Second, 3: 9 * time.Second, 4: 20 * time.Second, 1000: 20 * time.Second} {
		if got := backoff(p, n); got != want {
			t.Errorf("backoff(%d) = %s, want %s", n, got, want)
		}
	}
}
