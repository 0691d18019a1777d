package pipelines

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const cacheYAML = `
apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: cache}
spec:
  params:
    salt: {type: string, default: a}
  steps:
    - name: make
      command: [sh, -c, 'date +%s%N > outputs/params/stamp; echo "data {{.Params.salt}}" > outputs/artifacts/blob']
      outputs:
        params: {stamp: {type: string}}
        artifacts: [blob]
    - name: use
      command: [sh, -c, 'cat {{.Inputs.blob}} > outputs/artifacts/copy; date +%s%N >> outputs/artifacts/copy']
      inputs: {blob: {from: steps.make.outputs.blob}}
      outputs: {artifacts: [copy]}
      cache: false
`

func TestCaching(t *testing.T) {
	te := newTestEnv(t, nil)
	p := mustParse(t, cacheYAML)
	first := te.run(p, nil, SubmitOptions{})
	wantState(t, first, RunSucceeded)
	second := te.run(p, nil, SubmitOptions{})
	wantState(t, second, RunSucceeded)
	m1, m2 := step(t, first, "make"), step(t, second, "make")
	if m2.State != StepCached || len(m2.Attempts) != 0 {
		t.Fatalf("second run's make: %s with %d attempts, want cached", m2.State, len(m2.Attempts))
	}
	if want := "run " + string(first.ID) + " step make"; m2.CachedFrom != want || !strings.Contains(m2.Reason, want) {
		t.Errorf("cachedFrom %q reason %q, want %q", m2.CachedFrom, m2.Reason, want)
	}
	if diff := cmp.Diff(m1.Outputs, m2.Outputs); diff != "" {
		t.Errorf("cached outputs differ (-first +second):\n%s", diff)
	}
	if m1.CacheKey == "" || m1.CacheKey != m2.CacheKey {
		t.Errorf("cache keys %q and %q", m1.CacheKey, m2.CacheKey)
	}
	// cache: false runs every time and records no key.
	if u := step(t, second, "use"); u.State != StepSucceeded || u.CacheKey != "" {
		t.Errorf("second run's use: %s key %q, want succeeded without a key", u.State, u.CacheKey)
	}
	// Off for one run: make runs again, with a new stamp.
	third := te.run(p, nil, SubmitOptions{DisableCache: true})
	if m3 := step(t, third, "make"); m3.State != StepSucceeded || m3.Outputs.Params["stamp"] == m1.Outputs.Params["stamp"] {
		t.Errorf("run without cache: make %s stamp %v (first %v)", m3.State, m3.Outputs.Params["stamp"], m1.Outputs.Params["stamp"])
	}
	// Another parameter value is another key.
	fourth := te.run(p, map[string]string{"salt": "b"}, SubmitOptions{})
	if m4 := step(t, fourth, "make"); m4.State != StepSucceeded || m4.CacheKey == m1.CacheKey {
		t.Errorf("run with salt b: make %s key %s", m4.State, m4.CacheKey)
	}
	// A cached artifact that is gone is a miss.
	if err := os.Remove(m1.Outputs.Artifacts["blob"].Path); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(step(t, third, "make").Outputs.Artifacts["blob"].Path); err != nil {
		t.Fatal(err)
	}
	fifth := te.run(p, nil, SubmitOptions{})
	if m5 := step(t, fifth, "make"); m5.State != StepSucceeded {
		t.Errorf("run after the artifact was removed: make %s (%s), want succeeded", m5.State, m5.CachedFrom)
	}
}

func TestCachingOffGlobally(t *testing.T) {
	te := newTestEnv(t, func(o *Options) { o.DisableCache = true })
	p := mustParse(t, cacheYAML)
	te.run(p, nil, SubmitOptions{})
	second := te.run(p, nil, SubmitOptions{})
	if m := step(t, second, "make"); m.State != StepSucceeded || m.CacheKey == "" {
		t.Errorf("make %s key %q, want succeeded, its key recorded", m.State, m.CacheKey)
	}
}

func TestConditions(t *testing.T) {
	p := mustParse(t, `
apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: cond}
spec:
  params:
    threshold: {type: double, default: 0.9}
  steps:
    - name: eval
      command: [sh, -c, 'echo 0.8 > outputs/params/accuracy']
      outputs: {params: {accuracy: {type: double}}}
    - name: register
      when: steps.eval.outputs.accuracy >= params.threshold && !(params.threshold < 0)
      command: ["true"]
    - name: deploy
      dependsOn: [register]
      command: ["true"]
    - name: alert
      when: steps.eval.outputs.accuracy < params.threshold
      command: ["true"]
`)
	te := newTestEnv(t, nil)
	run := te.run(p, nil, SubmitOptions{})
	wantState(t, run, RunSucceeded)
	wantSteps(t, run, map[string]string{
		"eval":     "succeeded ",
		"register": `skipped condition "steps.eval.outputs.accuracy >= params.threshold && !(params.threshold < 0)" is false`,
		"deploy":   "skipped not run: step register was skipped",
		"alert":    "succeeded ",
	})
	run = te.run(p, map[string]string{"threshold": "0.5"}, SubmitOptions{})
	// register and deploy may reuse alert's outputs of the first run: the
	// same command with the same (no) inputs.
	for name, w := range map[string]StepState{"register": StepSucceeded, "deploy": StepSucceeded, "alert": StepSkipped} {
		if s := step(t, run, name); s.State != w && !(w == StepSucceeded && s.State == StepCached) {
			t.Errorf("threshold 0.5: step %s %s, want %s", name, s.State, w)
		}
	}
}

func TestParallelForFanIn(t *testing.T) {
	p := mustParse(t, `
apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: fan}
spec:
  params:
    xs: {type: list, default: [1, 2, 3, 4]}
  steps:
    - name: square
      parallelFor: {items: params.xs, parallelism: 2}
      command: [sh, -c, 'echo $(( {{.Item}} * {{.Item}} )) > outputs/params/sq; echo "item {{.Item}} of $INFERGATE_ITERATION" > outputs/artifacts/note']
      outputs:
        params: {sq: {type: int}}
        artifacts: [note]
    - name: sum
      command: [sh, -c, 'echo "{{.Inputs.sqs}}" > outputs/params/list; cat {{range .Inputs.notes}}{{.}} {{end}} > outputs/artifacts/all']
      inputs:
        sqs: {from: steps.square.outputs.sq}
        notes: {from: steps.square.outputs.note}
      outputs:
        params: {list: {type: list}}
        artifacts: [all]
    - name: again
      parallelFor: {items: steps.sum.outputs.list}
      command: [sh, -c, 'echo {{.Item}} > outputs/params/v']
      outputs: {params: {v: {type: int}}}
    - name: objects
      parallelFor: {items: [{lr: 0.1, name: a}, {lr: 0.01, name: b}]}
      command: [sh, -c, 'echo "{{.Item.name}}={{.Item.lr}}" > outputs/params/v']
      outputs: {params: {v: {type: string}}}
`)
	te := newTestEnv(t, nil)
	run := te.run(p, nil, SubmitOptions{})
	wantState(t, run, RunSucceeded)
	sq := step(t, run, "square")
	if diff := cmp.Diff([]any{int64(1), int64(4), int64(9), int64(16)}, sq.Outputs.Params["sq"]); diff != "" {
		t.Errorf("square's fan-in (-want +got):\n%s", diff)
	}
	if len(sq.Iterations) != 4 || sq.Iterations[2].Item != int64(3) || sq.Iterations[2].Outputs.Params["sq"] != int64(9) {
		t.Errorf("square's iterations: %+v", sq.Iterations)
	}
	sum := step(t, run, "sum")
	if diff := cmp.Diff([]any{int64(1), int64(4), int64(9), int64(16)}, sum.Outputs.Params["list"]); diff != "" {
		t.Errorf("sum's list input (-want +got):\n%s", diff)
	}
	all, err := os.ReadFile(sum.Outputs.Artifacts["all"].Path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "item 1 of 0\nitem 2 of 1\nitem 3 of 2\nitem 4 of 3\n"; string(all) != want {
		t.Errorf("fan-in of artifacts: %q, want %q", all, want)
	}
	if diff := cmp.Diff([]any{int64(1), int64(4), int64(9), int64(16)}, step(t, run, "again").Outputs.Params["v"]); diff != "" {
		t.Errorf("items from an upstream list (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]any{"a=0.1", "b=0.01"}, step(t, run, "objects").Outputs.Params["v"]); diff != "" {
		t.Errorf("object items (-want +got):\n%s", diff)
	}
}

func TestFinallyAfterFailure(t *testing.T) {
	p := mustParse(t, `
apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: fin}
spec:
  steps:
    - name: ok
      command: [sh, -c, 'echo 5 > outputs/params/num']
      outputs: {params: {num: {type: int}}}
    - name: bad
      dependsOn: [ok]
      command: [sh, -c, 'echo boom >&2; exit 1']
    - name: never
      dependsOn: [bad]
      command: [sh, -c, 'echo 1 > outputs/params/x']
      outputs: {params: {x: {type: int}}}
  finally:
    - name: cleanup
      dependsOn: [bad]
      when: run.status == "failed"
      command: [sh, -c, 'echo "{{.Status}} n={{.Inputs.num}}" > outputs/params/msg']
      inputs: {num: {from: steps.ok.outputs.num}}
      outputs: {params: {msg: {type: string}}}
    - name: needs-never
      command: [sh, -c, 'echo {{.Inputs.x}}']
      inputs: {x: {from: steps.never.outputs.x}}
    - name: last
      dependsOn: [cleanup]
      command: [sh, -c, 'grep -q "\"bad\": *\"failed\"" "$INFERGATE_INPUTS" || { cat "$INFERGATE_INPUTS"; exit 1; }']
`)
	te := newTestEnv(t, nil)
	run := te.run(p, nil, SubmitOptions{})
	wantState(t, run, RunFailed)
	if want := "step bad failed: exit code 1: boom"; run.Reason != want {
		t.Errorf("run reason %q, want %q", run.Reason, want)
	}
	wantSteps(t, run, map[string]string{
		"ok":          "succeeded ",
		"bad":         "failed exit code 1: boom",
		"never":       "skipped not run: step bad failed",
		"cleanup":     "succeeded ",
		"needs-never": "skipped not run: step never was skipped",
		"last":        "succeeded ",
	})
	if got := step(t, run, "cleanup").Outputs.Params["msg"]; got != "failed n=5" {
		t.Errorf("cleanup wrote %q", got)
	}
	if !step(t, run, "cleanup").Finally {
		t.Error("cleanup is not marked finally")
	}
}

func TestFailedFinallyFailsRun(t *testing.T) {
	p := mustParse(t, `
apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: fin2}
spec:
  steps:
    - {name: ok, command: ["true"]}
  finally:
    - {name: notify, command: ["false"]}
`)
	te := newTestEnv(t, nil)
	run := te.run(p, nil, SubmitOptions{})
	wantState(t, run, RunFailed)
	if want := "finally step notify failed: exit code 1"; run.Reason != want {
		t.Errorf("run reason %q, want %q", run.Reason, want)
	}
}

func TestOutputsChecked(t *testing.T) {
	p := mustParse(t, `
apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: outs}
spec:
  steps:
    - name: missing
      command: [sh, -c, 'echo 1 > outputs/params/a']
      outputs:
        params: {a: {type: int}, b: {type: double}}
        artifacts: [model]
    - name: malformed
      command: [sh, -c, 'echo twelve > outputs/params/num; echo "[1," > outputs/params/l; echo maybe > outputs/params/b']
      outputs:
        params: {num: {type: int}, l: {type: list}, b: {type: bool}}
`)
	te := newTestEnv(t, nil)
	run := te.run(p, nil, SubmitOptions{})
	wantState(t, run, RunFailed)
	want := map[string][]string{
		"missing": {
			"output b: outputs/params/b is missing (the step must write its double value there)",
			"output model: outputs/artifacts/model is missing (the step must write that file or directory)",
		},
		"malformed": {
			`output b: outputs/params/b is malformed: want a bool (true or false), got "maybe\n"`,
			`output l: outputs/params/l is malformed: want a JSON array`,
			`output num: outputs/params/num is malformed: want an int, got "twelve\n"`,
		},
	}
	for name, subs := range want {
		s := step(t, run, name)
		if s.State != StepFailed || len(s.Attempts) != 1 || s.Attempts[0].ExitCode != 0 {
			t.Errorf("step %s: %s after %d attempts, want failed after an exit 0", name, s.State, len(s.Attempts))
		}
		for _, sub := range subs {
			if !strings.Contains(s.Reason, sub) {
				t.Errorf("step %s reason %q does not say %q", name, s.Reason, sub)
			}
		}
		log, _ := os.ReadFile(s.Attempts[0].Dir + "/log")
		if !strings.Contains(string(log), "infergate: output") {
			t.Errorf("step %s log %q does not name the output", name, log)
		}
	}
}

// TestExampleHello runs examples/pipelines/hello.yaml.
func TestExampleHello(t *testing.T) {
	p, err := ParseFile("../examples/pipelines/hello.yaml")
	if err != nil {
		t.Fatal(err)
	}
	te := newTestEnv(t, nil)
	run := te.run(p, nil, SubmitOptions{})
	wantState(t, run, RunSucceeded)
	if got := step(t, run, "total").Outputs.Params["sum"]; got != int64(33) {
		t.Errorf("total sum %v, want 1+4+9+16 + 3 rows = 33", got)
	}
	rep := step(t, run, "report")
	b, err := os.ReadFile(rep.Outputs.Artifacts["report"].Path)
	if err != nil || string(b) != "sum 33 reached 20\n" {
		t.Errorf("report %q (%v)", b, err)
	}
	run = te.run(p, map[string]string{"threshold": "40"}, SubmitOptions{})
	if s := step(t, run, "report"); s.State != StepSkipped {
		t.Errorf("report with threshold 40: %s", s.State)
	}
	if s := step(t, run, "prepare"); s.State != StepCached {
		t.Errorf("prepare in the second run: %s, want cached", s.State)
	}
}

func TestOutputsFromJSONArtifact(t *testing.T) {
	p := mustParse(t, `
apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: metrics}
spec:
  steps:
    - name: evaluate
      command: [sh, -c, 'echo "{\"accuracy\": 0.95, \"per_class\": {\"count\": 3}}" > {{.Outputs.metrics}}']
      outputs:
        artifacts: [metrics]
        params:
          accuracy: {type: double, artifact: metrics, key: accuracy}
          count: {type: int, artifact: metrics, key: per_class.count}
    - name: register
      when: steps.evaluate.outputs.accuracy >= 0.9 && steps.evaluate.outputs.count == 3
      command: ["true"]
    - name: typo
      dependsOn: [register]
      command: [sh, -c, 'echo "{\"acc\": 1}" > {{.Outputs.metrics}}']
      outputs:
        artifacts: [metrics]
        params:
          accuracy: {type: double, artifact: metrics, key: accuracy}
`)
	te := newTestEnv(t, nil)
	run := te.run(p, nil, SubmitOptions{})
	ev := step(t, run, "evaluate")
	if ev.Outputs.Params["accuracy"] != 0.95 || ev.Outputs.Params["count"] != int64(3) {
		t.Errorf("evaluate outputs %+v", ev.Outputs.Params)
	}
	if s := step(t, run, "register"); s.State != StepSucceeded {
		t.Errorf("register %s %s", s.State, s.Reason)
	}
	if s := step(t, run, "typo"); s.State != StepFailed || s.Reason != "output accuracy: artifact metrics: has no key accuracy (have: acc)" {
		t.Errorf("typo %s %q", s.State, s.Reason)
	}
	_, err := Parse([]byte(doc("", `- name: a
  command: ["true"]
  outputs:
    artifacts: [metrics]
    params:
      x: {type: double, artifact: metric, key: x}
      z: {type: double, key: x}
      w: {type: double, artifact: metrics, key: a..b}`, "")))
	for _, w := range []string{
		"step a: outputs.params.x.artifact: the step declares no output artifact metric (did you mean metrics?)",
		"step a: outputs.params.z.key: a key needs the artifact that holds it (artifact: NAME)",
		`step a: outputs.params.w.key: "a..b" is not a key (want a name, or names joined by dots for nested objects)`,
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v does not say %q", err, w)
		}
	}
}
