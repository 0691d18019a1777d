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
	"syscall"
	"testing"
	"time"
)

// TestScaleFromZeroAndBack sends 500 concurrent requests to a model with
// no replica: the activator holds them, the autoscaler starts a replica,
// and every request succeeds. With no traffic after that, the model
// returns to zero replicas after its stable window and grace period, and
// requests after that scale it from zero again.
func TestScaleFromZeroAndBack(t *testing.T) {
	iris, err := filepath.Abs(filepath.Join(samplesDir, "iris"))
	if err != nil {
		t.Fatal(err)
	}
	config := writeConfig(t, fmt.Sprintf(`apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
  annotations:
    autoscaling.knative.dev/window: "6s"
    autoscaling.knative.dev/scale-to-zero-grace-period: "1s"
spec:
  predictor:
    minReplicas: 0
    model: {modelFormat: {name: onnx}, storageUri: %q}
`, iris))
	p := startServe(t, "/v2/health/ready", "-config", config, "-data-dir", t.TempDir())
	cmd, rest, exited := p.cmd, p.rest, p.exited
	if kids := childrenOf(t, cmd.Process.Pid); len(kids) != 0 {
		t.Fatalf("%d replicas before any request, want 0", len(kids))
	}
	body, err := os.ReadFile(filepath.Join(samplesDir, "iris", "request.json"))
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	var wg sync.WaitGroup
	codes := make(chan int, n)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}, Timeout: time.Minute}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Post("http://"+rest+"/v2/models/iris/infer", "application/json", bytes.NewReader(body))
			if err != nil {
				codes <- -1
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	failed := 0
	for c := range codes {
		if c != http.StatusOK {
			failed++
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d requests to a model at zero failed", failed, n)
	}
	if kids := childrenOf(t, cmd.Process.Pid); len(kids) < 1 {
		t.Errorf("no replica after serving from zero")
	}
	// Back to zero: stable window 6 s + grace 1 s after the last request.
	deadline := time.Now().Add(45 * time.Second)
	for len(childrenOf(t, cmd.Process.Pid)) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if kids := childrenOf(t, cmd.Process.Pid); len(kids) != 0 {
		t.Errorf("%d replicas 45 s after the last request, want 0", len(kids))
	}
	// And from zero again: the gateway must have learnt that the replica
	// went, and hold these requests for a new one.
	for range 20 {
		wg.Go(func() {
			code, resp := postJSON(t, "http://"+rest+"/v2/models/iris/infer", body, nil)
			if code != http.StatusOK {
				t.Errorf("second scale from zero: status %d: %s", code, resp.Error)
			}
		})
	}
	wg.Wait()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err != nil {
		t.Errorf("serve exited with %v, want 0", err)
	}
}

// TestCrashAtStartFailsHeldRequests: a runtime that exits at start makes
// the requests held for it fail with its reason, not at their deadline:
// the request's deadline is minutes away, so only the crash can end it
// with a 503 naming the reason (the deadline would end it with a 504),
// and the activator's metrics count it as failed, not as timed out.
func TestCrashAtStartFailsHeldRequests(t *testing.T) {
	config := writeConfig(t, `apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: crashy
  annotations:
    infergate.io/command: "sh -c 'echo model weights are corrupt >&2; exit 3'"
spec:
  predictor:
    minReplicas: 0
    model: {modelFormat: {name: custom}}
`)
	p := startServe(t, "/v2/health/ready", "-config", config, "-data-dir", t.TempDir())
	body := strings.NewReader(`{"inputs":[]}`)
	req, err := http.NewRequest(http.MethodPost, "http://"+p.rest+"/v2/models/crashy/infer", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Timeout", "10m")
	// A generous bound on the wait, so that a request held to its
	// deadline fails the test instead of hanging it.
	resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
	if err != nil {
		t.Fatalf("the request held for a crashing runtime was not answered: %v", err)
	}
	var out jsonResponse
	_ = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status %d (%q), want 503 from the crash, not its 10m deadline", resp.StatusCode, out.Error)
	}
	// The cause, not the runtime's log line: that is in the log and the
	// admin API, never in a client's answer.
	mustContain(t, "error", out.Error, "exit status")
	if strings.Contains(out.Error, "model weights are corrupt") {
		t.Errorf("the client's error carries the runtime's log line: %q", out.Error)
	}
	// The activator counts why it let the request go: the crash, not the
	// deadline.
	mr, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mr.Body)
	mr.Body.Close()
	rejected := grepLines(metrics, `infergate_activator_rejected_total{model="crashy-00001"`)
	for _, want := range []string{`reason="failed"} 1`, `reason="deadline"} 0`} {
		if !strings.Contains(rejected, want) {
			t.Errorf("activator rejections lack %s:\n%s", want, rejected)
		}
	}
	if err := p.stop(t); err != nil {
		t.Errorf("serve exited with %v, want 0", err)
	}
}

// TestContainerConcurrencyHoldsTheRest: with containerConcurrency 1 and one
// replica, concurrent requests to a slow model go one at a time and all
// succeed. The runtime counts the requests it has in flight and answers
// with the most it has seen at once: every answer must say 1.
func TestContainerConcurrencyHoldsTheRest(t *testing.T) {
	config := writeConfig(t, fmt.Sprintf(`apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: slow
  annotations:
    infergate.io/command: %q
spec:
  predictor:
    containerConcurrency: 1
    maxReplicas: 1
    model:
      modelFormat: {name: slow}
      env: [{name: %s, value: 50ms}]
`, fakeRuntimeCommand(), slowRuntimeEnv))
	p := startServe(t, "/v2/models/slow/ready", "-config", config, "-data-dir", t.TempDir())
	const n = 8
	var wg sync.WaitGroup
	most := make(chan float64, n)
	for range n {
		wg.Go(func() {
			resp, err := http.Post("http://"+p.rest+"/v2/models/slow/infer", "application/json",
				strings.NewReader(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,2]}]}`))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var out jsonResponse
			var data []float64
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK ||
				len(out.Outputs) != 1 || json.Unmarshal(out.Outputs[0].Data, &data) != nil || len(data) != 1 {
				t.Errorf("status %d, %v: %+v", resp.StatusCode, err, out)
				return
			}
			most <- data[0]
		})
	}
	wg.Wait()
	close(most)
	answers, seen := 0, 0.0
	for m := range most {
		answers++
		seen = max(seen, m)
	}
	if answers != n || seen != 1 {
		t.Errorf("%d of %d requests answered; the runtime had up to %v in flight at once, want 1 (containerConcurrency)", answers, n, seen)
	}
	if err := p.stop(t); err != nil {
		t.Errorf("serve exited with %v, want 0", err)
	}
}
