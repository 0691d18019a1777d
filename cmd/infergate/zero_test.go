package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
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
	cmd, rest, exited, _ := startServe(t, "/v2/health/ready", "-config", config, "-data-dir", t.TempDir())
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
// the requests held for it fail quickly with its reason, not at their
// deadline.
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
	cmd, rest, exited, _ := startServe(t, "/v2/health/ready", "-config", config, "-data-dir", t.TempDir())
	start := time.Now()
	code, resp := postJSON(t, "http://"+rest+"/v2/models/crashy/infer", []byte(`{"inputs":[]}`), map[string]string{"X-Request-Timeout": "30s"})
	if code != http.StatusServiceUnavailable {
		t.Errorf("status %d (%q), want 503", code, resp.Error)
	}
	mustContain(t, "error", resp.Error, "model weights are corrupt")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("held request failed after %s; a crash at start should fail it quickly", d)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err != nil {
		t.Errorf("serve exited with %v, want 0", err)
	}
}

// TestContainerConcurrencyHoldsTheRest: with containerConcurrency 1 and one
// replica, concurrent requests to a slow model go one at a time and all
// succeed; the runtime never sees two at once.
func TestContainerConcurrencyHoldsTheRest(t *testing.T) {
	repo := t.TempDir()
	if err := os.MkdirAll(filepath.Join(repo, "slow"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A simulated model with 4 slots would take 4 at once; the limit of
	// one per replica must keep it to one.
	simCfg := `{"simulate": {"latency_ms": 20, "slots": 4,
	  "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
	  "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]}}`
	if err := os.WriteFile(filepath.Join(repo, "slow", "config.json"), []byte(simCfg), 0o644); err != nil {
		t.Fatal(err)
	}
	config := writeConfig(t, fmt.Sprintf(`apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: slow}
spec:
  predictor:
    containerConcurrency: 1
    maxReplicas: 1
    model: {modelFormat: {name: onnx}, storageUri: %q}
`, filepath.Join(repo, "slow")))
	cmd, rest, exited, _ := startServe(t, "/v2/health/ready", "-config", config, "-data-dir", t.TempDir())
	const n = 8
	var wg sync.WaitGroup
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, resp := postJSON(t, "http://"+rest+"/v2/models/slow/infer",
				[]byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,2]}]}`), nil)
			if code != http.StatusOK {
				t.Errorf("status %d: %s", code, resp.Error)
			}
		}()
	}
	wg.Wait()
	// One at a time at 20 ms each: the last answer comes after about
	// 8 x 20 ms; four at once would have finished in about 2 x 20 ms.
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("8 requests of 20 ms finished in %s: more than one ran at once on the replica", d)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err != nil {
		t.Errorf("serve exited with %v, want 0", err)
	}
}
