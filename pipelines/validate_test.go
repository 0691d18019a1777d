package pipelines

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// doc builds a pipeline document around steps (and finally steps).
func doc(params, steps, finally string) string {
	s := "apiVersion: infergate.io/v1alpha1\nkind: Pipeline\nmetadata: {name: v}\nspec:\n"
	if params != "" {
		s += "  params:\n" + indent(params, 4)
	}
	s += "  steps:\n" + indent(steps, 4)
	if finally != "" {
		s += "  finally:\n" + indent(finally, 4)
	}
	return s
}

func indent(s string, n int) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.Trim(s, "\n"), "\n") {
		b.WriteString(strings.Repeat(" ", n) + l + "\n")
	}
	return b.String()
}

func TestValidationErrors(t *testing.T) {
	train := `- name: train
  command: [sh, -c, 'echo 0.9 > {{.Outputs.acc}}']
  outputs:
    params: {acc: {type: double}}
    artifacts: [model]
`
	cases := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "cycle through dependsOn",
			yaml: doc("", "- {name: a, command: [\"true\"], dependsOn: [c]}\n- {name: b, command: [\"true\"], dependsOn: [a]}\n- {name: c, command: [\"true\"], dependsOn: [b]}", ""),
			want: []string{"p.yaml: step b: dependsOn[0]: dependency cycle: a → c → b → a"},
		},
		{
			name: "cycle through inputs",
			yaml: doc("", `- name: a
  command: ["true"]
  inputs: {in: {from: steps.b.outputs.out}}
  outputs: {params: {out: {type: int}}}
- name: b
  command: ["true"]
  inputs: {in: {from: steps.a.outputs.out}}
  outputs: {params: {out: {type: int}}}`, ""),
			want: []string{"p.yaml: step b: inputs.in.from: dependency cycle: a → b → a"},
		},
		{
			name: "self dependency",
			yaml: doc("", "- {name: a, command: [\"true\"], dependsOn: [a]}", ""),
			want: []string{"p.yaml: step a: dependsOn[0]: a step cannot depend on itself"},
		},
		{
			name: "typos",
			yaml: doc("epochs: {type: int, default: 3}", train+`- name: eval
  comand: [x]
  command: [sh, -c, 'eval {{.Params.epoch}} {{.Inputs.modle}} {{.Outputs.x}}']
  inputs:
    model: {from: steps.trian.outputs.model}
    acc: {from: steps.train.outputs.accuracy}
    e: {from: param.epochs}
  dependsOn: [trai]`, ""),
			want: []string{
				"p.yaml: step eval: comand: unknown field (did you mean command?)",
			},
		},
		{
			name: "typos once decoded",
			yaml: doc("epochs: {type: int, default: 3}", train+`- name: eval
  command: [sh, -c, 'eval {{.Params.epoch}} {{.Inputs.modle}} {{.Outputs.x}} {{.Nope}}']
  inputs:
    model: {from: steps.trian.outputs.model}
    acc: {from: steps.train.outputs.accuracy}
    e: {from: param.epochs}
  dependsOn: [trai]`, ""),
			want: []string{
				`p.yaml: step eval: inputs.acc.from: step train declares no output accuracy (have: acc, model)`,
				`p.yaml: step eval: inputs.e.from: "param.epochs" is not a reference (want params.NAME, steps.STEP.outputs.NAME or item)`,
				`p.yaml: step eval: inputs.model.from: no step trian (did you mean train?)`,
				`p.yaml: step eval: command[2]: template "eval {{.Params.epoch}} {{.Inputs.modle}} {{.Outputs.x}} {{.Nope}}": .Params.epoch: no such param (did you mean epochs?); .Inputs.modle: the step has no input modle (did you mean model?); .Outputs.x: the step declares no output x; .Nope is not a template field (want one of .Params, .Inputs, .Outputs, .OutputDir, .StepDir, .Item, .Iteration, .RunID, .Attempt, .Status)`,
				`p.yaml: step eval: dependsOn[0]: no step trai (did you mean train?)`,
			},
		},
		{
			name: "type mismatches",
			yaml: doc(`rate: {type: double, default: fast}
name: {type: string, default: yes}
count: {type: int, default: 1.5}
label: {type: string, default: x}`, train+`- name: use
  command: ["true"]
  inputs:
    a: {from: steps.train.outputs.acc, type: int}
    m: {from: steps.train.outputs.model, type: string}
    v: {value: abc, type: int}
  when: steps.train.outputs.acc > params.label
- name: loop
  parallelFor: {items: params.label}
  command: ["true"]
- name: cond2
  when: params.count
  command: ["true"]
- name: cond3
  when: steps.train.outputs.model == "x"
  command: ["true"]`, ""),
			want: []string{
				`p.yaml: spec.params.count.default: type mismatch: want a int, got double 1.5`,
				`p.yaml: spec.params.name.default: type mismatch: want a string, got bool true (quote it)`,
				`p.yaml: spec.params.rate.default: type mismatch: want a double, got string "fast"`,
				`p.yaml: step use: inputs.a.type: type mismatch: steps.train.outputs.acc is a double, the input says int`,
				`p.yaml: step use: inputs.m.type: type mismatch: steps.train.outputs.model is an artifact, the input says string`,
				`p.yaml: step use: inputs.v.value: type mismatch: want a int, got string "abc"`,
				`p.yaml: step use: when: "steps.train.outputs.acc > params.label": at 25: type mismatch: > compares double with string (want two numbers or two strings)`,
				`p.yaml: step loop: parallelFor.items: type mismatch: params.label is a string, want a list`,
				`p.yaml: step cond2: when: "params.count": type mismatch: the condition is a int, want a bool`,
				`p.yaml: step cond3: when: "steps.train.outputs.model == \"x\"": at 1: steps.train.outputs.model: an artifact is a file, not a value to compare`,
			},
		},
		{
			name: "duplicates",
			yaml: doc("", `- {name: a, command: ["true"], outputs: {params: {x: {type: int}}, artifacts: [x, z, z]}}
- {name: a, command: ["true"]}`, `- {name: a, command: ["true"]}`),
			want: []string{
				"p.yaml: step a: name: duplicate step name a",
				"p.yaml: finally step a: name: duplicate step name a",
				"p.yaml: step a: outputs.artifacts[0]: x is declared both as a parameter and as an artifact",
				"p.yaml: step a: outputs.artifacts[2]: duplicate artifact z",
			},
		},
		{
			name: "duplicate keys",
			yaml: doc("", "- {name: a, command: [\"true\"], command: [\"false\"]}", ""),
			want: []string{`p.yaml: invalid YAML: unmarshal errors: line 6: key "command" already set in map`},
		},
		{
			name: "bad conditions, templates and bounds",
			yaml: doc("", `- name: a
  command: [sh, '{{.Params', '{{.Item}}', '{{.Status}}']
  when: steps.b.outputs.x = 1
  retry: {limit: -1, backoff: 2s, factor: 0.5, maxBackoff: 1s}
  timeout: soon
  parallelFor: {items: [1], parallelism: -2}
  env: {INFERGATE_X: a, "1x": b}
- name: b
  command: ["true"]
  outputs: {params: {x: {type: int}}}
- name: c
  command: []
  dependsOn: [f]
- name: Bad_Name
  command: ["true"]`, `- name: f
  command: ["true"]`),
			want: []string{
				`p.yaml: step a: timeout: want a duration such as "30s" or "5m", got "soon"`,
			},
		},
		{
			name: "bad conditions, templates and bounds once decoded",
			yaml: doc("", `- name: a
  command: [sh, '{{.Params', '{{.Status}}', '{{.Item.x}}']
  when: steps.b.outputs.x = 1
  retry: {limit: -1, backoff: 2s, factor: 0.5, maxBackoff: 1s}
  parallelFor: {items: [1], parallelism: -2}
  env: {INFERGATE_X: a, "1x": b}
- name: b
  command: ["true", '{{.Item}}']
  outputs: {params: {x: {type: int}}}
- name: c
  command: []
  dependsOn: [f]
- name: Bad_Name
  command: ["true"]`, `- name: f
  command: ["true"]`),
			want: []string{
				`p.yaml: step Bad_Name: name: "Bad_Name" is not a step name (1-63 lowercase letters, digits, '_' and '-', starting with a letter)`,
				`p.yaml: step a: command[1]: bad template "{{.Params": 1: unclosed action`,
				`p.yaml: step a: command[2]: template "{{.Status}}": .Status (the run's status) is set only in finally steps`,
				`p.yaml: step a: env.1x: "1x" is not an environment variable name`,
				`p.yaml: step a: env.INFERGATE_X: INFERGATE_ variables are set by the engine`,
				`p.yaml: step a: when: bad condition "steps.b.outputs.x = 1": at 19: "=" is not an operator (want ==, &&, ||)`,
				`p.yaml: step a: retry.limit: -1 is not within 0-100`,
				`p.yaml: step a: retry.factor: 0.5 is not within 1-100`,
				`p.yaml: step a: retry.maxBackoff: 1s is less than backoff 2s`,
				`p.yaml: step a: parallelFor.parallelism: -2 is negative`,
				`p.yaml: step b: command[1]: template "{{.Item}}": .Item is set only in a parallelFor step`,
				`p.yaml: step c: command: missing: a step runs a command (a list: program and arguments)`,
				`p.yaml: step c: dependsOn[0]: step f is a finally step: a step cannot depend on it (finally steps run after every step)`,
			},
		},
		{
			name: "document",
			yaml: "apiVersion: infergate.io/v1\nkind: Pipelin\nmetadata: {name: Bad.Name}\nspec: {steps: []}\n",
			want: []string{
				`p.yaml: apiVersion: "infergate.io/v1" is not infergate.io/v1alpha1`,
				`p.yaml: kind: "Pipelin" is not Pipeline`,
			},
		},
		{
			name: "document once decoded",
			yaml: "apiVersion: infergate.io/v1alpha1\nkind: Pipeline\nmetadata: {name: Bad.Name}\nspec: {steps: []}\n",
			want: []string{
				`p.yaml: metadata.name: "Bad.Name" is not a DNS label (1-63 lowercase letters, digits and '-', starting and ending with a letter or digit)`,
				`p.yaml: spec.steps: a pipeline has at least one step`,
			},
		},
		{
			name: "yaml 1.1 key",
			yaml: doc("n: {type: int, default: 1}", "- {name: a, command: [\"true\"]}", ""),
			want: []string{`p.yaml: spec.params.false: YAML reads an unquoted key y, n, yes, no, on, off, true or false as the boolean false: quote the name ("n": ...)`},
		},
		{
			name: "syntax",
			yaml: "apiVersion: [\n",
			want: []string{`p.yaml: invalid YAML: line 1: did not find expected node content`},
		},
		{
			name: "finally references",
			yaml: doc("", "- {name: a, command: [\"true\"], when: 'run.status == \"failed\"'}", "- {name: f, command: [\"true\"], inputs: {s: {from: run.status}}}"),
			want: []string{
				`p.yaml: step a: when: "run.status == \"failed\"": at 1: run.status: run.status is known only to finally steps`,
				`p.yaml: finally step f: inputs.s.from: run.status is not an input (use {{.Status}} or INFERGATE_RUN_STATUS)`,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSource("p.yaml", []byte(tc.yaml), "")
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
			var first *Error
			if !errors.As(err, &first) {
				t.Errorf("error %v holds no *Error", err)
			}
			got := strings.Split(err.Error(), "\n")
			for _, w := range tc.want {
				found := false
				for _, g := range got {
					if g == w || (strings.HasSuffix(w, "...") && strings.HasPrefix(g, strings.TrimSuffix(w, "..."))) {
						found = true
					}
				}
				if !found {
					t.Errorf("missing error:\n  %s\ngot:\n  %s", w, strings.Join(got, "\n  "))
				}
			}
		})
	}
}

func TestTooManyErrors(t *testing.T) {
	var steps strings.Builder
	for i := range 30 {
		fmt.Fprintf(&steps, "- {name: s%d, command: [\"true\"], dependsOn: [nope]}\n", i)
	}
	_, err := Parse([]byte(doc("", steps.String(), "")))
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxErrors+1 || lines[maxErrors] != "pipelines: and 10 more problems" {
		t.Errorf("%d lines, last %q", len(lines), lines[len(lines)-1])
	}
}

func TestParams(t *testing.T) {
	p := mustParse(t, doc(`epochs: {type: int, default: 3}
lr: {type: double}
rates: {type: list, default: [1, 2]}
fast: {type: bool, default: false}`, "- {name: a, command: [\"true\"]}", ""))
	got, err := resolveParams(p, map[string]string{"lr": "0.5", "rates": `["a", {"b": 1}]`, "fast": "true"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"epochs": int64(3), "lr": 0.5, "rates": []any{"a", map[string]any{"b": int64(1)}}, "fast": true}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("params %v, want %v", got, want)
	}
	_, err = resolveParams(p, map[string]string{"epochs": "three", "rates": "1,2", "lrr": "1"})
	for _, w := range []string{
		`TestParams.yaml: params.lrr: the pipeline has no such param (did you mean lr?)`,
		`TestParams.yaml: params.epochs: want an int, got "three"`,
		`TestParams.yaml: params.lr: missing: the param has no default, give a double`,
		`TestParams.yaml: params.rates: want a JSON array, got "1,2"`,
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v does not say %q", err, w)
		}
	}
	te := newTestEnv(t, nil)
	if _, err := te.e.Submit(t.Context(), p, map[string]string{}, SubmitOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("submit without lr: %v, want ErrInvalid", err)
	}
}

// TestSpecRoundTrip: the stored form of a pipeline (its JSON) parses to
// the same pipeline.
func TestSpecRoundTrip(t *testing.T) {
	for _, yaml := range []string{dagYAML, cacheYAML, sleeperYAML} {
		p := mustParse(t, yaml)
		b, err := jsonMarshal(p)
		if err != nil {
			t.Fatal(err)
		}
		q, err := Parse(b)
		if err != nil {
			t.Fatalf("stored form does not parse: %v\n%s", err, b)
		}
		b2, _ := jsonMarshal(q)
		if string(b) != string(b2) {
			t.Errorf("round trip changed the pipeline:\n%s\n%s", b, b2)
		}
	}
}

// TestExamples: the example pipelines parse.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../examples/pipelines/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no example pipelines")
	}
	for _, f := range files {
		if _, err := ParseFile(f); err != nil {
			t.Errorf("%v", err)
		}
	}
	if _, err := os.Stat("../examples/pipelines"); err != nil {
		t.Fatal(err)
	}
}
