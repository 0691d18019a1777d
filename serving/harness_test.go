package serving

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/autoscaler"
	"github.com/infergate/infergate/autoscaler/activator"
	"github.com/infergate/infergate/config"
	"github.com/infergate/infergate/controlplane"
	"github.com/infergate/infergate/gateway"
	"github.com/infergate/infergate/serving/servingtest"
)

func TestMain(m *testing.M) {
	// Started by a test as a revision's runtime process, it serves and
	// exits here.
	servingtest.RunRuntime()
	os.Exit(m.Run())
}

// waitLimit bounds every wait of these tests for a signal: generous, for
// runtime processes starting on a loaded machine.
const waitLimit = 2 * time.Minute

// testLog is a logger whose lines are printed if the test fails.
func testLog(t *testing.T) *slog.Logger {
	t.Helper()
	b := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", b.String())
		}
	})
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// harness is what Server assembles, wired by hand so that tests reach
// each part: a real gateway serving REST on a loopback port, the
// activator, an autoscaler whose loop does not run (its settings are
// still set), the deployed state, the Manager and the Reconciler, whose
// Run follows the state.
type harness struct {
	dep     *controlplane.Deployments
	gw      *gateway.Gateway
	act     *activator.Activator
	scaler  *autoscaler.Autoscaler
	manager *Manager
	rec     *Reconciler
	reg     *prometheus.Registry
	rest    string
	dataDir string
}

// newHarness starts a harness; local says whether it runs runtimes
// itself (`infergate serve`) or only uses runtimes at URLs.
func newHarness(t *testing.T, local bool) *harness {
	t.Helper()
	log := testLog(t)
	h := &harness{reg: prometheus.NewRegistry(), dataDir: t.TempDir()}
	var err error
	if h.act, err = activator.New(activator.Options{Poke: func(string) {}, Registerer: h.reg}); err != nil {
		t.Fatal(err)
	}
	if h.gw, err = gateway.New(gateway.Options{Registerer: h.reg, Logger: log, DrainTimeout: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if h.dep, err = controlplane.New(controlplane.Options{}); err != nil {
		t.Fatal(err)
	}
	if h.manager, err = NewManager(ManagerOptions{
		Gateway: h.gw, Activator: h.act, Status: h.dep, LocalRuntimes: local, DataDir: h.dataDir,
		// Longer than any test: a retired revision's runtime stops when
		// its requests are done, never at this bound.
		DrainTimeout: 10 * time.Minute,
		Registerer:   h.reg, Logger: log,
	}); err != nil {
		t.Fatal(err)
	}
	if h.scaler, err = autoscaler.New(autoscaler.Options{Scaler: h.manager, Observer: h.act, Ready: h.manager, Registerer: h.reg, Logger: log}); err != nil {
		t.Fatal(err)
	}
	if h.rec, err = NewReconciler(ReconcilerOptions{Deployments: h.dep, Manager: h.manager, Gateway: h.gw, Autoscaler: h.scaler, Logger: log}); err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	h.rest = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served, reconciled := make(chan error, 1), make(chan error, 1)
	go func() { served <- h.gw.Serve(ctx, ln, nil) }()
	go func() { reconciled <- h.rec.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for _, ch := range []chan error{served, reconciled} {
			select {
			case err := <-ch:
				if err != nil {
					t.Errorf("stopping: %v", err)
				}
			case <-time.After(waitLimit):
				t.Errorf("the gateway or the reconciler did not stop within %s", waitLimit)
			}
		}
		h.manager.Close()
	})
	return h
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// parse reads InferenceService YAML documents as a config file would.
func parse(t *testing.T, docs ...string) []config.Model {
	t.Helper()
	var out []config.Model
	for i, d := range docs {
		ms, err := config.Parse(fmt.Sprintf("test.yaml#%d", i+1), []byte(d), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ms...)
	}
	return out
}

// fakeModel declares model name served by a fake runtime process (see
// servingtest.FakeEnv) with the given spec, plus extra annotation lines
// and predictor lines.
func fakeModel(name, spec string, annotations, predictor string) string {
	return fmt.Sprintf(`apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: %s
  annotations:
    infergate.io/command: %q
%sspec:
  predictor:
%s    model:
      modelFormat: {name: fake}
      env: [{name: %s, value: %q}]
`, name, servingtest.Command(), annotations, predictor, servingtest.FakeEnv, spec)
}

// endpointModel declares model name served by the runtimes at urls.
func endpointModel(name, annotations string, urls ...string) string {
	return fmt.Sprintf(`apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: %s
  annotations:
    infergate.io/endpoints: %q
%sspec:
  predictor:
    model:
      modelFormat: {name: fake}
`, name, strings.Join(urls, ","), annotations)
}

// fakeEndpoint serves a fake runtime (see servingtest.Handler) on a
// loopback port for the test's duration and returns its URL.
func fakeEndpoint(t *testing.T, spec string) string {
	t.Helper()
	srv := httptest.NewServer(servingtest.Handler(spec))
	t.Cleanup(srv.Close)
	return srv.URL
}

// answer is a fake runtime's answer through the gateway.
type answer struct {
	code              int
	version, revision string // the runtime's model_version, the gateway's X-Model-Revision
	body              string
}

var inferClient = &http.Client{Timeout: waitLimit}

// infer sends one inference request for model to the gateway at rest. It
// does not fail the test, so that goroutines may call it.
func infer(rest, model string) (answer, error) {
	resp, err := inferClient.Post("http://"+rest+"/v2/models/"+model+"/infer", "application/json",
		strings.NewReader(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}`))
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{code: resp.StatusCode, revision: resp.Header.Get(gateway.HeaderRevision), body: string(b)}
	var out struct {
		ModelVersion string `json:"model_version"`
	}
	if json.Unmarshal(b, &out) == nil {
		a.version = out.ModelVersion
	}
	return a, nil
}

// mustServe checks that model answers 200 from version through revision.
func (h *harness) mustServe(t *testing.T, model, version, revision string) {
	t.Helper()
	a, err := infer(h.rest, model)
	if err != nil {
		t.Fatalf("infer %s: %v", model, err)
	}
	if a.code != http.StatusOK || a.version != version || a.revision != revision {
		t.Fatalf("infer %s: status %d, version %q, revision %q (%s); want 200 from version %s of %s", model, a.code, a.version, a.revision, a.body, version, revision)
	}
}

// mustNotRoute checks that the gateway has no route for model.
func (h *harness) mustNotRoute(t *testing.T, model string) {
	t.Helper()
	a, err := infer(h.rest, model)
	if err != nil {
		t.Fatalf("infer %s: %v", model, err)
	}
	if a.code != http.StatusNotFound {
		t.Fatalf("infer %s: status %d (%s), want 404: no route", model, a.code, a.body)
	}
}

// waitState waits, on the state's change signal, until cond holds of
// it, then makes the routes follow it.
func (h *harness) waitState(t *testing.T, what string, cond func(controlplane.State) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for {
		st := h.dep.State()
		if cond(st) {
			break
		}
		if _, err := h.dep.Wait(ctx, st.Generation); err != nil {
			t.Fatalf("%s: not within %s; state: %+v", what, waitLimit, st)
		}
	}
	if err := h.rec.Sync(); err != nil {
		t.Fatal(err)
	}
}

// revisionReady is a waitState condition: the revision is ready.
func revisionReady(model, rev string) func(controlplane.State) bool {
	return func(st controlplane.State) bool {
		ms, ok := st.Model(model)
		if !ok {
			return false
		}
		r, ok := ms.Revision(rev)
		return ok && r.Status == controlplane.RevisionReady
	}
}

// waitDone waits for a retired revision's goroutines and processes to
// end.
func waitDone(t *testing.T, rr *revisionRuntime) {
	t.Helper()
	select {
	case <-rr.done:
	case <-time.After(waitLimit):
		t.Fatalf("revision %s still runs %s after it was retired", rr.name, waitLimit)
	}
}

// pids returns the process ids of a supervised revision's replicas.
func pids(rr *revisionRuntime) []int {
	var out []int
	for _, r := range rr.sup.Status().Replicas {
		if r.Pid != 0 {
			out = append(out, r.Pid)
		}
	}
	return out
}

// alive reports whether a process runs (or is a zombie not yet reaped).
func alive(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
