package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/infergate/infergate/config"
	"github.com/infergate/infergate/registry"
)

// storeKinds are the stores the durability tests run on: SQLite always,
// PostgreSQL when INFERGATE_TEST_POSTGRES names one (make test-postgres).
func storeKinds(t *testing.T) map[string]func(t *testing.T, dir string) string {
	kinds := map[string]func(t *testing.T, dir string) string{
		"sqlite": func(*testing.T, string) string { return "" },
	}
	if dsn := os.Getenv("INFERGATE_TEST_POSTGRES"); dsn != "" {
		kinds["postgres"] = func(t *testing.T, _ string) string {
			// One database for the whole run: start from an empty table.
			reg := openRegistry(t, t.TempDir(), dsn)
			if err := reg.Update(t.Context(), func(ctx context.Context, tx *registry.Tx) error {
				_, err := tx.ExecContext(ctx, `DROP TABLE IF EXISTS controlplane_models`)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			reg.Close()
			return dsn
		}
	} else {
		t.Log("PostgreSQL not tested: INFERGATE_TEST_POSTGRES is not set (make test-postgres sets it)")
	}
	return kinds
}

func openRegistry(t *testing.T, dir, dsn string) *registry.Registry {
	t.Helper()
	reg, err := registry.Open(t.Context(), registry.Options{DataDir: dir, Store: dsn})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// durable returns a Deployments on the store in dir (or dsn), as
// `infergate serve` starting there would: loaded from what the store
// holds.
func durable(t *testing.T, dir, dsn string, clk *fakeClock) (*Deployments, *registry.Registry) {
	t.Helper()
	reg := openRegistry(t, dir, dsn)
	t.Cleanup(func() { reg.Close() })
	st, err := NewRegistryStore(t.Context(), reg)
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Options{Clock: clk, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	return d, reg
}

// TestDurableRestart: revisions, the split, a rollout at its second step
// and its decisions come back after a restart; the rollout resumes with a
// decision saying its step starts again, and goes on to promote.
func TestDurableRestart(t *testing.T) {
	for kind, dsnFor := range storeKinds(t) {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			dsn := dsnFor(t, dir)
			clk := &fakeClock{now: t0}
			d, reg := durable(t, dir, dsn, clk)
			apply(t, d, false, decl("iris", "v1", annotate(config.AnnotationRollout, testPolicy)))
			apply(t, d, false, decl("iris", "v2", annotate(config.AnnotationRollout, testPolicy), canary(70)))
			apply(t, d, false, decl("digits", "v1", canary(100)))
			stats := fakeStats{}
			d.Tick(clk.now, stats.read) // opens step 1's window
			clk.now = clk.now.Add(30 * time.Second)
			stats.add("iris-00002", canary100)
			stats.add("iris-00001", stable900)
			if decs := d.Tick(clk.now, stats.read); len(decs) != 1 || decs[0].Verdict != VerdictAdvance {
				t.Fatalf("Tick: %+v, want one advance", decs)
			}
			before := d.State()
			beforeStatus, err := d.RolloutStatus("iris")
			if err != nil {
				t.Fatal(err)
			}
			reg.Close()

			// Restart: a new process on the same store.
			clk.now = clk.now.Add(time.Minute)
			d2, _ := durable(t, dir, dsn, clk)
			after := d2.State()
			if diff := cmp.Diff(before.Models, after.Models); diff != "" {
				t.Errorf("state after a restart differs (-before +after):\n%s", diff)
			}
			st, err := d2.RolloutStatus("iris")
			if err != nil {
				t.Fatal(err)
			}
			if st.State != RolloutProgressing || st.Step != 2 || st.Weights["iris-00002"] != 50 {
				t.Errorf("rollout after a restart: %s at step %d with %v; want progressing at step 2 with 50%%", st.State, st.Step, st.Weights)
			}
			if n := len(st.Decisions); n != len(beforeStatus.Decisions)+1 || st.Decisions[n-1].Verdict != VerdictResume {
				t.Errorf("decisions after a restart: %+v; want those before and a resume", st.Decisions)
			}
			// Step 2 runs its minute again from the restart, then promotes.
			fresh := fakeStats{}
			d2.Tick(clk.now, fresh.read)
			clk.now = clk.now.Add(time.Minute)
			fresh.add("iris-00002", canary100)
			fresh.add("iris-00001", stable900)
			if decs := d2.Tick(clk.now, fresh.read); len(decs) != 1 || decs[0].Verdict != VerdictPromote {
				t.Fatalf("Tick after a restart: %+v, want one promote", decs)
			}
		})
	}
}

// TestDurableNumbersOutliveRemoval: a model removed by a config re-read
// and declared again later continues its revision numbers after a
// restart, so a revision name never comes back with another spec.
func TestDurableNumbersOutliveRemoval(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{now: t0}
	d, reg := durable(t, dir, "", clk)
	apply(t, d, true, decl("iris", "v1"), decl("digits", "v1"))
	apply(t, d, true, decl("digits", "v1"))
	reg.Close()
	d2, _ := durable(t, dir, "", clk)
	if _, ok := d2.State().Model("iris"); ok {
		t.Fatal("a removed model came back after a restart")
	}
	ch := apply(t, d2, true, decl("iris", "v2"), decl("digits", "v1"))
	if got := ch.Models[slices.IndexFunc(ch.Models, func(c ModelChange) bool { return c.Model == "iris" })].Revision; got != "iris-00002" {
		t.Errorf("iris declared again after removal and restart made %s, want iris-00002", got)
	}
}

// TestDurableWriteFailure: a change the store cannot write is refused
// with ErrStore and changes nothing, for Apply and an action by hand.
func TestDurableWriteFailure(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{now: t0}
	d, reg := durable(t, dir, "", clk)
	apply(t, d, false, decl("iris", "v1"))
	apply(t, d, false, decl("iris", "v2", canary(30)))
	before := d.State()
	reg.Close() // every write fails from now on
	if _, err := d.Apply([]config.Model{decl("iris", "v3")}, false); !errors.Is(err, ErrStore) {
		t.Errorf("Apply with the store gone: %v, want ErrStore", err)
	}
	if err := d.Promote("iris"); !errors.Is(err, ErrStore) {
		t.Errorf("Promote with the store gone: %v, want ErrStore", err)
	}
	if diff := cmp.Diff(before, d.State()); diff != "" {
		t.Errorf("a refused change changed the state (-before +after):\n%s", diff)
	}
}

// TestDurableEvents: each change appends its events to the registry's
// log in the change's transaction: revisions made, ready, traffic, and
// rollout decisions with their figures.
func TestDurableEvents(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{now: t0}
	d, reg := durable(t, dir, "", clk)
	apply(t, d, false, decl("iris", "v1"))
	apply(t, d, false, decl("iris", "v2", canary(30)))
	if err := d.Rollback("iris"); err != nil {
		t.Fatal(err)
	}
	evs, err := reg.QueryEvents(t.Context(), registry.EventQuery{Model: "iris"})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind+" by "+e.Actor)
	}
	want := []string{
		"revision.created by apply", "traffic.changed by apply",
		"revision.ready by runtime",
		"revision.created by apply",
		"revision.ready by runtime", "traffic.changed by runtime",
		"traffic.changed by user",
	}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// TestDurableAppliedModelsSurviveRestart: a model that apply alone made
// outlives a restart and the config's read at start (a restart is no
// change of the config); the config's next change removes it, as the
// config is the whole desired state.
func TestDurableAppliedModelsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{now: t0}
	d, reg := durable(t, dir, "", clk)
	apply(t, d, true, decl("iris", "v1"))
	apply(t, d, false, decl("digits", "v1", source("apply")))
	reg.Close()
	d2, _ := durable(t, dir, "", clk)
	apply(t, d2, true, decl("iris", "v1"))
	if _, ok := d2.State().Model("digits"); !ok {
		t.Fatal("a model made by apply did not outlive a restart")
	}
	apply(t, d2, true, decl("iris", "v2"))
	if _, ok := d2.State().Model("digits"); ok {
		t.Error("the config's next change kept a model it does not declare")
	}
}

// TestDurableEventsNameTheClient: changes made through the admin API are
// logged as the client's: the X-Infergate-Actor header (the CLI sends the
// OS user), else the client's address.
func TestDurableEventsNameTheClient(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{now: t0}
	d, reg := durable(t, dir, "", clk)
	apply(t, d, false, decl("iris", "v1"))
	api, err := NewAPI(APIOptions{Deployments: d})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	post := func(path, body, actor string) {
		t.Helper()
		req, err := http.NewRequest("POST", srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if actor != "" {
			req.Header.Set(ActorHeader, actor)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
		}
	}
	yaml := `apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: iris}
spec:
  predictor:
    canaryTrafficPercent: 20
    model: {modelFormat: {name: onnx}, storageUri: /models/v2}
`
	body, _ := json.Marshal(ApplyRequest{Files: []ApplyFile{{Source: "iris.yaml", YAML: yaml}}})
	post("/api/v1/apply", string(body), "alice")
	readyAll(t, d)
	post("/api/v1/rollouts/iris/rollback", "{}", "")
	evs, err := reg.QueryEvents(t.Context(), registry.EventQuery{Model: "iris", Kind: "revision.created"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(evs); n != 2 || evs[1].Actor != "alice" {
		t.Errorf("revision.created events %+v; the second by alice", evs)
	}
	evs, err = reg.QueryEvents(t.Context(), registry.EventQuery{Model: "iris", Kind: "traffic.changed"})
	if err != nil {
		t.Fatal(err)
	}
	if last := evs[len(evs)-1]; last.Actor != "127.0.0.1" {
		t.Errorf("the rollback's traffic change by %q, want the client's address", last.Actor)
	}
}
