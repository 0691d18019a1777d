package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
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
	p := startServe(t, "/v2/models/m/ready", "-config", dir, "-data-dir", t.TempDir())
	rest, admin := p.rest, p.admin

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
	p := startServe(t, "/v2/models/m/ready", "-config", dir, "-data-dir", t.TempDir())
	rest, admin := p.rest, p.admin
	l := startLoadOn(rest, "m", 2)
	defer l.end()

	applied := filepath.Join(t.TempDir(), "v2.yaml")
	if err := os.WriteFile(applied, []byte(fakeModelAnnotated("m", "2", 200, "", quickRollout)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := p.cli("apply", "-f", applied, "-admin", admin).CombinedOutput(); err != nil {
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

// TestRolloutCommandArgs runs `infergate rollout` with its flags before,
// between and after the action and the model, against a stand-in admin
// API that records the calls: each order makes the same call, -h prints
// the usage and calls nothing, and a missing, extra or unknown argument is
// an error that calls nothing.
func TestRolloutCommandArgs(t *testing.T) {
	var (
		mu    sync.Mutex
		calls []string
	)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls = append(calls, r.Method+" "+r.URL.EscapedPath())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"model":"iris","canary":"iris-00002","stable":"iris-00001","state":"progressing","step":1,"weights":{"iris-00001":90,"iris-00002":10}}`)
	}))
	defer api.Close()
	admin := strings.TrimPrefix(api.URL, "http://")
	const usage = "Usage: infergate rollout status|promote|rollback|pause|resume MODEL"
	for _, tc := range []struct {
		name     string
		args     []string
		wantCall string // "" for none
		wantOut  string // in stdout
		wantErr  string // in the error; "help" for flag.ErrHelp
	}{
		{"flags after", []string{"status", "iris", "-admin", admin, "-json"}, "GET /api/v1/rollouts/iris", `"state": "progressing"`, ""},
		{"flag before the model", []string{"status", "-json", "iris", "-admin", admin}, "GET /api/v1/rollouts/iris", `"state": "progressing"`, ""},
		{"flags first", []string{"-json", "-admin", admin, "status", "iris"}, "GET /api/v1/rollouts/iris", `"state": "progressing"`, ""},
		{"text", []string{"-admin=" + admin, "status", "iris"}, "GET /api/v1/rollouts/iris", "State:    progressing", ""},
		{"action", []string{"promote", "-admin", admin, "iris"}, "POST /api/v1/rollouts/iris/promote", "Canary:   iris-00002", ""},
		{"model escaped", []string{"pause", "-admin", admin, "a/b"}, "POST /api/v1/rollouts/a%2Fb/pause", "Model:    iris", ""},
		{"help after the action", []string{"status", "-h"}, "", "", "help"},
		{"help after the model", []string{"status", "iris", "-h", "-admin", admin}, "", "", "help"},
		{"help alone", []string{"-h"}, "", "", "help"},
		{"no model", []string{"status", "-admin", admin}, "", "", "say what to do and to which model"},
		{"extra argument", []string{"status", "iris", "-admin", admin, "digits"}, "", "", `unexpected argument "digits" after the model`},
		{"unknown action", []string{"frobnicate", "iris", "-admin", admin}, "", "", `unknown action "frobnicate"`},
		{"unknown flag", []string{"status", "iris", "-jsn"}, "", "", "flag provided but not defined: -jsn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			calls = nil
			mu.Unlock()
			var stdout, stderr strings.Builder
			err := runRollout(tc.args, &stdout, &stderr)
			switch {
			case tc.wantErr == "help":
				if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr.String(), usage) {
					t.Errorf("error %v, stderr %q; want flag.ErrHelp and the usage", err, stderr.String())
				}
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %v, want one with %q", err, tc.wantErr)
				}
			case err != nil:
				t.Errorf("error %v; stderr %q", err, stderr.String())
			}
			mu.Lock()
			got := strings.Join(calls, ", ")
			mu.Unlock()
			if got != tc.wantCall {
				t.Errorf("admin API calls %q, want %q", got, tc.wantCall)
			}
			if !strings.Contains(stdout.String(), tc.wantOut) {
				t.Errorf("stdout %q, want it to contain %q", stdout.String(), tc.wantOut)
			}
		})
	}
}

// TestGetCommandArgs checks that `infergate get` takes its flags before or
// after "models".
func TestGetCommandArgs(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `[{"name":"iris","revision":"iris-00001","traffic":100,"status":"ready"}]`)
	}))
	defer api.Close()
	admin := strings.TrimPrefix(api.URL, "http://")
	for _, args := range [][]string{
		{"models", "-admin", admin, "-json"},
		{"-json", "models", "-admin", admin},
		{"-admin", admin, "-json", "models"},
	} {
		var stdout, stderr strings.Builder
		if err := runGet(args, &stdout, &stderr); err != nil || !strings.Contains(stdout.String(), `"revision": "iris-00001"`) {
			t.Errorf("get %q: %v\n%s%s", args, err, stdout.String(), stderr.String())
		}
	}
	var stdout, stderr strings.Builder
	if err := runGet([]string{"-admin", admin, "pods"}, &stdout, &stderr); err == nil {
		t.Error("get pods: no error")
	}
}
