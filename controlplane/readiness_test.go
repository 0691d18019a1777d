package controlplane

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/infergate/infergate/config"
)

// applyOnly applies a batch without marking anything ready.
func applyOnly(t *testing.T, d *Deployments, prune bool, models ...config.Model) Changes {
	t.Helper()
	ch, err := d.Apply(models, prune)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return ch
}

// statusOf returns a revision's status and reason.
func statusOf(t *testing.T, d *Deployments, rev string) (RevisionStatus, string) {
	t.Helper()
	ms := modelState(t, d, "iris")
	r, ok := ms.Revision(rev)
	if !ok {
		t.Fatalf("iris has no revision %s (kept: %v)", rev, revNames(ms))
	}
	return r.Status, r.Reason
}

func mark(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestNewRevisionTakesTrafficOnceReady(t *testing.T) {
	d, _ := newDeployments(t, Options{})
	apply(t, d, false, decl("iris", "v1"))

	ch := applyOnly(t, d, false, decl("iris", "v2"))
	if c := ch.Models[0]; c.Action != ActionRevised || c.Revision != r2 || !c.Pending {
		t.Fatalf("change %+v, want %s revised and pending", c, r2)
	}
	ms := modelState(t, d, "iris")
	want := view{Revs: []string{r1, r2}, Stable: r1, Latest: r1, Traffic: map[string]int64{r1: 100}, Tags: tags(r1, "")}
	if diff := cmp.Diff(want, viewOf(ms)); diff != "" {
		t.Fatalf("before r2 is ready (-want +got):\n%s", diff)
	}
	if ms.Pending != r2 {
		t.Fatalf("Pending %q, want %s", ms.Pending, r2)
	}
	// The pending revision is addressable by name and number.
	if _, ok := ms.Revision("2"); !ok {
		t.Fatal("revision 2 not addressable while pending")
	}

	gen := d.Generation()
	mark(t, d.MarkReady(r2))
	if d.Generation() == gen {
		t.Fatal("MarkReady started no generation")
	}
	ms = modelState(t, d, "iris")
	want = view{Revs: []string{r1, r2}, Stable: r2, Latest: r2, Traffic: map[string]int64{r2: 100}, Tags: tags(r2, r1)}
	if diff := cmp.Diff(want, viewOf(ms)); diff != "" {
		t.Fatalf("once r2 is ready (-want +got):\n%s", diff)
	}
	// Marking it ready again changes nothing.
	gen = d.Generation()
	mark(t, d.MarkReady(r2))
	if d.Generation() != gen {
		t.Fatal("a second MarkReady started a generation")
	}
	if err := d.MarkReady("iris-00009"); !errors.Is(err, ErrUnknownModel) {
		t.Fatalf("MarkReady of an unknown revision: %v", err)
	}
}

func TestPendingRevisionKeepsTheCanarySplit(t *testing.T) {
	d, _ := newDeployments(t, Options{})
	apply(t, d, false, decl("iris", "v1"))
	apply(t, d, false, decl("iris", "v2", canary(10)))
	applyOnly(t, d, false, decl("iris", "v3", canary(20)))
	split := map[string]int64{r1: 90, r2: 10}
	if ms := modelState(t, d, "iris"); !cmp.Equal(ms.Traffic, split) || ms.Pending != r3 {
		t.Fatalf("while r3 is pending: traffic %v pending %q, want %v and %s", ms.Traffic, ms.Pending, split, r3)
	}
	// A changed canaryTrafficPercent for the pending revision is its own.
	applyOnly(t, d, false, decl("iris", "v3", canary(30)))
	if ms := modelState(t, d, "iris"); !cmp.Equal(ms.Traffic, split) {
		t.Fatalf("traffic %v after re-applying the pending declaration, want %v", ms.Traffic, split)
	}
	mark(t, d.MarkReady(r3))
	want := view{Revs: []string{r1, r2, r3}, Stable: r1, Latest: r3, Traffic: map[string]int64{r1: 70, r3: 30}, Tags: tags(r3, r1)}
	if diff := cmp.Diff(want, viewOf(modelState(t, d, "iris"))); diff != "" {
		t.Fatalf("once r3 is ready (-want +got):\n%s", diff)
	}
}

func TestFailedRevisionNeverTakesTraffic(t *testing.T) {
	d, _ := newDeployments(t, Options{})
	apply(t, d, false, decl("iris", "v1"))
	applyOnly(t, d, false, decl("iris", "v2"))
	mark(t, d.MarkFailed(r2, "model file missing"))

	ms := modelState(t, d, "iris")
	want := view{Revs: []string{r1, r2}, Stable: r1, Latest: r1, Traffic: map[string]int64{r1: 100}, Tags: tags(r1, "")}
	if diff := cmp.Diff(want, viewOf(ms)); diff != "" {
		t.Fatalf("after r2 failed (-want +got):\n%s", diff)
	}
	if ms.Pending != "" {
		t.Fatalf("Pending %q after the failure", ms.Pending)
	}
	if st, reason := statusOf(t, d, r2); st != RevisionFailed || reason != "model file missing" {
		t.Fatalf("r2 %s %q, want failed with the reason", st, reason)
	}
	rs, err := d.RolloutStatus("iris")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rs.Decisions); n == 0 || rs.Decisions[n-1].Verdict != VerdictFailed {
		t.Fatalf("decisions %+v, want the failure last", rs.Decisions)
	}
	if want := []RevisionInfo{{Name: r1, Status: RevisionReady}, {Name: r2, Status: RevisionFailed, Reason: "model file missing"}}; !cmp.Equal(want, rs.Revisions, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Created" }, cmp.Ignore())) {
		t.Fatalf("revisions %+v, want %+v", rs.Revisions, want)
	}
	// A ready revision that starts late is not routed by surprise.
	mark(t, d.MarkReady(r2))
	if ms := modelState(t, d, "iris"); ms.Traffic[r1] != 100 {
		t.Fatalf("traffic %v after the failed revision turned ready, want all on r1", ms.Traffic)
	}

	// Applying its declaration again retries the same revision.
	mark(t, d.MarkFailed(r2, "model file missing"))
	ch := applyOnly(t, d, false, decl("iris", "v2"))
	if c := ch.Models[0]; c.Action != ActionReused || c.Revision != r2 || !c.Pending {
		t.Fatalf("change %+v, want %s reused and pending", c, r2)
	}
	if st, _ := statusOf(t, d, r2); st != RevisionPending {
		t.Fatalf("r2 %s after re-applying it, want pending", st)
	}
	mark(t, d.MarkReady(r2))
	if ms := modelState(t, d, "iris"); ms.Traffic[r2] != 100 || ms.Stable != r2 {
		t.Fatalf("after the retry turned ready: traffic %v stable %s", ms.Traffic, ms.Stable)
	}
}

func TestFailedRevisionIsNeverPrev(t *testing.T) {
	d, _ := newDeployments(t, Options{})
	// The first revision takes the traffic at once (there is nothing
	// else), and fails.
	applyOnly(t, d, false, decl("iris", "v1"))
	mark(t, d.MarkFailed(r1, "exit status 1"))
	apply(t, d, false, decl("iris", "v2"))
	ms := modelState(t, d, "iris")
	if ms.Stable != r2 || ms.Traffic[r2] != 100 {
		t.Fatalf("after r2: stable %s traffic %v", ms.Stable, ms.Traffic)
	}
	if p, ok := ms.Tags[TagPrev]; ok {
		t.Fatalf("prev tags %s, which failed", p)
	}
	// A later revision's prev is the one that worked.
	apply(t, d, false, decl("iris", "v3"))
	if p := modelState(t, d, "iris").Tags[TagPrev]; p != r2 {
		t.Fatalf("prev %q, want %s", p, r2)
	}
}

func TestRolloutStartsOnceReady(t *testing.T) {
	d, _ := newDeployments(t, Options{})
	apply(t, d, false, decl("iris", "v1", annotate(config.AnnotationRollout, testPolicy)))
	applyOnly(t, d, false, decl("iris", "v2", annotate(config.AnnotationRollout, testPolicy)))
	if rs, err := d.RolloutStatus("iris"); err != nil || rs.State != "" || rs.Pending != r2 {
		t.Fatalf("rollout before r2 is ready: %+v, %v", rs, err)
	}
	mark(t, d.MarkReady(r2))
	rs, err := d.RolloutStatus("iris")
	if err != nil || rs.State != RolloutProgressing || rs.Canary != r2 {
		t.Fatalf("rollout once r2 is ready: %+v, %v", rs, err)
	}
}

func TestReapplyingAKeptSpecReusesItsRevision(t *testing.T) {
	d, _ := newDeployments(t, Options{})
	apply(t, d, false, decl("iris", "v1"))
	apply(t, d, false, decl("iris", "v2"))
	ch := apply(t, d, false, decl("iris", "v1", canary(10)))
	if c := ch.Models[0]; c.Action != ActionReused || c.Revision != r1 || c.Pending {
		t.Fatalf("change %+v, want %s reused at once (it was ready)", c, r1)
	}
	want := view{Revs: []string{r1, r2}, Stable: r2, Latest: r1, Traffic: map[string]int64{r1: 10, r2: 90}, Tags: tags(r1, r2)}
	if diff := cmp.Diff(want, viewOf(modelState(t, d, "iris"))); diff != "" {
		t.Fatalf("after reverting to v1 as a canary (-want +got):\n%s", diff)
	}
	// The stable revision's own spec back: it keeps all the traffic.
	ch = apply(t, d, false, decl("iris", "v2"))
	if c := ch.Models[0]; c.Action != ActionReused || c.Revision != r2 {
		t.Fatalf("change %+v, want %s reused", c, r2)
	}
	if ms := modelState(t, d, "iris"); ms.Traffic[r2] != 100 || ms.Latest != r2 {
		t.Fatalf("traffic %v latest %s", ms.Traffic, ms.Latest)
	}
}

func TestConfigFileAndApply(t *testing.T) {
	d, _ := newDeployments(t, Options{})
	file := func(version string, opts ...func(*config.Model)) config.Model {
		return decl("iris", version, append(opts, source("models/iris.yaml#1"))...)
	}
	apply(t, d, true, file("v1"))
	apply(t, d, false, decl("iris", "v2", source("iris-v2.yaml#1")))
	ms := modelState(t, d, "iris")
	if ms.Stable != r2 || ms.Source != "iris-v2.yaml#1" || ms.Overrides != "models/iris.yaml#1" {
		t.Fatalf("after apply: stable %s source %q overrides %q", ms.Stable, ms.Source, ms.Overrides)
	}
	// The file read again, unchanged (another file changed, or SIGHUP):
	// what apply did stays.
	ch := apply(t, d, true, file("v1"))
	if c := ch.Models[0]; c.Action != ActionUnchanged {
		t.Fatalf("re-reading the unchanged file: %+v", c)
	}
	if ms := modelState(t, d, "iris"); ms.Stable != r2 || ms.Overrides == "" {
		t.Fatalf("after re-reading the file: stable %s overrides %q", ms.Stable, ms.Overrides)
	}
	// The file's declaration changed: it wins.
	apply(t, d, true, file("v3"))
	ms = modelState(t, d, "iris")
	if ms.Stable != r3 || ms.Overrides != "" || ms.Source != "models/iris.yaml#1" {
		t.Fatalf("after the file changed: stable %s overrides %q source %q", ms.Stable, ms.Overrides, ms.Source)
	}
	// An action by hand after the file was read overrides it too.
	apply(t, d, true, file("v4", canary(10)))
	mark(t, d.Promote("iris"))
	if ms := modelState(t, d, "iris"); ms.Overrides != "models/iris.yaml#1" {
		t.Fatalf("after a promote by hand: overrides %q", ms.Overrides)
	}
	apply(t, d, true, file("v4", canary(10)))
	if ms := modelState(t, d, "iris"); ms.Stable != r4 || ms.Traffic[r4] != 100 {
		t.Fatalf("re-reading the file undid the promote: %+v", ms)
	}
}
