package controlplane

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/infergate/infergate/config"
)

const (
	r1 = "iris-00001"
	r2 = "iris-00002"
	r3 = "iris-00003"
	r4 = "iris-00004"
	r5 = "iris-00005"
	r6 = "iris-00006"
)

// view is what the canary tests check of a model's state.
type view struct {
	Revs           []string
	Stable, Latest string
	Traffic        map[string]int64
	Tags           map[string]string
}

func viewOf(ms ModelState) view {
	return view{Revs: revNames(ms), Stable: ms.Stable, Latest: ms.Latest, Traffic: ms.Traffic, Tags: ms.Tags}
}

// step is one action on a Deployments and the state of model iris after it.
type step struct {
	apply []config.Model
	prune bool
	// do is a manual action, run instead of apply when set.
	do  func(d *Deployments) error
	err error // the sentinel the action's error wraps; nil for none
	// actions are the Changes' actions, by model, when apply is set.
	actions map[string]Action
	want    view
}

func applyStep(want view, models ...config.Model) step { return step{apply: models, want: want} }

func doStep(want view, err error, do func(d *Deployments) error) step {
	return step{do: do, err: err, want: want}
}

// only returns the view of a model whose one revision has all traffic.
func only(revs []string, stable, latest string, pct map[string]int64, tags map[string]string) view {
	return view{Revs: revs, Stable: stable, Latest: latest, Traffic: pct, Tags: tags}
}

func tags(latest, prev string) map[string]string {
	t := map[string]string{TagLatest: latest}
	if prev != "" {
		t[TagPrev] = prev
	}
	return t
}

func TestCanarySemantics(t *testing.T) {
	v := func(version string, opts ...func(*config.Model)) config.Model { return decl("iris", version, opts...) }
	first := only([]string{r1}, r1, r1, map[string]int64{r1: 100}, tags(r1, ""))
	canary10 := only([]string{r1, r2}, r1, r2, map[string]int64{r1: 90, r2: 10}, tags(r2, r1))
	promoted2 := only([]string{r1, r2}, r2, r2, map[string]int64{r2: 100}, tags(r2, r1))
	rolledBack2 := only([]string{r1, r2}, r1, r2, map[string]int64{r1: 100}, tags(r2, r1))
	tests := []struct {
		name  string
		opts  Options
		steps []step
	}{
		{
			name:  "first apply is stable at 100%",
			steps: []step{{apply: []config.Model{v("v1")}, actions: map[string]Action{"iris": ActionCreated}, want: first}},
		},
		{
			name:  "first apply ignores canaryTrafficPercent",
			steps: []step{applyStep(first, v("v1", canary(10)))},
		},
		{
			name:  "first apply ignores canaryTrafficPercent 0",
			steps: []step{applyStep(first, v("v1", canary(0)))},
		},
		{
			name: "canary N splits latest and stable",
			steps: []step{
				applyStep(first, v("v1")),
				{apply: []config.Model{v("v2", canary(10))}, actions: map[string]Action{"iris": ActionRevised}, want: canary10},
			},
		},
		{
			name: "removing canaryTrafficPercent promotes",
			steps: []step{
				applyStep(first, v("v1")),
				applyStep(canary10, v("v2", canary(10))),
				{apply: []config.Model{v("v2")}, actions: map[string]Action{"iris": ActionConfigured}, want: promoted2},
			},
		},
		{
			name: "100 promotes",
			steps: []step{
				applyStep(first, v("v1")),
				applyStep(canary10, v("v2", canary(10))),
				applyStep(promoted2, v("v2", canary(100))),
			},
		},
		{
			name: "new revision without canaryTrafficPercent is promoted at once",
			steps: []step{
				applyStep(first, v("v1")),
				applyStep(promoted2, v("v2")),
			},
		},
		{
			name: "0 rolls back and keeps latest addressable",
			steps: []step{
				applyStep(first, v("v1")),
				applyStep(canary10, v("v2", canary(10))),
				applyStep(rolledBack2, v("v2", canary(0))),
				// And a canary again from there.
				applyStep(only([]string{r1, r2}, r1, r2, map[string]int64{r1: 70, r2: 30}, tags(r2, r1)), v("v2", canary(30))),
			},
		},
		{
			name: "new revision at 0 has no traffic",
			steps: []step{
				applyStep(first, v("v1")),
				applyStep(rolledBack2, v("v2", canary(0))),
			},
		},
		{
			name: "re-applying the same spec with another percent changes traffic only",
			steps: []step{
				applyStep(first, v("v1")),
				applyStep(canary10, v("v2", canary(10))),
				{apply: []config.Model{v("v2", canary(50))}, actions: map[string]Action{"iris": ActionConfigured},
					want: only([]string{r1, r2}, r1, r2, map[string]int64{r1: 50, r2: 50}, tags(r2, r1))},
			},
		},
		{
			name: "re-applying the same declaration changes nothing",
			steps: []step{
				applyStep(first, v("v1")),
				applyStep(canary10, v("v2", canary(10))),
				{apply: []config.Model{v("v2", canary(10), source("elsewhere.yaml#3"))}, actions: map[string]Action{"iris": ActionUnchanged}, want: canary10},
			},
		},
		{
			name: "re-applying an unchanged declaration keeps a manual promote",
			steps: []step{
				applyStep(first, v("v1")),
				applyStep(canary10, v("v2", canary(10))),
				doStep(promoted2, nil, func(d *Deployments) error { return d.Promote("iris") }),
				{apply: []config.Model{v("v2", canary(10))}, actions: map[string]Action{"iris": ActionUnchanged}, want: promoted2},
			},
		},
		{
			name: "re-applying an unchanged declaration keeps a manual rollback",
			steps: []step{
				applyStep(first, v("v1")),
				applyStep(canary10, v("v2", canary(10))),
				doStep(rolledBack2, nil, func(d *Deployments) error { return d.Rollback("iris") }),
				applyStep(rolledBack2, v("v2", canary(10))),
			},
		},
		{
			name: "a percent on a promoted revision has nothing to split",
			steps: []step{
				applyStep(first, v("v1")),
				applyStep(promoted2, v("v2")),
				applyStep(promoted2, v("v2", canary(20))),
				applyStep(promoted2, v("v2", canary(0))),
			},
		},
		{
			name: "new revision during a canary replaces the canary",
			steps: []step{
				applyStep(first, v("v1")),
				applyStep(canary10, v("v2", canary(10))),
				applyStep(only([]string{r1, r2, r3}, r1, r3, map[string]int64{r1: 80, r3: 20}, tags(r3, r1)), v("v3", canary(20))),
				// Promoting it makes prev the old stable, not the replaced canary.
				applyStep(only([]string{r1, r2, r3}, r3, r3, map[string]int64{r3: 100}, tags(r3, r1)), v("v3")),
			},
		},
		{
			name: "new revision after a rollback is the canary",
			steps: []step{
				applyStep(first, v("v1")),
				applyStep(rolledBack2, v("v2", canary(0))),
				applyStep(only([]string{r1, r2, r3}, r1, r3, map[string]int64{r1: 95, r3: 5}, tags(r3, r1)), v("v3", canary(5))),
			},
		},
		{
			name: "history is bounded, oldest dropped first",
			opts: Options{MaxRevisions: 3},
			steps: []step{
				applyStep(first, v("v1")),
				applyStep(promoted2, v("v2")),
				applyStep(only([]string{r1, r2, r3}, r3, r3, map[string]int64{r3: 100}, tags(r3, r2)), v("v3")),
				applyStep(only([]string{r2, r3, r4}, r4, r4, map[string]int64{r4: 100}, tags(r4, r3)), v("v4")),
				applyStep(only([]string{r3, r4, r5}, r5, r5, map[string]int64{r5: 100}, tags(r5, r4)), v("v5")),
			},
		},
		{
			name: "history never drops stable, latest and the one before stable",
			opts: Options{MaxRevisions: 3},
			steps: []step{
				applyStep(first, v("v1")),
				applyStep(promoted2, v("v2")),
				applyStep(only([]string{r1, r2, r3}, r2, r3, map[string]int64{r2: 90, r3: 10}, tags(r3, r2)), v("v3", canary(10))),
				applyStep(only([]string{r1, r2, r4}, r2, r4, map[string]int64{r2: 90, r4: 10}, tags(r4, r2)), v("v4", canary(10))),
				applyStep(only([]string{r1, r2, r5}, r2, r5, map[string]int64{r2: 100}, tags(r5, r2)), v("v5", canary(0))),
				applyStep(only([]string{r1, r2, r6}, r2, r6, map[string]int64{r2: 90, r6: 10}, tags(r6, r2)), v("v6", canary(10))),
			},
		},
		{
			name: "a bound below three keeps the three roles",
			opts: Options{MaxRevisions: 1},
			steps: []step{
				applyStep(first, v("v1")),
				applyStep(promoted2, v("v2")),
				applyStep(only([]string{r1, r2, r3}, r2, r3, map[string]int64{r2: 90, r3: 10}, tags(r3, r2)), v("v3", canary(10))),
			},
		},
		{
			name: "manual promote, rollback and percent",
			steps: []step{
				applyStep(first, v("v1")),
				doStep(first, ErrNothingToDo, func(d *Deployments) error { return d.Promote("iris") }),
				doStep(first, ErrNothingToDo, func(d *Deployments) error { return d.Rollback("iris") }),
				doStep(first, ErrNothingToDo, func(d *Deployments) error { return d.SetCanaryPercent("iris", 10) }),
				applyStep(canary10, v("v2", canary(10))),
				doStep(canary10, ErrUnknownModel, func(d *Deployments) error { return d.Promote("mnist") }),
				doStep(canary10, ErrUnknownModel, func(d *Deployments) error { return d.Rollback("mnist") }),
				doStep(canary10, ErrUnknownModel, func(d *Deployments) error { return d.SetCanaryPercent("mnist", 10) }),
				doStep(canary10, ErrInvalid, func(d *Deployments) error { return d.SetCanaryPercent("iris", 101) }),
				doStep(canary10, ErrNothingToDo, func(d *Deployments) error { return d.SetCanaryPercent("iris", 10) }),
				doStep(only([]string{r1, r2}, r1, r2, map[string]int64{r1: 60, r2: 40}, tags(r2, r1)), nil,
					func(d *Deployments) error { return d.SetCanaryPercent("iris", 40) }),
				doStep(rolledBack2, nil, func(d *Deployments) error { return d.Rollback("iris") }),
				doStep(rolledBack2, ErrNothingToDo, func(d *Deployments) error { return d.Rollback("iris") }),
				doStep(rolledBack2, ErrNothingToDo, func(d *Deployments) error { return d.SetCanaryPercent("iris", 0) }),
				doStep(canary10, nil, func(d *Deployments) error { return d.SetCanaryPercent("iris", 10) }),
				doStep(promoted2, nil, func(d *Deployments) error { return d.SetCanaryPercent("iris", 100) }),
				doStep(promoted2, ErrNothingToDo, func(d *Deployments) error { return d.Promote("iris") }),
			},
		},
		{
			name: "revision numbers are not reused after a model is removed",
			steps: []step{
				applyStep(first, v("v1")),
				applyStep(promoted2, v("v2")),
				{apply: []config.Model{decl("mnist", "v1")}, prune: true, actions: map[string]Action{"mnist": ActionCreated, "iris": ActionRemoved}, want: view{}},
				{apply: []config.Model{v("v1")}, actions: map[string]Action{"iris": ActionCreated},
					want: only([]string{r3}, r3, r3, map[string]int64{r3: 100}, tags(r3, ""))},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, clk := newDeployments(t, tc.opts)
			for i, s := range tc.steps {
				clk.now = clk.now.Add(time.Minute)
				gen := d.Generation()
				before := d.State()
				var err error
				var ch Changes
				if s.do != nil {
					err = s.do(d)
				} else {
					ch, err = d.Apply(s.apply, s.prune)
					if err == nil {
						readyAll(t, d)
					}
				}
				switch {
				case s.err == nil && err != nil:
					t.Fatalf("step %d: %v", i+1, err)
				case s.err != nil && !errors.Is(err, s.err):
					t.Fatalf("step %d: error %v, want one wrapping %v", i+1, err, s.err)
				case s.err != nil && d.Generation() != gen:
					t.Fatalf("step %d failed and changed the generation from %d to %d", i+1, gen, d.Generation())
				}
				if s.actions != nil {
					got := map[string]Action{}
					for _, c := range ch.Models {
						got[c.Model] = c.Action
					}
					if diff := cmp.Diff(s.actions, got); diff != "" {
						t.Errorf("step %d: actions (-want +got):\n%s", i+1, diff)
					}
				}
				var got view
				if ms, ok := d.State().Model("iris"); ok {
					got = viewOf(ms)
				}
				if diff := cmp.Diff(s.want, got); diff != "" {
					t.Fatalf("step %d: iris (-want +got):\n%s", i+1, diff)
				}
				if changed := !cmp.Equal(before.Models, d.State().Models); changed != (d.Generation() != gen) {
					t.Fatalf("step %d: state changed %v, generation %d -> %d", i+1, changed, gen, d.Generation())
				}
			}
		})
	}
}

func TestRevisionTagsAddress(t *testing.T) {
	d, clk := newDeployments(t, Options{})
	apply(t, d, false, decl("iris", "v1"))
	clk.now = clk.now.Add(time.Hour)
	apply(t, d, false, decl("iris", "v2", canary(0)))
	ms := modelState(t, d, "iris")
	for ref, want := range map[string]string{TagLatest: r2, TagPrev: r1, "1": r1, "2": r2, r2: r2} {
		r, ok := ms.Revision(ref)
		if !ok || r.Name != want {
			t.Errorf("Revision(%q) = %q, %v; want %q", ref, r.Name, ok, want)
		}
	}
	for _, ref := range []string{"3", "0", "iris-00003", "mnist-00001", "stable", ""} {
		if r, ok := ms.Revision(ref); ok {
			t.Errorf("Revision(%q) = %q, want none", ref, r.Name)
		}
	}
	r, _ := ms.Revision(TagLatest)
	if r.Number != 2 || r.Model != "iris" || r.Digest != Digest(decl("iris", "v2")) || !r.Created.Equal(t0.Add(time.Hour)) || r.Spec.Path != "/models/v2" {
		t.Errorf("latest revision %+v", r)
	}
}

func TestApplyPrune(t *testing.T) {
	d, _ := newDeployments(t, Options{})
	apply(t, d, true, decl("iris", "v1"), decl("mnist", "v1"), decl("bert", "v1"))
	// A new revision takes its traffic once it is ready.
	ch, err := d.Apply([]config.Model{decl("mnist", "v2")}, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []ModelChange{{Model: "mnist", Action: ActionRevised, Revision: "mnist-00002", Pending: true, Traffic: map[string]int64{"mnist-00001": 100}}}
	if diff := cmp.Diff(want, ch.Models); diff != "" {
		t.Errorf("apply without prune (-want +got):\n%s", diff)
	}
	readyAll(t, d)
	if ms := modelState(t, d, "mnist"); ms.Traffic["mnist-00002"] != 100 || ms.Pending != "" {
		t.Errorf("mnist once mnist-00002 is ready: traffic %v, pending %q", ms.Traffic, ms.Pending)
	}
	if n := len(d.State().Models); n != 3 {
		t.Fatalf("%d models after apply without prune, want 3", n)
	}
	ch = apply(t, d, true, decl("mnist", "v2"))
	want = []ModelChange{
		{Model: "mnist", Action: ActionUnchanged, Traffic: map[string]int64{"mnist-00002": 100}},
		{Model: "bert", Action: ActionRemoved},
		{Model: "iris", Action: ActionRemoved},
	}
	if diff := cmp.Diff(want, ch.Models); diff != "" {
		t.Errorf("apply with prune (-want +got):\n%s", diff)
	}
	if ch.Generation != d.Generation() {
		t.Errorf("Changes.Generation %d, State's %d", ch.Generation, d.Generation())
	}
	s := d.State()
	if len(s.Models) != 1 || s.Models[0].Name != "mnist" {
		t.Fatalf("models after prune: %+v", s.Models)
	}
	// An empty whole state removes everything.
	apply(t, d, true)
	if n := len(d.State().Models); n != 0 {
		t.Fatalf("%d models after pruning to nothing", n)
	}
}

func TestApplyValidatesTheWholeBatch(t *testing.T) {
	tests := []struct {
		name  string
		batch []config.Model
		want  []string // the lines of the error
	}{
		{
			name:  "duplicate name",
			batch: []config.Model{decl("iris", "v2"), decl("iris", "v3", source("b.yaml#2"))},
			want:  []string{`b.yaml#2: metadata.name: "iris" is also declared at iris.yaml#1`},
		},
		{
			name:  "no name",
			batch: []config.Model{decl("", "v1", source("a.yaml#1"))},
			want:  []string{`a.yaml#1: metadata.name: required`},
		},
		{
			name:  "canary out of range",
			batch: []config.Model{decl("iris", "v2", canary(101))},
			want:  []string{`iris.yaml#1: spec.predictor.canaryTrafficPercent: 101 is not between 0 and 100`},
		},
		{
			name: "every problem at once, other models untouched",
			batch: []config.Model{
				decl("mnist", "v2"),
				decl("iris", "v2", annotate(config.AnnotationMirrorPercent, "lots")),
				decl("bert", "v1", annotate(config.AnnotationMirrorPercent, "101"), source("bert.yaml#4")),
			},
			want: []string{
				`iris.yaml#1: metadata.annotations[infergate.io/mirror-percent]: "lots" is not a number`,
				`bert.yaml#4: metadata.annotations[infergate.io/mirror-percent]: "101" is not between 0 and 100`,
			},
		},
		{
			name:  "mirror percent NaN",
			batch: []config.Model{decl("iris", "v2", annotate(config.AnnotationMirrorPercent, "NaN"))},
			want:  []string{`iris.yaml#1: metadata.annotations[infergate.io/mirror-percent]: "NaN" is not a number`},
		},
		{
			name:  "mirror revision without percent",
			batch: []config.Model{decl("iris", "v2", annotate(config.AnnotationMirrorRevision, "prev"))},
			want:  []string{`iris.yaml#1: metadata.annotations[infergate.io/mirror-revision]: "prev" has no effect without infergate.io/mirror-percent`},
		},
		{
			name: "mirror revision of another model",
			batch: []config.Model{decl("iris", "v2", annotate(config.AnnotationMirrorPercent, "5"),
				annotate(config.AnnotationMirrorRevision, "mnist-00001"))},
			want: []string{`iris.yaml#1: metadata.annotations[infergate.io/mirror-revision]: "mnist-00001" is not latest, prev, a revision number or a revision name like iris-00001`},
		},
		{
			name: "mirror revision number 0",
			batch: []config.Model{decl("iris", "v2", annotate(config.AnnotationMirrorPercent, "5"),
				annotate(config.AnnotationMirrorRevision, "0"))},
			want: []string{`iris.yaml#1: metadata.annotations[infergate.io/mirror-revision]: "0" is not a revision number (1, 2...)`},
		},
		{
			name: "mirror revision not kept",
			batch: []config.Model{decl("iris", "v2", annotate(config.AnnotationMirrorPercent, "5"),
				annotate(config.AnnotationMirrorRevision, "7"))},
			want: []string{`iris.yaml#1: metadata.annotations[infergate.io/mirror-revision]: "7" is not a revision of iris (kept: iris-00001, iris-00002)`},
		},
		{
			name:  "unknown mirror annotation",
			batch: []config.Model{decl("iris", "v2", annotate("infergate.io/mirror-percentage", "5"))},
			want:  []string{`iris.yaml#1: metadata.annotations[infergate.io/mirror-percentage]: unknown mirror annotation (known: infergate.io/mirror-percent, infergate.io/mirror-revision)`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newDeployments(t, Options{})
			apply(t, d, false, decl("iris", "v1"), decl("mnist", "v1"))
			before := d.State()
			_, err := d.Apply(tc.batch, true)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v, want one wrapping ErrInvalid", err)
			}
			if diff := cmp.Diff(tc.want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, d.State()); diff != "" {
				t.Errorf("a refused batch changed the state (-before +after):\n%s", diff)
			}
		})
	}
}

func TestMirror(t *testing.T) {
	mirror := func(pct, rev string) []func(*config.Model) {
		opts := []func(*config.Model){annotate(config.AnnotationMirrorPercent, pct)}
		if rev != "" {
			opts = append(opts, annotate(config.AnnotationMirrorRevision, rev))
		}
		return opts
	}
	with := func(opts []func(*config.Model), more ...func(*config.Model)) []func(*config.Model) {
		return append(append([]func(*config.Model){}, opts...), more...)
	}
	tests := []struct {
		name  string
		v2    []func(*config.Model) // the options of revision 2's declaration, after a plain v1
		want  *Mirror
		again []func(*config.Model) // when set, a second apply of v2 with these
		then  *Mirror
	}{
		{name: "latest by default, during a canary", v2: with(mirror("5", ""), canary(0)), want: &Mirror{Revision: r2, Percent: 5}},
		{name: "to latest that has all traffic is no mirror", v2: mirror("5", ""), want: nil},
		{name: "to prev after a promotion", v2: mirror("2.5", TagPrev), want: &Mirror{Revision: r1, Percent: 2.5}},
		{name: "by number", v2: mirror("100", "1"), want: &Mirror{Revision: r1, Percent: 100}},
		{name: "by name", v2: with(mirror("10", r2), canary(20)), want: &Mirror{Revision: r2, Percent: 10}},
		{name: "to the stable revision during a canary", v2: with(mirror("10", TagPrev), canary(20)), want: &Mirror{Revision: r1, Percent: 10}},
		{name: "zero percent is no mirror", v2: with(mirror("0", ""), canary(20)), want: nil},
		{
			name: "changing the mirror makes no revision",
			v2:   with(mirror("5", ""), canary(0)), want: &Mirror{Revision: r2, Percent: 5},
			again: with(mirror("50", TagPrev), canary(20)), then: &Mirror{Revision: r1, Percent: 50},
		},
		{
			name: "removing the annotations ends the mirror",
			v2:   with(mirror("5", ""), canary(0)), want: &Mirror{Revision: r2, Percent: 5},
			again: []func(*config.Model){canary(0)}, then: nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newDeployments(t, Options{})
			apply(t, d, false, decl("iris", "v1"))
			apply(t, d, false, decl("iris", "v2", tc.v2...))
			if diff := cmp.Diff(tc.want, modelState(t, d, "iris").Mirror); diff != "" {
				t.Fatalf("mirror (-want +got):\n%s", diff)
			}
			if tc.again == nil {
				return
			}
			ch := apply(t, d, false, decl("iris", "v2", tc.again...))
			if ch.Models[0].Action != ActionConfigured {
				t.Errorf("action %s, want %s", ch.Models[0].Action, ActionConfigured)
			}
			ms := modelState(t, d, "iris")
			if diff := cmp.Diff(tc.then, ms.Mirror); diff != "" {
				t.Errorf("mirror after the second apply (-want +got):\n%s", diff)
			}
			if len(ms.Revisions) != 2 {
				t.Errorf("revisions %v, want 2", revNames(ms))
			}
		})
	}
}

func TestMirroredRevisionIsKept(t *testing.T) {
	d, _ := newDeployments(t, Options{MaxRevisions: 2})
	apply(t, d, false, decl("iris", "v1"))
	apply(t, d, false, decl("iris", "v2", annotate(config.AnnotationMirrorPercent, "5"), annotate(config.AnnotationMirrorRevision, "1")))
	apply(t, d, false, decl("iris", "v3", annotate(config.AnnotationMirrorPercent, "5"), annotate(config.AnnotationMirrorRevision, "1")))
	apply(t, d, false, decl("iris", "v4", annotate(config.AnnotationMirrorPercent, "5"), annotate(config.AnnotationMirrorRevision, "1")))
	ms := modelState(t, d, "iris")
	if diff := cmp.Diff([]string{r1, r3, r4}, revNames(ms)); diff != "" {
		t.Errorf("revisions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&Mirror{Revision: r1, Percent: 5}, ms.Mirror); diff != "" {
		t.Errorf("mirror (-want +got):\n%s", diff)
	}
}

func TestStateIsACopy(t *testing.T) {
	d, _ := newDeployments(t, Options{})
	in := decl("iris", "v1", annotate("team", "a"))
	apply(t, d, false, in)
	in.Annotations["team"] = "b"
	in.Spec.Spec.Predictor.Model.StorageURI = "changed"

	s := d.State()
	s.Models[0].Traffic["iris-00001"] = 1
	s.Models[0].Tags[TagPrev] = "x"
	s.Models[0].Revisions[0].Name = "x"

	ms := modelState(t, d, "iris")
	if ms.Traffic[r1] != 100 || len(ms.Tags) != 1 || ms.Revisions[0].Name != r1 {
		t.Errorf("a caller's edit of a State reached the next one: %+v", ms)
	}
	spec := ms.Revisions[0].Spec
	if spec.Annotations["team"] != "a" || spec.Spec.Spec.Predictor.Model.StorageURI != "file:///models/v1" {
		t.Errorf("an edit of the applied declaration reached the revision: %+v", spec)
	}
}

func TestWait(t *testing.T) {
	d, _ := newDeployments(t, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if gen, err := d.Wait(ctx, 0); gen != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on a done context = %d, %v", gen, err)
	}

	done := make(chan uint64)
	go func() {
		gen, _ := d.Wait(t.Context(), 0)
		done <- gen
	}()
	// d.Apply, not apply: marking the revision ready would start a
	// second generation.
	if _, err := d.Apply([]config.Model{decl("iris", "v1")}, false); err != nil {
		t.Fatal(err)
	}
	select {
	case gen := <-done:
		if gen != 1 {
			t.Errorf("Wait returned generation %d, want 1", gen)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after Apply")
	}
	// An apply that changes nothing starts no generation.
	if _, err := d.Apply([]config.Model{decl("iris", "v1")}, false); err != nil {
		t.Fatal(err)
	}
	if gen, err := d.Wait(t.Context(), 0); gen != 1 || err != nil {
		t.Errorf("Wait(0) = %d, %v; want 1", gen, err)
	}
}

func TestNewOptions(t *testing.T) {
	for _, opts := range []Options{{MaxRevisions: -1}, {MaxDecisions: -1}} {
		if _, err := New(opts); err == nil {
			t.Errorf("New(%+v) accepted", opts)
		}
	}
	d, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d.maxRevisions != DefaultMaxRevisions || d.maxDecisions != DefaultMaxDecisions || d.clock == nil {
		t.Errorf("defaults not applied: %+v", d)
	}
}
