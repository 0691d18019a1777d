package controlplane

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/infergate/infergate/config"
)

func TestParseRollout(t *testing.T) {
	defSteps := []Step{
		{Weight: 10, MinDuration: DefaultStepMinDuration, MinRequests: DefaultStepMinRequests},
		{Weight: 50, MinDuration: DefaultStepMinDuration, MinRequests: DefaultStepMinRequests},
	}
	tests := []struct {
		name  string
		value string
		want  Rollout
		err   string
	}{
		{
			name:  "defaults",
			value: `{}`,
			want:  Rollout{Steps: defSteps, MaxErrorRateIncrease: 0.01, MaxLatencyRatio: 1.5, Quantile: 0.95},
		},
		{
			name: "everything set",
			value: `{"steps":[{"weight":10,"minDuration":"30s","minRequests":100},{"weight":50,"minDuration":"1m","minRequests":200}],
				"maxErrorRateIncrease":0.02,"maxLatencyRatio":1.2,"quantile":0.99}`,
			want: Rollout{
				Steps:                []Step{{Weight: 10, MinDuration: 30 * time.Second, MinRequests: 100}, {Weight: 50, MinDuration: time.Minute, MinRequests: 200}},
				MaxErrorRateIncrease: 0.02, MaxLatencyRatio: 1.2, Quantile: 0.99,
			},
		},
		{
			name:  "step defaults",
			value: `{"steps":[{"weight":25}],"maxLatencyRatio":0,"maxErrorRateIncrease":0}`,
			want:  Rollout{Steps: []Step{{Weight: 25, MinDuration: time.Minute, MinRequests: 100}}, Quantile: 0.95},
		},
		{
			name:  "zero duration and requests",
			value: `{"steps":[{"weight":100,"minDuration":"0s","minRequests":0}]}`,
			want:  Rollout{Steps: []Step{{Weight: 100}}, MaxErrorRateIncrease: 0.01, MaxLatencyRatio: 1.5, Quantile: 0.95},
		},
		{name: "not JSON", value: `steps: 10`, err: "not a rollout object: invalid character 's' looking for beginning of value"},
		{name: "empty", value: ``, err: "not a rollout object: EOF"},
		{name: "null", value: `null`, err: "not a rollout object: null"},
		{name: "a list", value: `[]`, err: "not a rollout object: want an object, got array"},
		{name: "trailing data", value: `{} {}`, err: "not a rollout object: data after the object"},
		{name: "unknown field", value: `{"step":[]}`, err: `not a rollout object: unknown field "step"`},
		{name: "unknown step field", value: `{"steps":[{"weight":5,"duration":"1m"}]}`, err: `not a rollout object: unknown field "duration"`},
		{name: "fractional weight", value: `{"steps":[{"weight":10.5}]}`, err: "not a rollout object: steps.weight: number 10.5 is not a whole number"},
		{name: "step not an object", value: `{"steps":[5]}`, err: "not a rollout object: steps: number is not an object"},
		{name: "duration as a number", value: `{"steps":[{"weight":10,"minDuration":30}]}`, err: "not a rollout object: steps.minDuration: number is not a string"},
		{name: "no steps", value: `{"steps":[]}`, err: "steps: empty: list one step at least, or leave steps out for the default"},
		{name: "too many steps", value: `{"steps":[` + strings.Repeat(`{"weight":1},`, 20) + `{"weight":1}]}`, err: "steps: 21 steps, more than 20"},
		{
			name:  "every problem of the steps",
			value: `{"steps":[{},{"weight":0},{"weight":101},{"weight":5,"minDuration":"30"},{"weight":5,"minDuration":"-1s"},{"weight":5,"minDuration":"25h"},{"weight":5,"minRequests":-1}]}`,
			err: `steps[0].weight: required; steps[1].weight: 0 is not between 1 and 100; steps[2].weight: 101 is not between 1 and 100; ` +
				`steps[3].minDuration: "30" is not a duration like "30s" or "2m"; steps[4].minDuration: "-1s" is not between 0s and 24h0m0s; ` +
				`steps[5].minDuration: "25h" is not between 0s and 24h0m0s; steps[6].minRequests: -1 is negative`,
		},
		{name: "error rate increase above 1", value: `{"maxErrorRateIncrease":1.5}`, err: "maxErrorRateIncrease: 1.5 is not between 0 and 1 (0.01 is one percentage point)"},
		{name: "negative error rate increase", value: `{"maxErrorRateIncrease":-0.1}`, err: "maxErrorRateIncrease: -0.1 is not between 0 and 1 (0.01 is one percentage point)"},
		{name: "latency ratio below 1", value: `{"maxLatencyRatio":0.5}`, err: "maxLatencyRatio: 0.5 is neither 0 (no latency gate) nor at least 1"},
		{name: "quantile 0", value: `{"quantile":0}`, err: "quantile: 0 is not in (0, 1] (0.95 is the 95th percentile)"},
		{name: "quantile in percent", value: `{"quantile":99}`, err: "quantile: 99 is not in (0, 1] (0.95 is the 95th percentile)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRollout(tc.value)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("rollout (-want +got):\n%s", diff)
			}
		})
	}
}

func TestApplyRejectsABadRollout(t *testing.T) {
	d, _ := newDeployments(t, Options{})
	apply(t, d, false, decl("iris", "v1"))
	_, err := d.Apply([]config.Model{decl("iris", "v2", annotate(config.AnnotationRollout, `{"steps":[{"weight":0}]}`))}, false)
	readyAll(t, d)
	want := "iris.yaml#1: metadata.annotations[infergate.io/rollout]: steps[0].weight: 0 is not between 1 and 100"
	if !errors.Is(err, ErrInvalid) || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
	if ms := modelState(t, d, "iris"); len(ms.Revisions) != 1 {
		t.Fatalf("a refused apply made revisions %v", revNames(ms))
	}
}

// FuzzParseRollout checks that ParseRollout never panics and that what it
// accepts is in range and survives a JSON round trip.
func FuzzParseRollout(f *testing.F) {
	for _, s := range []string{
		`{}`, testPolicy, `{"steps":[{"weight":100,"minDuration":"0s","minRequests":0}],"maxLatencyRatio":0}`,
		`{"steps":[]}`, `null`, `{"quantile":1e400}`, `{"steps":[{"weight":5,"minDuration":"1h30m"}]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		r, err := ParseRollout(value)
		if err != nil {
			return
		}
		if len(r.Steps) == 0 || len(r.Steps) > MaxRolloutSteps {
			t.Fatalf("%d steps", len(r.Steps))
		}
		for _, s := range r.Steps {
			if s.Weight < 1 || s.Weight > 100 || s.MinDuration < 0 || s.MinDuration > MaxStepDuration || s.MinRequests < 0 {
				t.Fatalf("step %+v out of range", s)
			}
		}
		if !(r.Quantile > 0 && r.Quantile <= 1) || !(r.MaxErrorRateIncrease >= 0 && r.MaxErrorRateIncrease <= 1) ||
			!(r.MaxLatencyRatio == 0 || r.MaxLatencyRatio >= 1) {
			t.Fatalf("gates %+v out of range", r)
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseRollout(string(b))
		if err != nil {
			t.Fatalf("ParseRollout(%s) of its own output: %v", b, err)
		}
		if diff := cmp.Diff(r, back); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	})
}
