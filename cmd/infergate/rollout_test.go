package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// quickRollout is a rollout of two short steps, judged on error rate only
// (loopback latency is too noisy to gate on in a test).
const quickRollout = `    infergate.io/rollout: '{"steps":[{"weight":20,"minDuration":"1s","minRequests":30},{"weight":50,"minDuration":"1s","minRequests":30}],"maxErrorRateIncrease":0.01,"maxLatencyRatio":0}'
`

// load sends requests to model m from a few clients until stopped
// (bounded in count and time), counting failures by the version that
// failed.
type load struct {
	stop     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
	sent     atomic.Int64
	failures sync.Map // body -> count
	failed   atomic.Int64
}

func startLoadOn(rest, m string, clients int) *load {
	l := &load{stop: make(chan struct{})}
	deadline := time.Now().Add(2 * time.Minute)
	for range clients {
		l.wg.Go(func() {
			for i := 0; i < 50000 && time.Now().Before(deadline); i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				a, err := inferFake(rest, "/v2/models/"+m+"/infer", nil)
				if err != nil {
					a.body = err.Error()
				}
				l.sent.Add(1)
				if a.code != 200 {
					l.failed.Add(1)
					n, _ := l.failures.LoadOrStore(a.revision+": "+a.body, new(atomic.Int64))
					n.(*atomic.Int64).Add(1)
				}
			}
		})
	}
	return l
}

func (l *load) end() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// TestRolloutRollsBackFailingCanary declares a rollout and applies a
// revision whose runtime answers 500: the gateway rolls it back on its own
// once the canary has the step's requests, the stable revision takes all
// traffic again, and the only failed requests are the canary's before it
// was judged.
func TestRolloutRollsBackFailingCanary(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "m.yaml")
	write := func(yaml string) {
		t.Helper()
		tmp := filepath.Join(dir, ".tmp")
		if err := os.WriteFile(tmp, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write(fakeModelAnnotated("m", "1", 200, "", quickRollout))
	admin := freeAddr(t)
	_, rest, _, _ := startServe(t, "/v2/models/m/ready", "-config", dir, "-data-dir", t.TempDir(), "-admin-addr", admin)

	l := startLoadOn(rest, "m", 2)
	defer l.end()
	write(fakeModelAnnotated("m", "2", 500, "", quickRollout))
	waitTraffic(t, admin, "m", "m-00001=80,m-00002=20")
	waitTraffic(t, admin, "m", "m-00001=100,m-00002=0")
	// The state changed; the routes follow it a moment later, and requests
	// sent before then may still reach the canary.
	waitSent := func(n int64) {
		target, deadline := l.sent.Load()+n, time.Now().Add(30*time.Second)
		for l.sent.Load() < target && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitSent(100)
	judged := l.failed.Load()

	// From now on nothing fails.
	waitSent(300)
	l.end()
	if late := l.failed.Load() - judged; late > 0 {
		t.Errorf("%d requests failed after the rollback", late)
	}
	l.failures.Range(func(body, n any) bool {
		if !strings.HasPrefix(body.(string), "m-00002: ") {
			t.Errorf("%d requests failed that the stable revision answered: %s", n.(*atomic.Int64).Load(), body)
		}
		return true
	})
	if judged == 0 {
		t.Error("no request reached the failing canary: the test judged nothing")
	}

	out, err := exec.Command(binPath, "rollout", "status", "m", "-admin", admin).CombinedOutput()
	if err != nil {
		t.Fatalf("infergate rollout status: %v\n%s", err, out)
	}
	for _, want := range []string{"State:    rolled-back", "Traffic:  m-00001 100%", "rollback: step 1: error rate 100.00%"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rollout status lacks %q:\n%s", want, out)
		}
	}
	t.Logf("%d of %d requests failed, all on the canary before it was judged\n%s", judged, l.sent.Load(), out)
}

// TestRolloutPromotesHealthyCanary: a healthy revision passes both steps
// and is promoted on its own, with no failed request.
func TestRolloutPromotesHealthyCanary(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "m.yaml")
	if err := os.WriteFile(file, []byte(fakeModelAnnotated("m", "1", 200, "", quickRollout)), 0o644); err != nil {
		t.Fatal(err)
	}
	admin := freeAddr(t)
	_, rest, _, _ := startServe(t, "/v2/models/m/ready", "-config", dir, "-data-dir", t.TempDir(), "-admin-addr", admin)
	l := startLoadOn(rest, "m", 2)
	defer l.end()

	applied := filepath.Join(t.TempDir(), "v2.yaml")
	if err := os.WriteFile(applied, []byte(fakeModelAnnotated("m", "2", 200, "", quickRollout)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(binPath, "apply", "-f", applied, "-admin", admin).CombinedOutput(); err != nil {
		t.Fatalf("infergate apply: %v\n%s", err, out)
	}
	waitTraffic(t, admin, "m", "m-00001=50,m-00002=50")
	waitTraffic(t, admin, "m", "m-00001=0,m-00002=100")
	l.end()
	if n := l.failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed during a healthy rollout", n, l.sent.Load())
	}
	out, err := exec.Command(binPath, "rollout", "status", "m", "-admin", admin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "State:    promoted") {
		t.Errorf("rollout status: %v\n%s", err, out)
	}
}
