package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infergate/infergate/registry"
)

// slowSecondStep is a rollout whose second step lasts an hour: a
// rollout at 50% stays there for the whole test.
const slowSecondStep = `    infergate.io/rollout: '{"steps":[{"weight":20,"minDuration":"1s","minRequests":30},{"weight":50,"minDuration":"1h","minRequests":30}],"maxErrorRateIncrease":0.01,"maxLatencyRatio":0}'
`

// TestRestartResumesRollout: `infergate serve` killed with SIGKILL in the
// middle of a rollout that `apply` started comes back on the same data
// directory with the same revisions, the same split and the rollout at
// its step, saying that the step's time and counts start again.
func TestRestartResumesRollout(t *testing.T) {
	dir, data := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "m.yaml"), []byte(fakeModelAnnotated("m", "1", 200, "", slowSecondStep)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, "/v2/models/m/ready", "-config", dir, "-data-dir", data)
	l := startLoadOn(p.rest, "m", 2)
	applied := filepath.Join(t.TempDir(), "v2.yaml")
	if err := os.WriteFile(applied, []byte(fakeModelAnnotated("m", "2", 200, "", slowSecondStep)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := p.cli("apply", "-f", applied, "-admin", p.admin).CombinedOutput(); err != nil {
		t.Fatalf("infergate apply: %v\n%s", err, out)
	}
	waitTraffic(t, p.admin, "m", "m-00001=50,m-00002=50")
	l.end()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited

	p2 := startServe(t, "/v2/models/m/ready", "-config", dir, "-data-dir", data)
	if got := traffic(revisionRows(t, p2.admin, "m")); got != "m-00001=50,m-00002=50" {
		t.Errorf("split after a restart: %s, want m-00001=50,m-00002=50", got)
	}
	out, err := exec.Command(binPath, "rollout", "status", "m", "-admin", p2.admin).CombinedOutput()
	status := string(out)
	if err != nil || !strings.Contains(status, "State:    progressing") || !strings.Contains(status, "infergate restarted: step 2 resumes at 50%") {
		t.Errorf("rollout status after a restart: %v\n%s", err, status)
	}
	// Both revisions serve again: the stable by its version, the canary
	// by its tag.
	if code, version, _ := inferVersion(t, p2.rest, "/v2/models/m/infer", map[string]string{"X-Model-Revision": "latest"}); code != 200 || version != "2" {
		t.Errorf("the canary after a restart: %d, version %s", code, version)
	}
}

// registerFile registers a READY version of model in the registry under
// data holding one file, model.onnx, read from path.
func registerFile(t *testing.T, reg *registry.Registry, model, path string) int64 {
	t.Helper()
	ctx := t.Context()
	if _, err := reg.GetModel(ctx, model); registry.CodeOf(err) == registry.CodeNotFound {
		if _, err := reg.CreateModel(ctx, registry.ModelCreate{Name: model}); err != nil {
			t.Fatal(err)
		}
	}
	v, err := reg.CreateVersion(ctx, model, registry.VersionCreate{Author: "test"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := reg.AddArtifact(ctx, model, v.Version, registry.ArtifactUpload{Name: "model.onnx", Format: "onnx"}, f); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.MarkReady(ctx, model, v.Version); err != nil {
		t.Fatal(err)
	}
	return v.Version
}

// TestAliasMoveRollsOut: iris deployed as registry://iris@prod follows the
// alias when another process (this test, on the same store) moves it:
// the new version becomes a revision rolled out by its policy, under
// load, with no failed request.
func TestAliasMoveRollsOut(t *testing.T) {
	data, dir := t.TempDir(), t.TempDir()
	reg, err := registry.Open(t.Context(), registry.Options{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	v1 := registerFile(t, reg, "iris", "../../examples/models/iris/1/model.onnx")
	v2 := registerFile(t, reg, "iris", "../../examples/models/iris-v2/2/model.onnx")
	if _, err := reg.SetAlias(t.Context(), "iris", "prod", v1, "first"); err != nil {
		t.Fatal(err)
	}
	yaml := `apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
  annotations:
` + quickRollout + `spec:
  predictor:
    model:
      modelFormat: {name: onnx}
      storageUri: registry://iris@prod
`
	if err := os.WriteFile(filepath.Join(dir, "iris.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, "/v2/models/iris/ready", "-config", dir, "-data-dir", data)
	body, err := os.ReadFile("../../examples/models/iris/request.json")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg           sync.WaitGroup
		stop         = make(chan struct{})
		sent, failed atomic.Int64
		firstFailure atomic.Value
		byRevision   sync.Map
		deadline     = time.Now().Add(2 * time.Minute)
		client       = &http.Client{Timeout: 10 * time.Second}
	)
	for range 2 {
		wg.Go(func() {
			for i := 0; i < 100000 && time.Now().Before(deadline); i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Post("http://"+p.rest+"/v2/models/iris/infer", "application/json", bytes.NewReader(body))
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%d %s", resp.StatusCode, b))
					continue
				}
				n, _ := byRevision.LoadOrStore(resp.Header.Get("X-Model-Revision"), new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			}
		})
	}
	end := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer end()
	waitTraffic(t, p.admin, "iris", "iris-00001=100")
	if _, err := reg.SetAlias(t.Context(), "iris", "prod", v2, "better"); err != nil {
		t.Fatal(err)
	}
	waitTraffic(t, p.admin, "iris", "iris-00001=50,iris-00002=50")
	waitTraffic(t, p.admin, "iris", "iris-00001=0,iris-00002=100")
	end()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed while the alias's move rolled out; first: %v", n, sent.Load(), firstFailure.Load())
	}
	if n, ok := byRevision.Load("iris-00002"); !ok || n.(*atomic.Int64).Load() == 0 {
		t.Error("no request was answered by iris-00002")
	}
	out, err := exec.Command(binPath, "rollout", "status", "iris", "-admin", p.admin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "State:    promoted") {
		t.Errorf("rollout status: %v\n%s", err, out)
	}
}
