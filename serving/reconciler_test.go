package serving

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/infergate/infergate/controlplane"
)

// TestReconcileBatch applies a batch of three models (two run as local
// processes, one at a URL) and then a whole new state that revises one,
// keeps one and drops one: every model answers from its revision, the
// kept one's runtime is the same, and the dropped one's stops.
func TestReconcileBatch(t *testing.T) {
	h := newHarness(t, true)
	ch, err := h.rec.Apply(parse(t,
		fakeModel("a", "version=1", "", ""),
		fakeModel("b", "version=1", "", ""),
		endpointModel("c", "", fakeEndpoint(t, "version=9")),
	), true)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, c := range ch.Models {
		actions = append(actions, fmt.Sprintf("%s %s %s", c.Model, c.Action, c.Revision))
	}
	if diff := cmp.Diff([]string{"a created a-00001", "b created b-00001", "c created c-00001"}, actions); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	// The routes exist when Apply returns; requests wait in the
	// activator for local replicas to be ready. A runtime at a URL
	// serves once the pool's probe found it ready.
	h.mustServe(t, "a", "1", "a-00001")
	h.mustServe(t, "b", "1", "b-00001")
	h.waitState(t, "c-00001 ready", revisionReady("c", "c-00001"))
	h.mustServe(t, "c", "9", "c-00001")
	if diff := cmp.Diff([]string{"a-00001", "b-00001", "c-00001"}, h.manager.Names()); diff != "" {
		t.Errorf("runtimes (-want +got):\n%s", diff)
	}
	for _, rev := range []string{"a-00001", "b-00001"} {
		if st, ok := h.manager.RuntimeStatus(rev); !ok || st.Desired != 1 || st.Running != 1 || st.Ready != 1 {
			t.Errorf("%s: runtime %+v, %v; want one replica running and ready", rev, st, ok)
		}
	}
	if st, ok := h.manager.RuntimeStatus("c-00001"); !ok || st.Desired != 1 || st.Running != 1 || st.Ready != 1 {
		t.Errorf("c-00001: runtime %+v, %v; want its one endpoint ready", st, ok)
	}
	b1, c1 := h.manager.get("b-00001"), h.manager.get("c-00001")

	ch, err = h.rec.Apply(parse(t,
		fakeModel("a", "version=2", "", ""),
		fakeModel("b", "version=1", "", ""),
	), true)
	if err != nil {
		t.Fatal(err)
	}
	actions = nil
	for _, c := range ch.Models {
		actions = append(actions, fmt.Sprintf("%s %s %s", c.Model, c.Action, c.Revision))
	}
	if diff := cmp.Diff([]string{"a revised a-00002", "b unchanged ", "c removed "}, actions); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	h.mustNotRoute(t, "c")
	waitDone(t, c1)
	h.waitState(t, "a-00002 ready", revisionReady("a", "a-00002"))
	h.mustServe(t, "a", "2", "a-00002")
	h.mustServe(t, "b", "1", "b-00001")
	if h.manager.get("b-00001") != b1 {
		t.Errorf("b's runtime was made again, though b did not change")
	}
	// a-00001 stays, tagged prev, for an instant rollback.
	if diff := cmp.Diff([]string{"a-00001", "a-00002", "b-00001"}, h.manager.Names()); diff != "" {
		t.Errorf("runtimes (-want +got):\n%s", diff)
	}
}

// TestFailedApplyChangesNothing: a batch with anything wrong in it
// changes no route, no runtime and no state, and starts no process.
func TestFailedApplyChangesNothing(t *testing.T) {
	h := newHarness(t, true)
	if _, err := h.rec.Apply(parse(t, fakeModel("a", "version=1", "", "")), true); err != nil {
		t.Fatal(err)
	}
	h.mustServe(t, "a", "1", "a-00001")
	gen := h.dep.Generation()
	revised := fakeModel("a", "version=2", "", "")
	fresh := fakeModel("fresh", "version=1", "", "")
	for _, tc := range []struct {
		name    string
		docs    []string
		prune   bool
		wantErr string
	}{
		{
			name: "a model file that is not there",
			docs: []string{revised, fresh, `apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: files}
spec:
  predictor:
    model: {modelFormat: {name: onnx}, storageUri: "file:///no/such/model"}
`},
			wantErr: "/no/such/model does not exist",
		},
		{
			name:    "a bad autoscaling annotation",
			docs:    []string{revised, fakeModel("fresh", "version=1", "    autoscaling.knative.dev/window: \"1s\"\n", "")},
			prune:   true,
			wantErr: "autoscaling.knative.dev/window",
		},
		{
			name:    "a mirror of a revision the model does not keep",
			docs:    []string{fakeModel("a", "version=2", "    infergate.io/mirror-percent: \"5\"\n    infergate.io/mirror-revision: a-00009\n", ""), fresh},
			wantErr: "a-00009",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.rec.Apply(parse(t, tc.docs...), tc.prune)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Apply: %v, want an error containing %q", err, tc.wantErr)
			}
			if g := h.dep.Generation(); g != gen {
				t.Errorf("the state changed: generation %d, was %d", g, gen)
			}
			if diff := cmp.Diff([]string{"a-00001"}, h.manager.Names()); diff != "" {
				t.Errorf("runtimes (-want +got):\n%s", diff)
			}
			entries, err := os.ReadDir(filepath.Join(h.dataDir, "revisions"))
			if err != nil {
				t.Fatal(err)
			}
			var dirs []string
			for _, e := range entries {
				dirs = append(dirs, e.Name())
			}
			if diff := cmp.Diff([]string{"a-00001"}, dirs); diff != "" {
				t.Errorf("runtime directories: a process was started (-want +got):\n%s", diff)
			}
			h.mustServe(t, "a", "1", "a-00001")
			h.mustNotRoute(t, "fresh")
		})
	}

	// `infergate gateway` runs no runtime: a model must name its URLs.
	g := newHarness(t, false)
	if _, err := g.rec.Apply(parse(t, fresh), false); err == nil || !strings.Contains(err.Error(), "`infergate gateway` starts no runtime") {
		t.Errorf("a model without endpoints in gateway mode: %v", err)
	}
	if len(g.dep.State().Models) != 0 || len(g.manager.Names()) != 0 {
		t.Errorf("the refused model was deployed: state %+v, runtimes %v", g.dep.State(), g.manager.Names())
	}
}

// TestRetireWaitsForRequestsInFlight: a revision dropped from the state
// loses its route at once, but its runtime process keeps serving the
// request it holds until that request is answered; then it stops.
func TestRetireWaitsForRequestsInFlight(t *testing.T) {
	h := newHarness(t, true)
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	// The runtime calls this before it answers an infer request.
	holdSrv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		arrived <- struct{}{}
		<-release
	}))
	t.Cleanup(holdSrv.Close)
	hold := holdSrv.URL
	if _, err := h.rec.Apply(parse(t, fakeModel("m", "version=1,hold="+hold, "", "")), true); err != nil {
		t.Fatal(err)
	}
	rr := h.manager.get("m-00001")
	type result struct {
		a   answer
		err error
	}
	held := make(chan result, 1)
	go func() {
		a, err := infer(h.rest, "m")
		held <- result{a, err}
	}()
	select {
	case <-arrived:
	case <-time.After(waitLimit):
		t.Fatal("the request did not reach the runtime")
	}
	procs := pids(rr)
	if len(procs) != 1 {
		t.Fatalf("runtime processes %v, want one", procs)
	}

	// Drop the model: its route goes at once, its runtime stays while
	// the request runs.
	if _, err := h.rec.Apply(nil, true); err != nil {
		t.Fatal(err)
	}
	if names := h.manager.Names(); len(names) != 0 {
		t.Errorf("runtimes %v after the model was dropped, want none", names)
	}
	h.mustNotRoute(t, "m")
	select {
	case <-rr.done:
		t.Fatal("the runtime stopped while a request it took was running")
	default:
	}
	if !alive(procs[0]) {
		t.Fatal("the runtime process ended while a request it took was running")
	}

	close(release)
	r := <-held
	if r.err != nil || r.a.code != http.StatusOK || r.a.version != "1" || r.a.revision != "m-00001" {
		t.Fatalf("the held request: %+v, %v; want 200 from m-00001", r.a, r.err)
	}
	waitDone(t, rr)
	if alive(procs[0]) {
		t.Errorf("runtime process %d still runs after its revision was retired", procs[0])
	}
}

// TestConcurrentApplies: applies of several models at once, some of them
// in the same batches, and rollout actions meanwhile, end with routes and
// runtimes that match the state exactly: no runtime lost or left over.
func TestConcurrentApplies(t *testing.T) {
	h := newHarness(t, true)
	const models, versions = 4, 3
	urls := make([]string, versions)
	for v := range versions {
		urls[v] = fakeEndpoint(t, fmt.Sprintf("version=%d", v+1))
	}
	var wg sync.WaitGroup
	errs := make(chan error, models*versions+versions)
	for i := range models {
		wg.Go(func() {
			for v := range versions {
				if _, err := h.rec.Apply(parse(t, endpointModel(fmt.Sprintf("c%d", i), "", urls[v])), false); err != nil {
					errs <- err
				}
			}
		})
	}
	// A batch of two other models, applied again and again, and Syncs
	// and actions as the admin API makes them.
	wg.Go(func() {
		for v := range versions {
			if _, err := h.rec.Apply(parse(t, endpointModel("p0", "", urls[v]), endpointModel("p1", "", urls[versions-1-v])), false); err != nil {
				errs <- err
			}
			if err := h.rec.Sync(); err != nil {
				errs <- err
			}
			_ = h.dep.Rollback("p0") // may have nothing to do
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// Every revision of the state, and only those, has a runtime.
	h.waitState(t, "every revision ready", func(st controlplane.State) bool {
		for _, ms := range st.Models {
			for _, r := range ms.Revisions {
				if r.Status != controlplane.RevisionReady {
					return false
				}
			}
		}
		return true
	})
	var want []string
	st := h.dep.State()
	for _, ms := range st.Models {
		for _, r := range ms.Revisions {
			want = append(want, r.Name)
		}
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, h.manager.Names()); diff != "" {
		t.Errorf("runtimes against the state's revisions (-want +got):\n%s", diff)
	}
	for i := range models {
		name := fmt.Sprintf("c%d", i)
		h.mustServe(t, name, fmt.Sprint(versions), fmt.Sprintf("%s-%05d", name, versions))
	}
	for _, name := range []string{"p0", "p1"} {
		ms, _ := st.Model(name)
		a, err := infer(h.rest, name)
		if err != nil || a.code != http.StatusOK || ms.Traffic[a.revision] == 0 {
			t.Errorf("%s: %+v, %v; want 200 from a revision with traffic (%v)", name, a, err, ms.Traffic)
		}
	}
}
