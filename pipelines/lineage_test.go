package pipelines

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/infergate/infergate/registry"
)

const lineageYAML = `
apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: lineage}
spec:
  steps:
    - name: train
      command: [sh, -c, 'printf weights > outputs/artifacts/model; mkdir -p outputs/artifacts/data/sub; printf a > outputs/artifacts/data/a.csv; printf bb > outputs/artifacts/data/sub/b.csv']
      outputs: {artifacts: [model, data]}
    - name: use
      command: [sh, -c, 'cat {{.Inputs.model}} {{.Inputs.data}}/a.csv > outputs/artifacts/copy']
      inputs:
        model: {from: steps.train.outputs.model}
        data: {from: steps.train.outputs.data}
      outputs: {artifacts: [copy]}
`

// readBlob returns the bytes of a blob of the registry.
func readBlob(t *testing.T, reg *registry.Registry, digest string) string {
	t.Helper()
	f, b, err := reg.OpenBlob(t.Context(), digest)
	if err != nil {
		t.Fatalf("OpenBlob %s: %v", digest, err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != b.Size {
		t.Errorf("OpenBlob %s: %d bytes, Blob says %d", digest, len(data), b.Size)
	}
	return string(data)
}

func TestArtifactsStoredWithLineage(t *testing.T) {
	te := newTestEnv(t, nil)
	run := te.run(mustParse(t, lineageYAML), nil, SubmitOptions{})
	wantState(t, run, RunSucceeded)
	train := step(t, run, "train")
	wantLineage := func(digest, name string) {
		t.Helper()
		lin, err := te.reg.BlobLineage(t.Context(), digest)
		if err != nil {
			t.Fatalf("BlobLineage %s: %v", name, err)
		}
		if len(lin) != 1 {
			t.Fatalf("BlobLineage %s (%s) = %+v, want one row", name, digest, lin)
		}
		got := lin[0]
		want := registry.Lineage{Digest: digest, Size: got.Size, Run: string(run.ID), Step: "train", Iteration: -1, Attempt: 1, Name: name, Actor: got.Actor, Time: got.Time}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("lineage of %s (-want +got):\n%s", name, diff)
		}
	}

	// A file: its blob holds the bytes the step wrote.
	model := train.Outputs.Artifacts["model"]
	wantLineage(model.Digest, "model")
	if got := readBlob(t, te.reg, model.Digest); got != "weights" {
		t.Errorf("model blob = %q, want weights", got)
	}

	// A directory: each file is a blob, and the recorded digest is that of
	// its manifest, stored too, listing those blobs.
	data := train.Outputs.Artifacts["data"]
	if !data.Dir {
		t.Fatalf("data artifact %+v is not a directory", data)
	}
	files := map[string]string{"a.csv": "a", "sub/b.csv": "bb"}
	var arts []registry.Artifact
	for name, content := range files {
		b, err := te.reg.PutBlob(t.Context(), strings.NewReader(content), "", registry.Lineage{Run: "other", Step: "check", Iteration: -1, Attempt: 1, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		arts = append(arts, registry.Artifact{Name: name, Digest: b.Digest, Size: b.Size})
		lin, err := te.reg.BlobLineage(t.Context(), b.Digest)
		if err != nil || len(lin) != 2 || lin[0].Run != string(run.ID) || lin[0].Name != "data/"+name {
			t.Errorf("BlobLineage of data/%s = %+v, %v: want the run's train step first", name, lin, err)
		}
		if got := readBlob(t, te.reg, b.Digest); got != content {
			t.Errorf("blob of data/%s = %q, want %q", name, got, content)
		}
	}
	if data.Digest != registry.ManifestDigest(arts) {
		t.Errorf("data digest %s, want the manifest digest %s", data.Digest, registry.ManifestDigest(arts))
	}
	wantLineage(data.Digest, "data")
	if got, want := readBlob(t, te.reg, data.Digest), string(registry.Manifest(arts)); got != want {
		t.Errorf("data manifest blob = %q, want %q", got, want)
	}

	// Downstream steps still read the attempt directory's files.
	use := step(t, run, "use")
	if !strings.HasPrefix(train.Outputs.Artifacts["model"].Path, filepath.Join(te.dir, "runs")) {
		t.Errorf("model path %s is not in the run's directory", model.Path)
	}
	if got, err := os.ReadFile(use.Outputs.Artifacts["copy"].Path); err != nil || string(got) != "weightsa" {
		t.Errorf("use's copy = %q, %v, want weightsa", got, err)
	}
	wantLineageStep := func(digest, stepName string) {
		t.Helper()
		lin, err := te.reg.BlobLineage(t.Context(), digest)
		if err != nil || len(lin) != 1 || lin[0].Step != stepName {
			t.Errorf("BlobLineage %s = %+v, %v: want step %s", digest, lin, err, stepName)
		}
	}
	wantLineageStep(use.Outputs.Artifacts["copy"].Digest, "use")
}

// An artifact the registry cannot store fails the attempt, naming it.
func TestArtifactStoreFailureFailsAttempt(t *testing.T) {
	dir := t.TempDir()
	reg, err := registry.Open(t.Context(), registry.Options{DataDir: dir, Store: testStore(t), MaxArtifactBytes: 4})
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open(t.Context(), Options{Registry: reg, DataDir: dir, KillGrace: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.Close()
		reg.Close()
	})
	te := &testEnv{t: t, dir: dir, reg: reg, e: e}
	run := te.run(mustParse(t, lineageYAML), nil, SubmitOptions{})
	wantState(t, run, RunFailed)
	train := step(t, run, "train")
	if train.State != StepFailed || !strings.Contains(train.Reason, "output data: storing it in the registry") ||
		!strings.Contains(train.Reason, "4-byte limit") {
		t.Errorf("train: %s %q, want failed naming the data output (its manifest is over the limit) and the limit", train.State, train.Reason)
	}
}
