package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/infergate/infergate/config"
	"github.com/infergate/infergate/router"
)

// testPolicy is the rollout most tests run: two steps, 30s then 1m, 100
// requests each, the default gates.
const testPolicy = `{"steps":[{"weight":10,"minDuration":"30s","minRequests":100},{"weight":50,"minDuration":"1m","minRequests":100}]}`

// fakeStats holds a router.Stats per revision, as the gateway does.
type fakeStats map[string]*router.Stats

// load is requests a revision answers before a Tick.
type load struct {
	ok, errs, clientErrs int
	latency              time.Duration
}

func (f fakeStats) add(rev string, l load) {
	s := f[rev]
	if s == nil {
		s = new(router.Stats)
		f[rev] = s
	}
	for range l.ok {
		s.Record(l.latency, router.OutcomeOK)
	}
	for range l.errs {
		s.Record(l.latency, router.OutcomeServerError)
	}
	for range l.clientErrs {
		s.Record(time.Millisecond, router.OutcomeClientError)
	}
}

func (f fakeStats) read(rev string) router.Counts {
	if s := f[rev]; s != nil {
		return s.Snapshot()
	}
	return router.Counts{}
}

// fast and slow are latencies; healthy and failing loads of 100 requests.
const (
	fast = 10 * time.Millisecond
	slow = 100 * time.Millisecond
)

var (
	stable900 = load{ok: 900, latency: fast}
	canary100 = load{ok: 100, latency: fast}
)

// rstep is one moment of a rollout test: the clock moves by after, the
// revisions answer their loads, then do runs, or Tick when do is nil.
type rstep struct {
	after          time.Duration
	canary, stable load
	do             func(d *Deployments) error
	verdicts       []Verdict // Tick's decisions, or nil for none
	state          RolloutState
	step           int
	weight         int64 // the canary's percent of the traffic
}

// startRollout deploys iris v1, then v2 with the given rollout policy.
func startRollout(t *testing.T, policy string, opts Options) (*Deployments, *fakeClock) {
	t.Helper()
	d, clk := newDeployments(t, opts)
	apply(t, d, false, decl("iris", "v1", annotate(config.AnnotationRollout, policy)))
	if rs, err := d.RolloutStatus("iris"); err != nil || rs.State != "" {
		t.Fatalf("a first revision started a rollout: %+v, %v", rs, err)
	}
	apply(t, d, false, decl("iris", "v2", annotate(config.AnnotationRollout, policy), canary(70)))
	return d, clk
}

func TestRolloutEngine(t *testing.T) {
	tick := func(verdicts ...Verdict) []Verdict { return verdicts }
	open := rstep{state: RolloutProgressing, step: 1, weight: 10} // the first Tick opens the window
	tests := []struct {
		name   string
		policy string
		steps  []rstep
		reason string // in the last decision
	}{
		{
			name:   "advance then promote",
			policy: testPolicy,
			steps: []rstep{
				open,
				{after: 30 * time.Second, canary: canary100, stable: stable900, verdicts: tick(VerdictAdvance), state: RolloutProgressing, step: 2, weight: 50},
				{after: time.Minute, canary: canary100, stable: canary100, verdicts: tick(VerdictPromote), state: RolloutPromoted, step: 2, weight: 100},
				{after: time.Minute, canary: canary100, state: RolloutPromoted, step: 2, weight: 100},
			},
			reason: "step 2 of 2 passed: iris-00002 promoted",
		},
		{
			name:   "waits for minDuration",
			policy: testPolicy,
			steps: []rstep{
				open,
				{after: 10 * time.Second, canary: load{ok: 500, latency: fast}, stable: stable900, state: RolloutProgressing, step: 1, weight: 10},
				{after: 19 * time.Second, state: RolloutProgressing, step: 1, weight: 10},
				{after: time.Second, verdicts: tick(VerdictAdvance), state: RolloutProgressing, step: 2, weight: 50},
			},
		},
		{
			name:   "waits for minRequests",
			policy: testPolicy,
			steps: []rstep{
				open,
				{after: time.Hour, canary: load{ok: 99, latency: fast}, stable: stable900, state: RolloutProgressing, step: 1, weight: 10},
				{after: time.Second, canary: load{ok: 1, latency: fast}, verdicts: tick(VerdictAdvance), state: RolloutProgressing, step: 2, weight: 50},
			},
		},
		{
			name:   "the next step counts from its own start",
			policy: testPolicy,
			steps: []rstep{
				open,
				{after: 30 * time.Second, canary: load{ok: 1000, latency: fast}, stable: stable900, verdicts: tick(VerdictAdvance), state: RolloutProgressing, step: 2, weight: 50},
				{after: time.Minute, canary: load{ok: 99, latency: fast}, stable: stable900, state: RolloutProgressing, step: 2, weight: 50},
			},
		},
		{
			name:   "error rate rolls back before minDuration",
			policy: testPolicy,
			steps: []rstep{
				open,
				{after: time.Second, canary: load{ok: 50, errs: 50, latency: fast}, stable: stable900, verdicts: tick(VerdictRollback), state: RolloutRolledBack, step: 1, weight: 0},
				{after: time.Minute, canary: canary100, stable: stable900, state: RolloutRolledBack, step: 1, weight: 0},
			},
			reason: "step 1: error rate 50.00% over 100 requests is above 1.00% (stable's 0.00% + 1.00%)",
		},
		{
			name:   "error rate waits for minRequests",
			policy: testPolicy,
			steps: []rstep{
				open,
				{after: time.Second, canary: load{errs: 99, latency: fast}, stable: stable900, state: RolloutProgressing, step: 1, weight: 10},
				{after: time.Second, canary: load{ok: 1, latency: fast}, verdicts: tick(VerdictRollback), state: RolloutRolledBack, step: 1, weight: 0},
			},
		},
		{
			name:   "error rate at the second step rolls back",
			policy: testPolicy,
			steps: []rstep{
				open,
				{after: 30 * time.Second, canary: canary100, stable: stable900, verdicts: tick(VerdictAdvance), state: RolloutProgressing, step: 2, weight: 50},
				{after: time.Second, canary: load{ok: 90, errs: 10, latency: fast}, stable: stable900, verdicts: tick(VerdictRollback), state: RolloutRolledBack, step: 2, weight: 0},
			},
		},
		{
			name:   "error rate within the stable's plus the increase passes",
			policy: testPolicy,
			steps: []rstep{
				open,
				{after: 30 * time.Second, canary: load{ok: 195, errs: 5, latency: fast}, stable: load{ok: 882, errs: 18, latency: fast},
					verdicts: tick(VerdictAdvance), state: RolloutProgressing, step: 2, weight: 50},
			},
		},
		{
			name:   "error rate above the stable's plus the increase fails",
			policy: testPolicy,
			steps: []rstep{
				open,
				{after: time.Second, canary: load{ok: 193, errs: 7, latency: fast}, stable: load{ok: 882, errs: 18, latency: fast},
					verdicts: tick(VerdictRollback), state: RolloutRolledBack, step: 1, weight: 0},
			},
			reason: "step 1: error rate 3.50% over 200 requests is above 3.00% (stable's 2.00% + 1.00%)",
		},
		{
			name:   "without a stable baseline the increase is the limit",
			policy: testPolicy,
			steps: []rstep{
				open,
				{after: time.Second, canary: load{ok: 98, errs: 2, latency: fast}, stable: load{ok: 99, latency: fast},
					verdicts: tick(VerdictRollback), state: RolloutRolledBack, step: 1, weight: 0},
			},
			reason: "step 1: error rate 2.00% over 100 requests is above 1.00% (stable had 99 requests, too few to compare)",
		},
		{
			name:   "latency rolls back once the step has lasted",
			policy: testPolicy,
			steps: []rstep{
				open,
				{after: 10 * time.Second, canary: load{ok: 100, latency: 2 * slow}, stable: load{ok: 900, latency: slow}, state: RolloutProgressing, step: 1, weight: 10},
				{after: 20 * time.Second, verdicts: tick(VerdictRollback), state: RolloutRolledBack, step: 1, weight: 0},
			},
			reason: "step 1: p95 latency 200.5ms is above 1.5 × stable's 100.2ms",
		},
		{
			name:   "latency within the ratio passes",
			policy: testPolicy,
			steps: []rstep{
				open,
				{after: 30 * time.Second, canary: load{ok: 100, latency: 140 * time.Millisecond}, stable: load{ok: 900, latency: slow},
					verdicts: tick(VerdictAdvance), state: RolloutProgressing, step: 2, weight: 50},
			},
		},
		{
			name:   "latency is not judged without a stable baseline",
			policy: testPolicy,
			steps: []rstep{
				open,
				{after: 30 * time.Second, canary: load{ok: 100, latency: 10 * slow}, stable: load{ok: 99, latency: slow},
					verdicts: tick(VerdictAdvance), state: RolloutProgressing, step: 2, weight: 50},
			},
		},
		{
			name:   "maxLatencyRatio 0 turns the latency gate off",
			policy: `{"steps":[{"weight":10,"minDuration":"30s","minRequests":100}],"maxLatencyRatio":0}`,
			steps: []rstep{
				open,
				{after: 30 * time.Second, canary: load{ok: 100, latency: 10 * slow}, stable: load{ok: 900, latency: slow},
					verdicts: tick(VerdictPromote), state: RolloutPromoted, step: 1, weight: 100},
			},
		},
		{
			name:   "client errors neither fail a canary nor count as requests",
			policy: testPolicy,
			steps: []rstep{
				open,
				{after: time.Minute, canary: load{ok: 99, clientErrs: 1000, latency: fast}, stable: load{ok: 900, clientErrs: 9000, latency: fast},
					state: RolloutProgressing, step: 1, weight: 10},
				{canary: load{ok: 1, latency: fast}, verdicts: tick(VerdictAdvance), state: RolloutProgressing, step: 2, weight: 50},
			},
		},
		{
			name:   "a canary refusing what the stable serves rolls back",
			policy: testPolicy,
			steps: []rstep{
				open,
				{after: time.Second, canary: load{ok: 10, clientErrs: 200, latency: fast}, stable: stable900,
					verdicts: tick(VerdictRollback), state: RolloutRolledBack, step: 1, weight: 0},
			},
			reason: "step 1: client error rate 95.24% over 210 requests is above the stable's 0.00% + 10.00%",
		},
		{
			name:   "pause and resume",
			policy: testPolicy,
			steps: []rstep{
				open,
				{do: func(d *Deployments) error { return d.Pause("iris") }, state: RolloutPaused, step: 1, weight: 10},
				{after: time.Hour, canary: load{ok: 100, errs: 100, latency: fast}, stable: stable900, state: RolloutPaused, step: 1, weight: 10},
				{do: func(d *Deployments) error { return d.Resume("iris") }, state: RolloutProgressing, step: 1, weight: 10},
				// The window opens again: what was answered while paused does not count.
				{state: RolloutProgressing, step: 1, weight: 10},
				{after: 29 * time.Second, canary: canary100, stable: stable900, state: RolloutProgressing, step: 1, weight: 10},
				{after: time.Second, verdicts: tick(VerdictAdvance), state: RolloutProgressing, step: 2, weight: 50},
			},
		},
		{
			name:   "manual promote ends the rollout",
			policy: testPolicy,
			steps: []rstep{
				open,
				{do: func(d *Deployments) error { return d.Promote("iris") }, state: RolloutPromoted, step: 1, weight: 100},
				{after: time.Minute, canary: load{errs: 1000}, state: RolloutPromoted, step: 1, weight: 100},
			},
			reason: "promoted by hand",
		},
		{
			name:   "manual rollback ends the rollout",
			policy: testPolicy,
			steps: []rstep{
				open,
				{after: 30 * time.Second, canary: canary100, stable: stable900, verdicts: tick(VerdictAdvance), state: RolloutProgressing, step: 2, weight: 50},
				{do: func(d *Deployments) error { return d.Rollback("iris") }, state: RolloutRolledBack, step: 2, weight: 0},
				{after: time.Minute, canary: canary100, stable: stable900, state: RolloutRolledBack, step: 2, weight: 0},
			},
			reason: "rolled back by hand",
		},
		{
			name:   "a weight set by hand pauses; resume restores the step's",
			policy: testPolicy,
			steps: []rstep{
				open,
				{do: func(d *Deployments) error { return d.SetCanaryPercent("iris", 30) }, state: RolloutPaused, step: 1, weight: 30},
				{after: time.Minute, canary: canary100, stable: stable900, state: RolloutPaused, step: 1, weight: 30},
				{do: func(d *Deployments) error { return d.Resume("iris") }, state: RolloutProgressing, step: 1, weight: 10},
			},
		},
		{
			name:   "a weight of 100 by hand promotes",
			policy: testPolicy,
			steps: []rstep{
				open,
				{do: func(d *Deployments) error { return d.SetCanaryPercent("iris", 100) }, state: RolloutPromoted, step: 1, weight: 100},
			},
			reason: "weight set to 100% by hand",
		},
		{
			name:   "a step at 100% judges the canary alone",
			policy: `{"steps":[{"weight":100,"minDuration":"0s","minRequests":10}]}`,
			steps: []rstep{
				{state: RolloutProgressing, step: 1, weight: 100},
				{canary: load{ok: 10, latency: slow}, verdicts: tick(VerdictPromote), state: RolloutPromoted, step: 1, weight: 100},
			},
		},
		{
			name:   "minRequests 0 advances on time alone",
			policy: `{"steps":[{"weight":20,"minDuration":"10s","minRequests":0}]}`,
			steps: []rstep{
				{state: RolloutProgressing, step: 1, weight: 20},
				{after: 10 * time.Second, verdicts: tick(VerdictPromote), state: RolloutPromoted, step: 1, weight: 100},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, clk := startRollout(t, tc.policy, Options{})
			stats := fakeStats{}
			for i, s := range tc.steps {
				clk.now = clk.now.Add(s.after)
				stats.add(r2, s.canary)
				stats.add(r1, s.stable)
				var got []Verdict
				if s.do != nil {
					if err := s.do(d); err != nil {
						t.Fatalf("step %d: %v", i+1, err)
					}
				} else {
					for _, dec := range d.Tick(clk.now, stats.read) {
						got = append(got, dec.Verdict)
					}
				}
				if diff := cmp.Diff(s.verdicts, got); diff != "" {
					t.Fatalf("step %d: verdicts (-want +got):\n%s", i+1, diff)
				}
				st, err := d.RolloutStatus("iris")
				if err != nil {
					t.Fatal(err)
				}
				if st.State != s.state || st.Step != s.step || st.Weights[r2] != s.weight {
					t.Fatalf("step %d: state %s, step %d, canary weight %d; want %s, %d, %d (weights %v, reason %q)",
						i+1, st.State, st.Step, st.Weights[r2], s.state, s.step, s.weight, st.Weights, st.Reason)
				}
				if ms := modelState(t, d, "iris"); ms.Rollout != st.State {
					t.Fatalf("step %d: ModelState.Rollout %s, RolloutStatus.State %s", i+1, ms.Rollout, st.State)
				}
			}
			st, _ := d.RolloutStatus("iris")
			if last := st.Decisions[len(st.Decisions)-1]; tc.reason != "" && last.Reason != tc.reason {
				t.Errorf("last decision's reason %q, want %q", last.Reason, tc.reason)
			}
		})
	}
}

func TestRolloutDecisionFigures(t *testing.T) {
	d, clk := startRollout(t, testPolicy, Options{})
	stats := fakeStats{}
	stats.add(r2, load{ok: 1000, latency: slow}) // before the window: not counted
	if decs := d.Tick(clk.now, stats.read); decs != nil {
		t.Fatalf("the first Tick decided %+v", decs)
	}
	clk.now = clk.now.Add(45 * time.Second)
	stats.add(r2, load{ok: 198, errs: 2, clientErrs: 7, latency: fast})
	stats.add(r1, load{ok: 1782, errs: 18, latency: fast})
	decs := d.Tick(clk.now, stats.read)
	if len(decs) != 1 {
		t.Fatalf("decisions %+v", decs)
	}
	got := decs[0]
	// Latencies come from the histogram: check them loosely, then take
	// them as they are.
	if l := got.Gate.CanaryLatencySeconds; l < 0.009 || l > 0.0115 {
		t.Errorf("canary p95 %vs, want about 10ms", l)
	}
	g := &Gate{
		Time: clk.now, Step: 1, ElapsedSeconds: 45,
		CanaryRequests: 200, CanaryErrorRate: 0.01, CanaryLatencySeconds: got.Gate.CanaryLatencySeconds,
		StableRequests: 1800, StableErrorRate: 0.01, StableLatencySeconds: got.Gate.StableLatencySeconds,
		CanaryClientErrorRate: 7.0 / 207,
		Compared:              true, ErrorRateLimit: 0.02,
	}
	want := Decision{
		Time: clk.now, Model: "iris", Canary: r2, Stable: r1, Step: 1, Verdict: VerdictAdvance,
		Reason:  "step 1 of 2 passed: weight 10% -> 50%",
		Weights: map[string]int64{r1: 50, r2: 50},
		Gate:    g,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decision (-want +got):\n%s", diff)
	}

	st, err := d.RolloutStatus("iris")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Decisions) != 2 || st.Decisions[0].Verdict != VerdictStart || st.Decisions[0].Weights[r2] != 10 {
		t.Errorf("decisions %+v, want the start and the advance", st.Decisions)
	}
	if !st.Started.Equal(t0) || !st.StepStarted.Equal(clk.now) || st.Gate == nil || st.Gate.Step != 1 {
		t.Errorf("status times and gate: started %v, step started %v, gate %+v", st.Started, st.StepStarted, st.Gate)
	}
	// A caller's edit of what it got reaches nothing.
	got.Weights[r1] = 0
	st.Decisions[1].Gate.Step = 9
	st.Policy.Steps[0].Weight = 99
	again, _ := d.RolloutStatus("iris")
	if again.Decisions[1].Weights[r1] != 50 || again.Decisions[1].Gate.Step != 1 || again.Policy.Steps[0].Weight != 10 {
		t.Errorf("a caller's edit reached the status: %+v", again)
	}

	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"state":"progressing"`, `"minDuration":"30s"`, `"verdict":"advance"`, `"canaryRequests":200`} {
		if !strings.Contains(string(b), s) {
			t.Errorf("status JSON lacks %s: %s", s, b)
		}
	}
	var back RolloutStatus
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(st.Policy, back.Policy); diff != "" {
		t.Errorf("policy after a JSON round trip (-want +got):\n%s", diff)
	}
}

func TestRolloutAndApply(t *testing.T) {
	v := func(version string, opts ...func(*config.Model)) config.Model {
		return decl("iris", version, append([]func(*config.Model){annotate(config.AnnotationRollout, testPolicy)}, opts...)...)
	}
	tests := []struct {
		name    string
		then    []config.Model
		action  Action
		state   RolloutState
		canary  string
		weights map[string]int64
		last    Verdict
	}{
		{
			name: "re-applying the declaration leaves the rollout alone",
			then: []config.Model{v("v2", canary(70))}, action: ActionUnchanged,
			state: RolloutProgressing, canary: r2, weights: map[string]int64{r1: 90, r2: 10}, last: VerdictStart,
		},
		{
			name: "a new revision supersedes the canary and starts again",
			then: []config.Model{v("v3")}, action: ActionRevised,
			state: RolloutProgressing, canary: r3, weights: map[string]int64{r1: 90, r3: 10}, last: VerdictStart,
		},
		{
			name: "a new revision without a rollout supersedes it",
			then: []config.Model{decl("iris", "v3", canary(5))}, action: ActionRevised,
			state: RolloutSuperseded, canary: r2, weights: map[string]int64{r1: 95, r3: 5}, last: VerdictSuperseded,
		},
		{
			name: "removing canaryTrafficPercent promotes",
			then: []config.Model{v("v2", canary(70)), v("v2")}, action: ActionConfigured,
			state: RolloutPromoted, canary: r2, weights: map[string]int64{r2: 100}, last: VerdictPromote,
		},
		{
			name: "canaryTrafficPercent 0 rolls back",
			then: []config.Model{v("v2", canary(0))}, action: ActionConfigured,
			state: RolloutRolledBack, canary: r2, weights: map[string]int64{r1: 100}, last: VerdictRollback,
		},
		{
			name: "another canaryTrafficPercent pauses",
			then: []config.Model{v("v2", canary(40))}, action: ActionConfigured,
			state: RolloutPaused, canary: r2, weights: map[string]int64{r1: 60, r2: 40}, last: VerdictSetWeight,
		},
		{
			name: "a changed rollout annotation is for the next revision",
			then: []config.Model{decl("iris", "v2", annotate(config.AnnotationRollout, `{"steps":[{"weight":33}]}`), canary(70))}, action: ActionUnchanged,
			state: RolloutProgressing, canary: r2, weights: map[string]int64{r1: 90, r2: 10}, last: VerdictStart,
		},
		{
			name: "removing the model ends everything",
			then: []config.Model{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newDeployments(t, Options{})
			apply(t, d, true, v("v1"))
			apply(t, d, true, v("v2", canary(70)))
			var ch Changes
			for _, m := range tc.then {
				ch = apply(t, d, true, m)
			}
			if tc.then != nil && len(tc.then) == 0 {
				apply(t, d, true)
				if _, err := d.RolloutStatus("iris"); !errors.Is(err, ErrUnknownModel) {
					t.Fatalf("RolloutStatus of a removed model: %v", err)
				}
				if decs := d.Tick(t0.Add(time.Hour), fakeStats{}.read); decs != nil {
					t.Fatalf("Tick decided %+v", decs)
				}
				return
			}
			if ch.Models[0].Action != tc.action {
				t.Errorf("action %s, want %s", ch.Models[0].Action, tc.action)
			}
			st, err := d.RolloutStatus("iris")
			if err != nil {
				t.Fatal(err)
			}
			if st.State != tc.state || st.Canary != tc.canary || st.Decisions[len(st.Decisions)-1].Verdict != tc.last {
				t.Errorf("rollout %s of %s, last verdict %s; want %s of %s, %s",
					st.State, st.Canary, st.Decisions[len(st.Decisions)-1].Verdict, tc.state, tc.canary, tc.last)
			}
			if diff := cmp.Diff(tc.weights, modelState(t, d, "iris").Traffic); diff != "" {
				t.Errorf("traffic (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRolloutManualErrors(t *testing.T) {
	d, _ := newDeployments(t, Options{})
	apply(t, d, false, decl("iris", "v1"), decl("mnist", "v1"))
	apply(t, d, false, decl("iris", "v2", annotate(config.AnnotationRollout, testPolicy)))
	tests := []struct {
		name string
		do   func() error
		want error
	}{
		{"pause an unknown model", func() error { return d.Pause("bert") }, ErrUnknownModel},
		{"resume an unknown model", func() error { return d.Resume("bert") }, ErrUnknownModel},
		{"pause a model without rollout", func() error { return d.Pause("mnist") }, ErrNoRollout},
		{"resume a model without rollout", func() error { return d.Resume("mnist") }, ErrNoRollout},
		{"status of a model without rollout", func() error { _, err := d.RolloutStatus("mnist"); return err }, nil},
		{"status of an unknown model", func() error { _, err := d.RolloutStatus("bert"); return err }, ErrUnknownModel},
		{"resume a progressing rollout", func() error { return d.Resume("iris") }, ErrNothingToDo},
		{"pause", func() error { return d.Pause("iris") }, nil},
		{"pause again", func() error { return d.Pause("iris") }, ErrNothingToDo},
		{"rollback", func() error { return d.Rollback("iris") }, nil},
		{"resume a rolled back rollout", func() error { return d.Resume("iris") }, ErrNothingToDo},
		{"rollback again", func() error { return d.Rollback("iris") }, ErrNothingToDo},
	}
	for _, tc := range tests {
		err := tc.do()
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.want)
		}
	}
	st, _ := d.RolloutStatus("iris")
	var verdicts []Verdict
	for _, dec := range st.Decisions {
		verdicts = append(verdicts, dec.Verdict)
		if dec.Verdict != VerdictStart && !dec.Manual {
			t.Errorf("decision %s by hand is not marked manual", dec.Verdict)
		}
	}
	if diff := cmp.Diff([]Verdict{VerdictStart, VerdictPause, VerdictRollback}, verdicts); diff != "" {
		t.Errorf("decisions (-want +got):\n%s", diff)
	}
}

func TestRolloutDecisionsBounded(t *testing.T) {
	d, _ := startRollout(t, testPolicy, Options{MaxDecisions: 3})
	for range 5 {
		if err := d.Pause("iris"); err != nil {
			t.Fatal(err)
		}
		if err := d.Resume("iris"); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := d.RolloutStatus("iris")
	var verdicts []Verdict
	for _, dec := range st.Decisions {
		verdicts = append(verdicts, dec.Verdict)
	}
	if diff := cmp.Diff([]Verdict{VerdictResume, VerdictPause, VerdictResume}, verdicts); diff != "" {
		t.Errorf("decisions (-want +got):\n%s", diff)
	}
}

// TestTickGeneration checks that a decision starts a generation and a
// Tick that decides nothing does not.
func TestTickGeneration(t *testing.T) {
	d, clk := startRollout(t, testPolicy, Options{})
	stats := fakeStats{}
	gen := d.Generation()
	d.Tick(clk.now, stats.read)
	clk.now = clk.now.Add(time.Second)
	d.Tick(clk.now, stats.read)
	if d.Generation() != gen {
		t.Fatalf("Ticks that decided nothing moved the generation %d -> %d", gen, d.Generation())
	}
	stats.add(r2, load{errs: 100})
	d.Tick(clk.now, stats.read)
	if d.Generation() != gen+1 {
		t.Fatalf("a rollback moved the generation %d -> %d, want +1", gen, d.Generation())
	}
}

// TestTickStatsCallsBack checks that the stats function may call into
// Deployments: Tick reads the canary's and the stable revision's counts
// without holding its lock (a stats function that takes it, as one going
// through State does, would otherwise deadlock), and judges what it read.
func TestTickStatsCallsBack(t *testing.T) {
	d, clk := startRollout(t, testPolicy, Options{})
	stats := fakeStats{}
	var read []string
	callsBack := func(rev string) router.Counts {
		read = append(read, rev)
		// TryLock rather than a call that takes the lock, so that a Tick
		// holding it fails the test instead of hanging it.
		if !d.mu.TryLock() {
			t.Errorf("Tick holds the lock while it reads the counts of %s", rev)
			return stats.read(rev)
		}
		d.mu.Unlock()
		if ms, ok := d.State().Model("iris"); !ok || ms.Rollout != RolloutProgressing {
			t.Errorf("State from the stats function: %+v, %v", ms, ok)
		}
		return stats.read(rev)
	}
	// The first Tick opens the step's window; the second sees the
	// canary fail every request and rolls it back.
	d.Tick(clk.now, callsBack)
	stats.add(r2, load{errs: 100, latency: fast})
	stats.add(r1, stable900)
	clk.now = clk.now.Add(time.Second)
	decs := d.Tick(clk.now, callsBack)
	if diff := cmp.Diff([]string{r2, r1, r2, r1}, read); diff != "" {
		t.Errorf("counts read (-want +got):\n%s", diff)
	}
	if len(decs) != 1 || decs[0].Verdict != VerdictRollback {
		t.Errorf("Tick after the canary failed: %+v, want one rollback", decs)
	}
}

func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, err := New(Options{}) // the system clock, which synctest fakes
		if err != nil {
			t.Fatal(err)
		}
		pol := `{"steps":[{"weight":10,"minDuration":"0s","minRequests":10}]}`
		apply(t, d, false, decl("iris", "v1"))
		apply(t, d, false, decl("iris", "v2", annotate(config.AnnotationRollout, pol)))
		// Both Stats exist before Run reads them, as the gateway's do.
		stats := fakeStats{r1: new(router.Stats), r2: new(router.Stats)}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- d.Run(ctx, time.Second, stats.read, nil) }()
		time.Sleep(1500 * time.Millisecond) // the first tick opens the window
		stats.add(r2, load{ok: 10, latency: fast})
		gen, err := d.Wait(ctx, d.Generation()) // the second tick promotes
		if err != nil {
			t.Fatal(err)
		}
		if ms, _ := d.State().Model("iris"); ms.Rollout != RolloutPromoted || gen != d.Generation() {
			t.Errorf("after Run's ticks: rollout %s", ms.Rollout)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v", err)
		}
		if err := d.Run(t.Context(), 0, stats.read, nil); err == nil {
			t.Error("Run accepted a zero interval")
		}
	})
}

// TestRolloutCountersReset checks that counters that go back (the
// gateway restarted) are read as counting from zero.
func TestRolloutCountersReset(t *testing.T) {
	d, clk := startRollout(t, testPolicy, Options{})
	stats := fakeStats{}
	stats.add(r2, load{ok: 5000, latency: fast})
	stats.add(r1, load{ok: 5000, latency: fast})
	d.Tick(clk.now, stats.read)
	stats = fakeStats{}
	stats.add(r2, canary100)
	stats.add(r1, stable900)
	clk.now = clk.now.Add(30 * time.Second)
	decs := d.Tick(clk.now, stats.read)
	if len(decs) != 1 || decs[0].Verdict != VerdictAdvance || decs[0].Gate.CanaryRequests != 100 {
		t.Fatalf("Tick after a reset: %+v, want an advance on 100 requests", decs)
	}
}

// TestConcurrentUse runs every entry point at once; run it with -race.
func TestConcurrentUse(t *testing.T) {
	d, _ := startRollout(t, `{"steps":[{"weight":10,"minDuration":"0s","minRequests":1}]}`, Options{})
	stats := fakeStats{r1: new(router.Stats), r2: new(router.Stats), r3: new(router.Stats)}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 50 {
				switch (i + j) % 6 {
				case 0:
					d.Apply([]config.Model{decl("iris", fmt.Sprintf("v%d", j%3+2), annotate(config.AnnotationRollout, testPolicy))}, false)
					for _, n := range []string{r2, r3, r4} {
						d.MarkReady(n)
					}
				case 1:
					stats[r2].Record(fast, router.OutcomeOK)
					d.Tick(t0.Add(time.Duration(j)*time.Second), stats.read)
				case 2:
					d.Pause("iris")
					d.Resume("iris")
				case 3:
					d.Promote("iris")
					d.Rollback("iris")
				case 4:
					d.SetCanaryPercent("iris", int64(j%100))
				case 5:
					d.State()
					d.RolloutStatus("iris")
				}
			}
		})
	}
	wg.Wait()
	ms := modelState(t, d, "iris")
	var sum int64
	for _, p := range ms.Traffic {
		if p <= 0 {
			t.Errorf("traffic %v has a non-positive entry", ms.Traffic)
		}
		sum += p
	}
	if sum != 100 {
		t.Errorf("traffic %v sums to %d", ms.Traffic, sum)
	}
}
