package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infergate/infergate/controlplane"
)

// TestPanicModeThroughServe is the end-to-end half of panic mode: a burst
// of concurrent clients through `infergate serve` to a model with one
// replica puts its autoscaler in panic mode, the admin API's model row
// (what `infergate get models` shows) says so, more replicas start and
// become ready, and no request fails meanwhile. When panic starts, that it
// never scales down and when it ends are the autoscaler's rules, tested on
// the same settings under testing/synctest in package autoscaler
// (TestLoopPanicModeInAndOut).
func TestPanicModeThroughServe(t *testing.T) {
	// Target 2 concurrent requests per replica at 100% utilization, the
	// shortest stable window (6 s) and a panic window of 20% of it: ten
	// clients on one replica ask for five replicas, past the 200% panic
	// threshold, at the first decision that sees them.
	config := writeConfig(t, fmt.Sprintf(`apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: burst
  annotations:
    infergate.io/command: %q
    autoscaling.knative.dev/window: "6s"
    autoscaling.knative.dev/panic-window-percentage: "20"
    autoscaling.knative.dev/target: "2"
    autoscaling.knative.dev/target-utilization-percentage: "100"
spec:
  predictor:
    minReplicas: 1
    maxReplicas: 6
    model:
      modelFormat: {name: slow}
      env: [{name: %s, value: 50ms}]
`, fakeRuntimeCommand(), slowRuntimeEnv))
	p := startServe(t, "/v2/models/burst/ready", "-config", config, "-data-dir", t.TempDir())
	if rows := revisionRows(t, p.admin, "burst"); len(rows) != 1 || rows[0].Panic || rows[0].Ready != 1 {
		t.Fatalf("before the burst: %+v, want one ready replica out of panic", rows)
	}

	// Ten clients back to back until stopped, each bounded in requests
	// (50 ms each at the runtime) and in time.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 30 * time.Second}
	var (
		sent, failed atomic.Int64
		firstErr     atomic.Value
		wg           sync.WaitGroup
	)
	stop := make(chan struct{})
	deadline := time.Now().Add(time.Minute)
	for range 10 {
		wg.Go(func() {
			for range 1200 {
				select {
				case <-stop:
					return
				default:
				}
				if time.Now().After(deadline) {
					return
				}
				sent.Add(1)
				resp, err := client.Post("http://"+p.rest+"/v2/models/burst/infer", "application/json",
					strings.NewReader(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,2]}]}`))
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
	endLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer endLoad()

	// waitRow polls the model's row (every 50 ms, for at most 30 s)
	// until ok says it is what the test waits for.
	waitRow := func(what string, ok func(controlplane.RevisionRow) bool) controlplane.RevisionRow {
		t.Helper()
		var last controlplane.RevisionRow
		for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			rows := revisionRows(t, p.admin, "burst")
			if len(rows) != 1 {
				t.Fatalf("GET /api/v1/models: %d rows for burst, want 1", len(rows))
			}
			if last = rows[0]; ok(last) {
				return last
			}
		}
		t.Fatalf("%s: the row is still %+v", what, last)
		return last
	}
	inPanic := waitRow("panic mode under a burst of ten clients on one replica", func(r controlplane.RevisionRow) bool { return r.Panic && r.Desired > 1 })
	if inPanic.PanicAverage < 4 || !strings.Contains(inPanic.Decision, "panic") {
		t.Errorf("in panic: %+v, want a panic average of at least 4 (twice the ready replica's target of 2) and the panic rule named", inPanic)
	}
	waitRow("replicas started in panic become ready", func(r controlplane.RevisionRow) bool { return r.Ready > 1 })
	endLoad()
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed while the model scaled up; the first: %v", n, sent.Load(), firstErr.Load())
	}
	t.Logf("%d requests; in panic: %+v", sent.Load(), inPanic)
	if err := p.stop(t); err != nil {
		t.Errorf("serve exited with %v, want 0", err)
	}
}
