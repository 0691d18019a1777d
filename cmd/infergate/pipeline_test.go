package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/infergate/infergate/pipelines"
	"github.com/infergate/infergate/pipelines/pipelinesapi"
	"github.com/infergate/infergate/registry"
	"github.com/infergate/infergate/registry/registryapi"
)

const irisPipeline = "../../examples/pipelines/iris.yaml"

// irisLoad sends the sample iris request to the gateway from a few
// clients until ended (bounded in count and time), counting the answers
// by the revision that gave them and the failures with the first one.
type irisLoad struct {
	stop         chan struct{}
	once         sync.Once
	wg           sync.WaitGroup
	sent, failed atomic.Int64
	firstFailure atomic.Value
	byRevision   sync.Map // revision -> *atomic.Int64
}

func startIrisLoad(t *testing.T, rest string, clients int) *irisLoad {
	t.Helper()
	body, err := os.ReadFile("../../examples/models/iris/request.json")
	if err != nil {
		t.Fatal(err)
	}
	l := &irisLoad{stop: make(chan struct{})}
	deadline := time.Now().Add(2 * time.Minute)
	client := &http.Client{Timeout: 10 * time.Second}
	for range clients {
		l.wg.Go(func() {
			for i := 0; i < 200000 && time.Now().Before(deadline); i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := client.Post("http://"+rest+"/v2/models/iris/infer", "application/json", bytes.NewReader(body))
				l.sent.Add(1)
				if err != nil {
					l.failed.Add(1)
					l.firstFailure.CompareAndSwap(nil, err.Error())
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					l.failed.Add(1)
					l.firstFailure.CompareAndSwap(nil, fmt.Sprintf("%s: %d %s", resp.Header.Get("X-Model-Revision"), resp.StatusCode, b))
					continue
				}
				n, _ := l.byRevision.LoadOrStore(resp.Header.Get("X-Model-Revision"), new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			}
		})
	}
	t.Cleanup(l.end)
	return l
}

func (l *irisLoad) end() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

func (l *irisLoad) answeredBy(rev string) int64 {
	n, ok := l.byRevision.Load(rev)
	if !ok {
		return 0
	}
	return n.(*atomic.Int64).Load()
}

// quickCanary is examples/registry/iris-canary.yaml with a rollout of
// two short steps judged on error rate only (loopback latency on a busy
// machine is too noisy to gate a test on): the shipped file's steps last
// 10 s each.
func quickCanary(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../examples/registry/iris-canary.yaml")
	if err != nil {
		t.Fatal(err)
	}
	yaml := string(b)
	start := strings.Index(yaml, "    infergate.io/rollout: |\n")
	end := strings.Index(yaml, "spec:\n")
	if start < 0 || end < start || !strings.Contains(yaml, "storageUri: registry://iris@candidate") {
		t.Fatalf("iris-canary.yaml is not shaped as this test expects:\n%s", yaml)
	}
	policy := `    infergate.io/rollout: '{"steps":[{"weight":20,"minDuration":"2s","minRequests":50},{"weight":50,"minDuration":"2s","minRequests":50}],"maxErrorRateIncrease":0.01,"maxLatencyRatio":0}'
`
	path := filepath.Join(t.TempDir(), "iris-canary.yaml")
	if err := os.WriteFile(path, []byte(yaml[:start]+policy+yaml[end:]), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestIrisPipeline runs examples/pipelines/iris.yaml end to end on a
// running `infergate serve` whose iris follows registry://iris@prod
// (version 1, the sample model), under load: the run sweeps, trains,
// evaluates and registers version 2 with its metrics and lineage, rolls it
// out as a canary through the gateway's gates, and moves prod to it, with
// every step succeeded and no request failed; iris then answers from the
// new revision.
func TestIrisPipeline(t *testing.T) {
	data, dir := t.TempDir(), t.TempDir()
	reg, err := registry.Open(t.Context(), registry.Options{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	v1 := registerFile(t, reg, "iris", sampleIrisONNX)
	if _, err := reg.SetAlias(t.Context(), "iris", "prod", v1, "the sample model"); err != nil {
		t.Fatal(err)
	}
	if err := reg.Close(); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, dir, "iris.yaml", `apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
spec:
  predictor:
    model:
      modelFormat: {name: onnx}
      storageUri: registry://iris@prod
`)
	p := startServe(t, "/v2/models/iris/ready", "-config", dir, "-data-dir", data)
	waitTraffic(t, p.admin, "iris", "iris-00001=100")
	load := startIrisLoad(t, p.rest, 2)

	// Submit as `infergate run submit` does: the file, its directory.
	yaml, err := os.ReadFile(irisPipeline)
	if err != nil {
		t.Fatal(err)
	}
	base, err := filepath.Abs(filepath.Dir(irisPipeline))
	if err != nil {
		t.Fatal(err)
	}
	canary, _ := json.Marshal(quickCanary(t))
	api, err := registryapi.NewClient(p.admin, registryapi.ClientOptions{Token: p.localKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	// submit runs the pipeline and waits (bounded) for its end.
	submit := func(params map[string]json.RawMessage, limit time.Duration) pipelines.Run {
		t.Helper()
		var run pipelines.Run
		if err := api.Call(t.Context(), "POST", "/api/v1/runs", pipelinesapi.SubmitRequest{
			Pipeline: string(yaml), Source: irisPipeline, BaseDir: base, Params: params,
		}, &run); err != nil {
			t.Fatalf("submitting the pipeline: %v", err)
		}
		deadline := time.Now().Add(limit)
		for !run.State.Final() {
			if time.Now().After(deadline) {
				t.Fatalf("run %s still %s after %s: %+v", run.ID, run.State, limit, run.Steps)
			}
			time.Sleep(200 * time.Millisecond)
			if err := api.Call(t.Context(), "GET", "/api/v1/runs/"+string(run.ID), nil, &run); err != nil {
				t.Fatal(err)
			}
		}
		return run
	}
	started := time.Now()
	run := submit(map[string]json.RawMessage{"canary": canary}, 100*time.Second)
	took := time.Since(started)
	load.end()

	var revision string
	for _, s := range run.Steps {
		if s.State != pipelines.StepSucceeded {
			t.Errorf("step %s: %s %s", s.Name, s.State, s.Reason)
		}
		if s.Name == "deploy" {
			revision, _ = s.Outputs.Params["revision"].(string)
		}
	}
	if run.State != pipelines.RunSucceeded || len(run.Steps) != 8 {
		logs := ""
		for _, s := range run.Steps {
			for _, a := range s.Attempts {
				b, _ := os.ReadFile(filepath.Join(a.Dir, "log"))
				logs += fmt.Sprintf("--- %s attempt %d:\n%s\n", s.Name, a.Number, b)
			}
		}
		t.Fatalf("run %s %s (%s) with %d steps\n%s", run.ID, run.State, run.Reason, len(run.Steps), logs)
	}
	t.Logf("run %s succeeded in %s; %d requests during it", run.ID, took.Round(100*time.Millisecond), load.sent.Load())

	// The registry: version 2, READY, with the run's metrics and lineage,
	// and both aliases on it.
	var v registry.ModelVersion
	if err := api.Call(t.Context(), "GET", registryapi.VersionPath("iris", 2), nil, &v); err != nil {
		t.Fatal(err)
	}
	if v.Status != registry.StatusReady || v.Source.Kind != "pipelineRun" || v.Source.ID != string(run.ID) || v.Source.Name != "register" {
		t.Errorf("version 2: %s, source %+v; want READY from run %s step register", v.Status, v.Source, run.ID)
	}
	for _, m := range []string{"accuracy", "validation_accuracy"} {
		if x, ok := v.Metrics[m]; !ok || x < 0.9 {
			t.Errorf("version 2's metric %s = %v (present %v), want at least the threshold 0.9", m, x, ok)
		}
	}
	if got, want := v.CustomProperties["data.digest"].String(), sha256File(t, irisCSV); got != want {
		t.Errorf("version 2's data digest %q, want %q", got, want)
	}
	if v.Params["learning_rate"] == "" || v.Params["hidden"] == "" {
		t.Errorf("version 2's params %v lack the sweep's best learning_rate and hidden", v.Params)
	}
	for _, alias := range []string{"candidate", "prod"} {
		var a registry.Alias
		if err := api.Call(t.Context(), "GET", registryapi.AliasPath("iris", alias), nil, &a); err != nil || a.Version != 2 {
			t.Errorf("iris@%s: %+v, %v; want version 2", alias, a, err)
		}
	}

	// The gateway: the rollout promoted the new revision, which answers
	// now, and nothing failed on the way.
	if revision != "iris-00002" {
		t.Errorf("the deploy step's revision is %q, want iris-00002", revision)
	}
	waitTraffic(t, p.admin, "iris", "iris-00001=0,iris-00002=100")
	if n := load.failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed during the run; first: %v", n, load.sent.Load(), load.firstFailure.Load())
	}
	if load.answeredBy("iris-00002") == 0 {
		t.Error("no request was answered by the canary during its rollout")
	}
	req, err := http.NewRequestWithContext(t.Context(), "POST", "http://"+p.rest+"/v2/models/iris/infer", strings.NewReader(`{"inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var answer jsonResponse
	_ = json.Unmarshal(b, &answer)
	if resp.StatusCode != 200 || resp.Header.Get("X-Model-Revision") != "iris-00002" || len(answer.Outputs) != 1 {
		t.Fatalf("iris after the run: %d from %q: %s", resp.StatusCode, resp.Header.Get("X-Model-Revision"), b)
	}
	// A setosa flower, which the trained model must classify.
	if scores := floatsOf(t, answer.Outputs[0].Data); len(scores) != 3 || scores[0] < scores[1] || scores[0] < scores[2] {
		t.Errorf("the trained model's scores for a setosa: %v", scores)
	}

	// A threshold no model reaches: the steps up to evaluate are reused
	// from the first run, register's condition is false, and it, deploy
	// and promote are skipped; the run succeeds and nothing changes.
	again := submit(map[string]json.RawMessage{"canary": canary, "threshold": json.RawMessage(`"1.01"`)}, 60*time.Second)
	states := map[string]pipelines.StepState{}
	for _, s := range again.Steps {
		states[s.Name] = s.State
	}
	want := map[string]pipelines.StepState{
		"sweep": pipelines.StepCached, "init": pipelines.StepCached, "train": pipelines.StepCached, "evaluate": pipelines.StepCached,
		"register": pipelines.StepSkipped, "deploy": pipelines.StepSkipped, "promote": pipelines.StepSkipped, "summary": pipelines.StepSucceeded,
	}
	if diff := cmp.Diff(want, states); diff != "" || again.State != pipelines.RunSucceeded {
		t.Errorf("run %s below the threshold: %s (%s); step states (-want +got):\n%s", again.ID, again.State, again.Reason, diff)
	}
	var versions registry.VersionPage
	if err := api.Call(t.Context(), "GET", registryapi.ModelPath("iris")+"/versions", nil, &versions); err != nil || len(versions.Items) != 2 {
		t.Errorf("iris's versions after a run below the threshold: %d, %v; want 2", len(versions.Items), err)
	}
}
