package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestPanicModeHoldsScaleUp drives a simulated model (50 ms per request,
// many slots, so that concurrency is what the clients make it) with one
// client, then with ten: the autoscaler enters panic mode, asks for more
// replicas, and never asks for fewer while the panic lasts, including after
// the burst ends and the panic window sees low load again. It reads only
// what users read: the admin API's model rows.
func TestPanicModeHoldsScaleUp(t *testing.T) {
	repo := t.TempDir()
	if err := os.MkdirAll(filepath.Join(repo, "burst"), 0o755); err != nil {
		t.Fatal(err)
	}
	simCfg := `{"simulate": {"latency_ms": 50, "slots": 64,
	  "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
	  "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]}}`
	if err := os.WriteFile(filepath.Join(repo, "burst", "config.json"), []byte(simCfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// Target 2 concurrent requests per replica at 100% utilization: one
	// client asks for one replica, ten for five. The stable window is the
	// shortest allowed (6 s); the panic window is 20% of it (2 s once
	// rounded up to the samples' second), and panic starts when it asks
	// for twice the ready replicas.
	config := writeConfig(t, fmt.Sprintf(`apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: burst
  annotations:
    autoscaling.knative.dev/window: "6s"
    autoscaling.knative.dev/panic-window-percentage: "20"
    autoscaling.knative.dev/target: "2"
    autoscaling.knative.dev/target-utilization-percentage: "100"
spec:
  predictor:
    minReplicas: 1
    maxReplicas: 6
    model: {modelFormat: {name: onnx}, storageUri: %q}
`, filepath.Join(repo, "burst")))
	// A later flag wins: the test picks the admin address to read it.
	admin := freeAddr(t)
	cmd, rest, exited, _ := startServe(t, "/v2/health/ready", "-config", config, "-data-dir", t.TempDir(), "-admin-addr", admin)

	url := "http://" + rest + "/v2/models/burst/infer"
	body := []byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,2]}]}`)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 30 * time.Second}
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	// load runs n clients back to back until stop is closed or each has
	// sent max requests (at 50 ms each, max bounds a client's time too).
	load := func(n, max int, stop <-chan struct{}) *sync.WaitGroup {
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				for range max {
					select {
					case <-stop:
						return
					default:
					}
					sent.Add(1)
					resp, err := client.Post(url, "application/json", bytes.NewReader(body))
					if err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							err = fmt.Errorf("status %d", resp.StatusCode)
						}
					}
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
				}
			})
		}
		return &wg
	}

	var samples []modelSample
	// watch polls the model's row every 100 ms for d.
	watch := func(phase string, d time.Duration, until func(modelSample) bool) {
		t.Helper()
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			rows := revisionRows(t, admin, "burst")
			if len(rows) != 1 {
				t.Fatalf("GET /api/v1/models: %d rows for burst, want 1", len(rows))
			}
			s := modelSample{modelStatus: rows[0], phase: phase}
			samples = append(samples, s)
			if until != nil && until(s) {
				return
			}
			time.Sleep(100 * time.Millisecond) // a sampling period, not a wait for an event
		}
	}

	// Steady low load: one client (about 1 request in flight) for 3 s,
	// and on until the end (at most 400 requests, 20 s).
	stopSteady := make(chan struct{})
	steady := load(1, 400, stopSteady)
	watch("steady", 3*time.Second, nil)
	// Burst: ten times the concurrency for 5 s (at most 200 requests, 10 s,
	// per client).
	stopBurst := make(chan struct{})
	burst := load(9, 200, stopBurst)
	watch("burst", 5*time.Second, nil)
	close(stopBurst)
	burst.Wait()
	// Back to one client: panic lasts a stable window (6 s) after the
	// panic window last crossed the threshold; watch until it ends.
	watch("after", 10*time.Second, func(s modelSample) bool { return !s.Panic })
	close(stopSteady)
	steady.Wait()

	var trace strings.Builder
	for _, s := range samples {
		fmt.Fprintf(&trace, "%-6s desired=%d ready=%d panic=%v stable=%.2f panic_avg=%.2f %s\n", s.phase, s.Desired, s.Ready, s.Panic, s.StableAverage, s.PanicAverage, s.Decision)
	}
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed while the model scaled up; the first: %v", n, sent.Load(), firstErr.Load())
	}
	var (
		sawPanic, maxPanicDesired = false, 0
		prev                      *modelSample
		startDesired              = -1
	)
	for i := range samples {
		s := &samples[i]
		if s.phase == "steady" && s.Panic {
			t.Errorf("panic mode under steady low load (one client, target 2): %+v", *s)
		}
		if s.phase == "burst" && startDesired < 0 {
			startDesired = s.Desired
		}
		if s.Panic {
			sawPanic = true
			maxPanicDesired = max(maxPanicDesired, s.Desired)
			if prev != nil && prev.Panic && s.Desired < prev.Desired {
				t.Errorf("desired went from %d to %d while in panic mode", prev.Desired, s.Desired)
			}
		}
		prev = s
	}
	switch {
	case !sawPanic:
		t.Errorf("no panic mode during a burst of 10x the steady concurrency")
	case maxPanicDesired <= startDesired:
		t.Errorf("desired stayed at most %d in panic mode, from %d before the burst: no scale-up", maxPanicDesired, startDesired)
	}
	if t.Failed() {
		t.Logf("admin rows, every 100 ms:\n%s", trace.String())
	}
	t.Logf("%d requests; desired %d before the burst, up to %d in panic", sent.Load(), startDesired, maxPanicDesired)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err != nil {
		t.Errorf("serve exited with %v, want 0", err)
	}
}

// modelSample is a model's row of GET /api/v1/models (it has one
// revision) and the phase of the test when it was read.
type modelSample struct {
	modelStatus
	phase string
}
