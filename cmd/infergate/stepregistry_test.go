package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/infergate/infergate/controlplane"
	"github.com/infergate/infergate/registry"
	"github.com/infergate/infergate/registry/registryapi"
	"github.com/infergate/infergate/serving"
)

const sampleIrisONNX = "../../examples/models/iris/1/model.onnx"

// stepRegistryServer serves a fresh registry's API on loopback, as the admin
// port does, and returns the registry (to check what the steps did) and
// the server's address.
func stepRegistryServer(t *testing.T, opts registryapi.Options) (*registry.Registry, string) {
	t.Helper()
	reg, err := registry.Open(t.Context(), registry.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	h, err := registryapi.New(reg, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return reg, strings.TrimPrefix(srv.URL, "http://")
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// stepFunc is a step's function: stepRegister, stepDeploy.
type stepFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// runStepFunc runs a step's function in process, bounded, and returns its
// output.
func runStepFunc(t *testing.T, step stepFunc, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	err := step(ctx, args, &out, &errOut)
	return out.String(), err
}

func register(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runStepFunc(t, stepRegister, args...)
}

func deploy(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runStepFunc(t, stepDeploy, args...)
}

func writeTestFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// modelDir is a directory holding the sample iris model as model.onnx, as
// the pipeline's train step writes it.
func modelDir(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(sampleIrisONNX)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "model")
	writeTestFile(t, dir, "model.onnx", string(b))
	return dir
}

// TestStepRegister: inside a pipeline run, register makes a READY version
// holding the directory's files with their digests, the metrics files'
// top-level numbers, the params, the run as its source and the data's
// digest, moves the alias, writes the version number, and finds the admin
// API in INFERGATE_ADMIN. -version then moves another alias alone.
func TestStepRegister(t *testing.T) {
	reg, addr := stepRegistryServer(t, registryapi.Options{})
	t.Setenv("INFERGATE_ADMIN", addr)
	t.Setenv("INFERGATE_RUN_ID", "iris-abc123")
	t.Setenv("INFERGATE_PIPELINE", "iris")
	t.Setenv("INFERGATE_STEP", "register")
	t.Setenv("INFERGATE_ATTEMPT", "2")
	dir := t.TempDir()
	trainMetrics := writeTestFile(t, dir, "train.json", `{"validation_accuracy": 0.95, "loss": 0.125, "classes": 3, "loss_curve": [1, 0.5], "optimizer": "adam"}`)
	evalMetrics := writeTestFile(t, dir, "eval.json", `{"accuracy": 0.97, "classes": 3, "per_class": {"0": {"f1": 1}}}`)
	outVersion := filepath.Join(dir, "out", "version")
	model := modelDir(t)

	out, err := register(t, "-model", "iris", "-dir", model, "-metrics", trainMetrics, "-metrics", evalMetrics,
		"-param", "learning_rate=0.01", "-param", "hidden=16", "-data", irisCSV, "-description", "a test",
		"-alias", "candidate", "-out-version", outVersion)
	if err != nil {
		t.Fatalf("register: %v\n%s", err, out)
	}
	mustContain(t, "output", out, "registered iris version 1: READY")
	mustContain(t, "output", out, "iris@candidate -> version 1 (new)")

	v, err := reg.GetVersion(t.Context(), "iris", 1)
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != registry.StatusReady {
		t.Errorf("status %s %q, want READY", v.Status, v.StatusMessage)
	}
	if diff := cmp.Diff(map[string]float64{"validation_accuracy": 0.95, "loss": 0.125, "classes": 3, "accuracy": 0.97}, v.Metrics); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"learning_rate": "0.01", "hidden": "16"}, v.Params); diff != "" {
		t.Errorf("params (-want +got):\n%s", diff)
	}
	if want := (registry.Source{Kind: "pipelineRun", ID: "iris-abc123", Name: "register", Actor: "pipeline/iris-abc123"}); v.Source != want {
		t.Errorf("source %+v, want %+v", v.Source, want)
	}
	abs, _ := filepath.Abs(irisCSV)
	props := map[string]string{}
	for k, p := range v.CustomProperties {
		props[k] = p.String()
		if p.Kind() == registry.KindInt {
			props[k] = "int:" + strconv.FormatInt(p.Int(), 10)
		}
	}
	if diff := cmp.Diff(map[string]string{
		"pipeline.run": "iris-abc123", "pipeline.name": "iris", "pipeline.step": "register", "pipeline.attempt": "int:2",
		"data.path": abs, "data.digest": sha256File(t, irisCSV),
	}, props); diff != "" {
		t.Errorf("custom properties (-want +got):\n%s", diff)
	}
	if len(v.Artifacts) != 1 || v.Artifacts[0].Name != "model.onnx" || v.Artifacts[0].Format != "onnx" || v.Artifacts[0].Digest != sha256File(t, sampleIrisONNX) {
		t.Errorf("artifacts %+v, want model.onnx (onnx) with the sample's digest", v.Artifacts)
	}
	if v.Description != "a test" {
		t.Errorf("description %q", v.Description)
	}
	if a, err := reg.GetAlias(t.Context(), "iris", "candidate"); err != nil || a.Version != 1 {
		t.Errorf("candidate: %+v, %v; want version 1", a, err)
	}
	if b, err := os.ReadFile(outVersion); err != nil || string(b) != "1\n" {
		t.Errorf("-out-version: %q, %v; want 1", b, err)
	}

	// A second version, then -version moves prod alone, saying from where.
	if out, err := register(t, "-model", "iris", "-file", filepath.Join(model, "model.onnx")); err != nil {
		t.Fatalf("register: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		version, want string
	}{{"1", "iris@prod -> version 1 (new)"}, {"2", "iris@prod -> version 2 (was version 1)"}} {
		out, err := register(t, "-model", "iris", "-version", tc.version, "-alias", "prod", "-reason", "promoted")
		if err != nil {
			t.Fatalf("register -version %s: %v\n%s", tc.version, err, out)
		}
		mustContain(t, "output", out, tc.want)
	}
	hist, err := reg.AliasHistory(t.Context(), "iris", "prod", 10)
	if err != nil || len(hist) != 2 || hist[0].Reason != "promoted" || hist[0].Actor != "pipeline/iris-abc123" {
		t.Errorf("prod's history: %+v, %v", hist, err)
	}
}

// TestStepRegisterErrors: bad flags, missing or malformed inputs and an
// admin API that does not answer are errors that say what is wrong, and
// none of them registers anything.
func TestStepRegisterErrors(t *testing.T) {
	reg, addr := stepRegistryServer(t, registryapi.Options{})
	t.Setenv("INFERGATE_ADMIN", addr)
	dir := t.TempDir()
	model := modelDir(t)
	bad := writeTestFile(t, dir, "bad.json", `{"accuracy": 0.9,`)
	list := writeTestFile(t, dir, "list.json", `[0.9]`)
	a := writeTestFile(t, dir, "a.json", `{"accuracy": 0.9}`)
	b := writeTestFile(t, dir, "b.json", `{"accuracy": 0.8}`)
	dead := deadAddr(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no model", []string{"-dir", model}, "-model is required"},
		{"no files", []string{"-model", "iris"}, "give the model's files with -file PATH or -dir PATH"},
		{"file and dir", []string{"-model", "iris", "-dir", model, "-file", sampleIrisONNX}, "(one of them)"},
		{"missing file", []string{"-model", "iris", "-file", filepath.Join(dir, "nope.onnx")}, "nope.onnx: no such file or directory"},
		{"missing dir", []string{"-model", "iris", "-dir", filepath.Join(dir, "nope")}, "nope: no such file or directory"},
		{"file is a dir", []string{"-model", "iris", "-file", model}, "is a directory: give it with -dir"},
		{"empty dir", []string{"-model", "iris", "-dir", t.TempDir()}, "holds no file"},
		{"missing metrics", []string{"-model", "iris", "-dir", model, "-metrics", filepath.Join(dir, "m.json")}, "-metrics: open " + filepath.Join(dir, "m.json")},
		{"malformed metrics", []string{"-model", "iris", "-dir", model, "-metrics", bad}, "-metrics " + bad + ": want a JSON object"},
		{"metrics not an object", []string{"-model", "iris", "-dir", model, "-metrics", list}, "want a JSON object"},
		{"metrics that disagree", []string{"-model", "iris", "-dir", model, "-metrics", a, "-metrics", b}, "accuracy is 0.9 in " + a + " but 0.8 in " + b},
		{"bad param", []string{"-model", "iris", "-dir", model, "-param", "lr"}, `-param "lr": want key=value`},
		{"missing data", []string{"-model", "iris", "-dir", model, "-data", filepath.Join(dir, "d.csv")}, "-data: open"},
		{"reason without alias", []string{"-model", "iris", "-dir", model, "-reason", "why"}, "give the alias with -alias"},
		{"version without alias", []string{"-model", "iris", "-version", "1"}, "give it with -alias"},
		{"version with files", []string{"-model", "iris", "-version", "1", "-alias", "prod", "-dir", model}, "describe a new one"},
		{"api down", []string{"-model", "iris", "-dir", model, "-admin", dead}, "the admin API at http://" + dead + " did not answer (is infergate serve running there?"},
		{"api down moving an alias", []string{"-model", "iris", "-version", "1", "-alias", "prod", "-admin", dead}, "did not answer"},
		{"bad model name", []string{"-model", "Iris!", "-dir", model}, "breaks the naming rule"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := register(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	page, err := reg.ListModels(t.Context(), registry.ListOptions{})
	if err != nil || len(page.Items) != 0 {
		t.Errorf("models after the failures: %+v, %v; want none", page, err)
	}
}

// TestStepRegisterUploadFails: a version whose upload the server refuses
// is left FAILED with the reason, not PENDING; no alias moves, no version
// number is written, and an alias cannot be moved to it.
func TestStepRegisterUploadFails(t *testing.T) {
	reg, addr := stepRegistryServer(t, registryapi.Options{MaxUploadBytes: 100})
	outVersion := filepath.Join(t.TempDir(), "version")
	_, err := register(t, "-model", "iris", "-dir", modelDir(t), "-alias", "candidate", "-out-version", outVersion, "-admin", addr)
	if err == nil || !strings.Contains(err.Error(), "uploading") || !strings.Contains(err.Error(), "iris version 1 marked FAILED") {
		t.Fatalf("err = %v, want the upload's failure and the version marked FAILED", err)
	}
	v, err := reg.GetVersion(t.Context(), "iris", 1)
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != registry.StatusFailed || !strings.Contains(v.StatusMessage, "registration failed") || !strings.Contains(v.StatusMessage, "100") {
		t.Errorf("version 1: %s %q, want FAILED naming the upload's limit", v.Status, v.StatusMessage)
	}
	if _, err := reg.GetAlias(t.Context(), "iris", "candidate"); registry.CodeOf(err) != registry.CodeNotFound {
		t.Errorf("candidate after a failed registration: %v, want not found", err)
	}
	if _, err := os.Stat(outVersion); !os.IsNotExist(err) {
		t.Errorf("-out-version written after a failed registration: %v", err)
	}
	_, err = register(t, "-model", "iris", "-version", "1", "-alias", "prod", "-admin", addr)
	if err == nil || !strings.Contains(err.Error(), "moving iris@prod to version 1") || !strings.Contains(err.Error(), "FAILED") {
		t.Errorf("moving an alias to a FAILED version: %v", err)
	}
}

// TestRolloutVerdict: deploy -wait ends when the revision's rollout
// promotes it or it serves without one, fails when it is rolled back,
// superseded, failed or gone, and goes on while it waits or progresses.
func TestRolloutVerdict(t *testing.T) {
	revs := []controlplane.RevisionInfo{{Name: "m-00001", Status: controlplane.RevisionReady}, {Name: "m-00002", Status: controlplane.RevisionReady}}
	status := func(canary string, state controlplane.RolloutState, reason string, mod func(*controlplane.RolloutStatus)) controlplane.RolloutStatus {
		st := controlplane.RolloutStatus{Model: "m", Canary: canary, Stable: "m-00001", State: state, Reason: reason,
			Revisions: append([]controlplane.RevisionInfo(nil), revs...)}
		if mod != nil {
			mod(&st)
		}
		return st
	}
	for _, tc := range []struct {
		name    string
		st      controlplane.RolloutStatus
		done    bool
		wantErr string
	}{
		{"promoted", status("m-00002", controlplane.RolloutPromoted, "step 2 of 2 passed", nil), true, ""},
		{"progressing", status("m-00002", controlplane.RolloutProgressing, "", nil), false, ""},
		{"paused", status("m-00002", controlplane.RolloutPaused, "paused by hand", nil), false, ""},
		{"rolled back", status("m-00002", controlplane.RolloutRolledBack, "step 1: error rate 100.00% > 0.00% + 1.00%", nil), true, "revision m-00002 rolled back: step 1: error rate 100.00%"},
		{"superseded", status("m-00002", controlplane.RolloutSuperseded, "revision m-00003 replaces the canary", nil), true, "superseded: revision m-00003"},
		{"pending", status("m-00001", controlplane.RolloutPromoted, "", func(st *controlplane.RolloutStatus) {
			st.Pending = "m-00002"
			st.Revisions[1].Status = controlplane.RevisionPending
		}), false, ""},
		{"failed to start", status("m-00001", "", "", func(st *controlplane.RolloutStatus) {
			st.Revisions[1].Status, st.Revisions[1].Reason = controlplane.RevisionFailed, "exit status 3"
		}), true, "revision m-00002 failed to start: exit status 3"},
		{"no policy", status("m-00002", "", "", nil), true, ""},
		{"an older rollout", status("m-00001", controlplane.RolloutRolledBack, "old", nil), true, ""},
		{"gone", status("m-00001", "", "", func(st *controlplane.RolloutStatus) { st.Revisions = st.Revisions[:1] }), true, "no longer kept (revisions: m-00001)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done, err := rolloutVerdict(tc.st, "m-00002")
			if done != tc.done || (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("rolloutVerdict = %v, %v; want %v, %q", done, err, tc.done, tc.wantErr)
			}
		})
	}
}

// TestStepDeployErrors: bad flags, a missing file and an admin API that
// does not answer are errors that say so.
func TestStepDeployErrors(t *testing.T) {
	dir := t.TempDir()
	isvc := writeTestFile(t, dir, "m.yaml", fakeModel("m", "1", 200, ""))
	dead := deadAddr(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no file", nil, "give the declarations with -f"},
		{"missing file", []string{"-f", filepath.Join(dir, "nope.yaml")}, "nope.yaml"},
		{"bad timeout", []string{"-f", isvc, "-wait", "-timeout", "0s"}, "want positive durations"},
		{"api down", []string{"-f", isvc, "-admin", dead}, "the admin API at http://" + dead + " did not answer (is infergate serve running there?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := deploy(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestStepDeployWait: deploy -wait against a running gateway fails with
// the gate's reason when the canary is rolled back (its runtime answers
// 500), and succeeds once a healthy canary is promoted, printing the
// decisions; a declaration the gateway refuses is an error naming it.
func TestStepDeployWait(t *testing.T) {
	dir := t.TempDir()
	writeTestFile(t, dir, "m.yaml", fakeModelAnnotated("m", "1", 200, "", quickRollout))
	p := startServe(t, "/v2/models/m/ready", "-config", dir, "-data-dir", t.TempDir())
	// The step runs in this process, as a user's CLI would: with the
	// local key (the declarations name a command).
	t.Setenv(envKeyFile, filepath.Join(p.dataDir, serving.LocalKeyFile))
	l := startLoadOn(p.rest, "m", 2)
	defer l.end()
	files := t.TempDir()

	failing := writeTestFile(t, files, "failing.yaml", fakeModelAnnotated("m", "2", 500, "", quickRollout))
	revision := filepath.Join(files, "revision")
	out, err := deploy(t, "-f", failing, "-wait", "-timeout", "90s", "-admin", p.admin, "-out-revision", revision)
	if err == nil || !strings.Contains(err.Error(), "m: revision m-00002 rolled back: step 1: error rate") {
		t.Fatalf("deploy of a failing canary: %v, want its rollback's reason\n%s", err, out)
	}
	mustContain(t, "output", out, "inferenceservice/m revised: revision m-00002")
	mustContain(t, "output", out, "step 1  rollback: step 1: error rate")
	if b, err := os.ReadFile(revision); err != nil || string(b) != "m-00002\n" {
		t.Errorf("-out-revision: %q, %v", b, err)
	}

	healthy := writeTestFile(t, files, "healthy.yaml", fakeModelAnnotated("m", "3", 200, "", quickRollout))
	out, err = deploy(t, "-f", healthy, "-wait", "-timeout", "90s", "-admin", p.admin)
	if err != nil {
		t.Fatalf("deploy of a healthy canary: %v\n%s", err, out)
	}
	t.Logf("deploy of a healthy canary:\n%s", out)
	for _, want := range []string{"revision m-00003", "step 1  start:", "step 1  advance:", "step 2  promote:", "m: revision m-00003 promoted"} {
		mustContain(t, "output", out, want)
	}
	// Applying it again changes nothing, and its verdict stands.
	if out, err = deploy(t, "-f", healthy, "-wait", "-admin", p.admin); err != nil || !strings.Contains(out, "inferenceservice/m unchanged") {
		t.Errorf("deploy of the same declaration: %v\n%s", err, out)
	}

	bad := writeTestFile(t, files, "bad.yaml", fakeModel("m", "4", 200, "    minReplicas: -1\n"))
	if _, err := deploy(t, "-f", bad, "-wait", "-admin", p.admin); err == nil || !strings.Contains(err.Error(), "bad.yaml: document 1: spec.predictor.minReplicas: -1") {
		t.Errorf("deploy of a bad declaration: %v", err)
	}
}
