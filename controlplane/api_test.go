package controlplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/infergate/infergate/autoscaler"
	"github.com/infergate/infergate/config"
)

// recordingApplier is an Applier that records its calls and hands them to
// Deployments, or fails with err.
type recordingApplier struct {
	d   *Deployments
	err error

	mu     sync.Mutex
	prunes []bool
}

func (a *recordingApplier) Apply(models []config.Model, prune bool) (Changes, error) {
	a.mu.Lock()
	a.prunes = append(a.prunes, prune)
	a.mu.Unlock()
	if a.err != nil {
		return Changes{}, a.err
	}
	return a.d.Apply(models, prune)
}

func (a *recordingApplier) calls() []bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.prunes
}

// recordingSyncer records the traffic of a model each time it is asked to
// sync, as routes made then would carry it.
type recordingSyncer struct {
	d     *Deployments
	model string
	err   error

	mu   sync.Mutex
	seen []string
}

func (s *recordingSyncer) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ms, _ := s.d.State().Model(s.model)
	s.seen = append(s.seen, FormatTraffic(ms.Traffic))
	return s.err
}

func (s *recordingSyncer) calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen
}

// startAPI serves an API on a loopback port for the test's duration.
func startAPI(t *testing.T, opts APIOptions) string {
	t.Helper()
	a, err := NewAPI(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return srv.URL
}

// call sends a request to the API and returns its status and body; the
// body of an answer with Content-Type application/json must be JSON.
func call(t *testing.T, method, url, ctype, body string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Content-Type") == "application/json" && !json.Valid(b) {
		t.Fatalf("%s %s: status %d, body is not JSON: %q", method, url, resp.StatusCode, b)
	}
	return resp.StatusCode, string(b)
}

// applyBody is an apply request of one file with the given YAML.
func applyBody(t *testing.T, yaml string) string {
	t.Helper()
	b, err := json.Marshal(ApplyRequest{Files: []ApplyFile{{Source: "m.yaml", BaseDir: "/models", YAML: yaml}}})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func isvcYAML(name, storage string) string {
	return fmt.Sprintf(`apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: %s
spec:
  predictor:
    model:
      modelFormat: {name: onnx}
      storageUri: %s
`, name, storage)
}

// TestAPIApply: POST /api/v1/apply over real HTTP on loopback, the
// accepted request and every refusal with its status, each refusal leaving
// the state as it was.
func TestAPIApply(t *testing.T) {
	d, _ := newDeployments(t, Options{})
	applier := &recordingApplier{d: d}
	url := startAPI(t, APIOptions{Deployments: d, Applier: applier, MaxApplyBytes: 4096}) + "/api/v1/apply"
	const js = "application/json"
	good := applyBody(t, isvcYAML("iris", "./iris"))

	code, body := call(t, "POST", url, js, good, nil)
	if code != http.StatusOK {
		t.Fatalf("apply: status %d: %s", code, body)
	}
	var ch Changes
	if err := json.Unmarshal([]byte(body), &ch); err != nil {
		t.Fatal(err)
	}
	want := []ModelChange{{Model: "iris", Action: ActionCreated, Revision: "iris-00001", Traffic: map[string]int64{"iris-00001": 100}}}
	if diff := cmp.Diff(want, ch.Models); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]bool{false}, applier.calls()); diff != "" {
		t.Errorf("the applier's prune arguments (-want +got):\n%s", diff)
	}
	if ms := modelState(t, d, "iris"); ms.Revisions[0].Spec.Path != "/models/iris" {
		t.Errorf("storageUri resolved to %q, want it against baseDir /models", ms.Revisions[0].Spec.Path)
	}
	gen := d.Generation()

	for _, tc := range []struct {
		name, ctype, body string
		header            map[string]string
		applierErr        error
		want              int
		wantErr           string // in the error message
		applied           bool   // the Applier was called
	}{
		{name: "not JSON content", ctype: "text/plain", body: good, want: http.StatusUnsupportedMediaType, wantErr: "Content-Type: application/json"},
		{name: "no content type", body: good, want: http.StatusUnsupportedMediaType, wantErr: "Content-Type"},
		{name: "from a web page", ctype: js, body: good, header: map[string]string{"Origin": "http://evil.example"}, want: http.StatusForbidden, wantErr: "web pages"},
		{name: "DNS rebinding", ctype: js, body: good, header: map[string]string{"Host": "evil.example"}, want: http.StatusForbidden, wantErr: "loopback"},
		{name: "not JSON", ctype: js, body: "files: []", want: http.StatusBadRequest, wantErr: "body is not an apply request"},
		{name: "unknown field", ctype: js, body: `{"files":[],"force":true}`, want: http.StatusBadRequest, wantErr: `unknown field "force"`},
		{name: "a second request after the first", ctype: js, body: good + good, want: http.StatusBadRequest, wantErr: "data after the apply request"},
		{name: "garbage after the request", ctype: js, body: good + "]", want: http.StatusBadRequest, wantErr: "data after the apply request"},
		{name: "too large", ctype: js, body: `{"files":[{"yaml":"` + strings.Repeat("#", 5000) + `"}]}`, want: http.StatusRequestEntityTooLarge, wantErr: "larger than 4096 bytes"},
		{name: "bad YAML", ctype: js, body: applyBody(t, "kind: [nope"), want: http.StatusBadRequest, wantErr: "m.yaml"},
		{name: "no InferenceService", ctype: js, body: `{"files":[]}`, want: http.StatusBadRequest, wantErr: "no InferenceService"},
		{name: "refused by the applier", ctype: js, body: applyBody(t, isvcYAML("iris", "./iris-v2")), applierErr: errors.New("m.yaml#1: storageUri: no such model"), want: http.StatusBadRequest, wantErr: "no such model", applied: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			applier.err = tc.applierErr
			defer func() { applier.err = nil }()
			before := len(applier.calls())
			code, body := call(t, "POST", url, tc.ctype, tc.body, tc.header)
			var e struct{ Error string }
			if err := json.Unmarshal([]byte(body), &e); err != nil || code != tc.want || !strings.Contains(e.Error, tc.wantErr) {
				t.Errorf("status %d, body %s; want %d with an error containing %q", code, body, tc.want, tc.wantErr)
			}
			if called := len(applier.calls()) > before; called != tc.applied {
				t.Errorf("applier called: %v, want %v", called, tc.applied)
			}
			if g := d.Generation(); g != gen {
				t.Errorf("the state changed: generation %d, was %d", g, gen)
			}
		})
	}

	// Without an Applier, Deployments takes the declarations.
	d2, _ := newDeployments(t, Options{})
	url2 := startAPI(t, APIOptions{Deployments: d2}) + "/api/v1/apply"
	if code, body := call(t, "POST", url2, js, good, nil); code != http.StatusOK {
		t.Fatalf("apply without an Applier: status %d: %s", code, body)
	}
	modelState(t, d2, "iris")
}

// TestAPIGuard: a change is admitted only as JSON without an Origin (no
// web page can send it), and from loopback to a loopback host unless the
// API allows any client. Remote clients cannot be made on loopback, so
// this calls the guard with the remote address set.
func TestAPIGuard(t *testing.T) {
	called := 0
	ok := func(w http.ResponseWriter, _ *http.Request) { called++ }
	for _, tc := range []struct {
		name, remote, host, ctype, origin string
		anywhere                          bool
		want                              int
	}{
		{"remote client", "192.0.2.7:4000", "192.0.2.1:8090", "application/json", "", false, http.StatusForbidden},
		{"remote client allowed", "192.0.2.7:4000", "192.0.2.1:8090", "application/json", "", true, http.StatusOK},
		{"loopback", "127.0.0.1:4000", "127.0.0.1:8090", "application/json", "", false, http.StatusOK},
		{"loopback v6", "[::1]:4000", "[::1]:8090", "application/json; charset=utf-8", "", false, http.StatusOK},
		{"localhost", "127.0.0.1:4000", "localhost:8090", "application/json", "", false, http.StatusOK},
		{"DNS rebinding", "127.0.0.1:4000", "evil.example:8090", "application/json", "", false, http.StatusForbidden},
		{"web form", "127.0.0.1:4000", "127.0.0.1:8090", "text/plain", "", false, http.StatusUnsupportedMediaType},
		{"no content type", "127.0.0.1:4000", "127.0.0.1:8090", "", "", true, http.StatusUnsupportedMediaType},
		{"web page", "127.0.0.1:4000", "127.0.0.1:8090", "application/json", "http://evil.example", true, http.StatusForbidden},
		{"remote address unparsable", "somewhere", "127.0.0.1:8090", "application/json", "", false, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &API{opts: APIOptions{ChangesFromAnywhere: tc.anywhere}}
			req := httptest.NewRequest("POST", "/api/v1/apply", strings.NewReader("{}"))
			req.RemoteAddr, req.Host = tc.remote, tc.host
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			rec := httptest.NewRecorder()
			before := called
			a.guard(ok)(rec, req)
			if rec.Code != tc.want || (tc.want == http.StatusOK) != (called == before+1) {
				t.Errorf("status %d, handler called %v, want %d", rec.Code, called > before, tc.want)
			}
		})
	}
}

// TestAPIRollouts: rollout status and actions over real HTTP on loopback.
// An action's routes are synced before its answer, and only when it
// changed something.
func TestAPIRollouts(t *testing.T) {
	d, _ := newDeployments(t, Options{})
	apply(t, d, false, decl("iris", "v1"))
	apply(t, d, false, decl("iris", "v2", canary(20)))
	apply(t, d, false, decl("plain", "v1"))
	syncer := &recordingSyncer{d: d, model: "iris"}
	base := startAPI(t, APIOptions{Deployments: d, Syncer: syncer}) + "/api/v1/rollouts/"
	const js = "application/json"

	for _, tc := range []struct {
		name, method, path, ctype string
		want                      int
		wantErr                   string
		synced                    []string // the syncer's calls after the request
	}{
		{name: "status of an unknown model", method: "GET", path: "nope", want: http.StatusNotFound, wantErr: "unknown model"},
		{name: "status", method: "GET", path: "iris", want: http.StatusOK},
		{name: "unknown action", method: "POST", path: "iris/explode", ctype: js, want: http.StatusNotFound, wantErr: `no action "explode"`},
		{name: "action not as JSON", method: "POST", path: "iris/promote", ctype: "text/plain", want: http.StatusUnsupportedMediaType, wantErr: "application/json"},
		{name: "pause with no rollout", method: "POST", path: "iris/pause", ctype: js, want: http.StatusConflict, wantErr: "no rollout"},
		{name: "promote an unknown model", method: "POST", path: "nope/promote", ctype: js, want: http.StatusNotFound, wantErr: "unknown model"},
		{name: "promote", method: "POST", path: "iris/promote", ctype: js, want: http.StatusOK, synced: []string{"iris-00002 100%"}},
		{name: "promote again", method: "POST", path: "iris/promote", ctype: js, want: http.StatusConflict, wantErr: "already stable", synced: []string{"iris-00002 100%"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := call(t, tc.method, base+tc.path, tc.ctype, "{}", nil)
			if code != tc.want {
				t.Fatalf("status %d, want %d: %s", code, tc.want, body)
			}
			if tc.wantErr != "" {
				var e struct{ Error string }
				if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.Contains(e.Error, tc.wantErr) {
					t.Errorf("body %s, want an error containing %q", body, tc.wantErr)
				}
			} else {
				var st RolloutStatus
				if err := json.Unmarshal([]byte(body), &st); err != nil || st.Model != "iris" || st.Canary != "iris-00002" {
					t.Errorf("body %s is not iris's rollout status (%v)", body, err)
				}
			}
			if diff := cmp.Diff(tc.synced, syncer.calls()); diff != "" {
				t.Errorf("syncs (-want +got):\n%s", diff)
			}
		})
	}

	// A sync that fails is a server error: the state changed, the routes
	// did not follow yet.
	apply(t, d, false, decl("iris", "v3", canary(20)))
	syncer.err = errors.New("gateway: no pool")
	if code, body := call(t, "POST", base+"iris/rollback", js, "{}", nil); code != http.StatusInternalServerError || !strings.Contains(body, "no pool") {
		t.Errorf("rollback with a failing sync: status %d, body %s; want 500 naming the cause", code, body)
	}
}

type fakeRuntimes map[string]RuntimeStatus

func (f fakeRuntimes) RuntimeStatus(rev string) (RuntimeStatus, bool) {
	st, ok := f[rev]
	return st, ok
}

type fakeScaling map[string]autoscaler.Status

func (f fakeScaling) Status(rev string) (autoscaler.Status, bool) {
	st, ok := f[rev]
	return st, ok
}

// TestAPIModels: GET /api/v1/models has a row per revision with its
// traffic, sorted tags, its runtime's replicas and the autoscaler's view;
// other paths go to the base handler or get a JSON 404 under /api/.
func TestAPIModels(t *testing.T) {
	d, _ := newDeployments(t, Options{})
	apply(t, d, false, decl("iris", "v1"))
	apply(t, d, false, decl("iris", "v2", canary(20)))
	if err := d.MarkFailed("iris-00002", "exit 3; log: weights corrupt"); err != nil {
		t.Fatal(err)
	}
	runtimes := fakeRuntimes{
		"iris-00001": {Desired: 2, Running: 2, Ready: 1, Restarts: 3},
		"iris-00002": {Desired: 1, Failed: true, Reason: "exit 3; log: weights corrupt"},
	}
	scaling := fakeScaling{"iris-00001": {Metric: autoscaler.MetricConcurrency, Target: 7, Panic: true, StableAverage: 1.5, PanicAverage: 9, Reason: "panic: 9 > 2x7"}}
	base := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "base ", r.URL.Path) })
	url := startAPI(t, APIOptions{Deployments: d, Runtimes: runtimes, Scaling: scaling, Base: base})

	code, body := call(t, "GET", url+"/api/v1/models", "", "", nil)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var rows []RevisionRow
	if err := json.Unmarshal([]byte(body), &rows); err != nil {
		t.Fatal(err)
	}
	want := []RevisionRow{
		{Name: "iris", Revision: "iris-00001", Traffic: 80, Tags: []string{"prev"}, Status: "ready", Desired: 2, Running: 2, Ready: 1, Restarts: 3,
			Metric: "concurrency", Target: 7, Panic: true, StableAverage: 1.5, PanicAverage: 9, Decision: "panic: 9 > 2x7"},
		{Name: "iris", Revision: "iris-00002", Traffic: 20, Tags: []string{"latest"}, Status: "failed", Desired: 1, Failed: true, Reason: "exit 3; log: weights corrupt"},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}

	// Without reporters the counts are zero.
	url2 := startAPI(t, APIOptions{Deployments: d})
	code, body = call(t, "GET", url2+"/api/v1/models", "", "", nil)
	var bare []RevisionRow
	if err := json.Unmarshal([]byte(body), &bare); err != nil || code != http.StatusOK || len(bare) != 2 || bare[0].Desired != 0 || bare[0].Metric != "" {
		t.Errorf("without reporters: status %d, rows %+v (%v)", code, bare, err)
	}

	for _, tc := range []struct {
		method, path string
		want         int
		wantBody     string
	}{
		{"GET", "/metrics", http.StatusOK, "base /metrics"},
		{"GET", "/api/v2/models", http.StatusNotFound, "no control API at GET /api/v2/models"},
		{"GET", "/api/v1/apply", http.StatusNotFound, "no control API at GET /api/v1/apply"},
		{"DELETE", "/api/v1/models", http.StatusNotFound, "no control API at DELETE /api/v1/models"},
	} {
		code, body := call(t, tc.method, url+tc.path, "", "", nil)
		if code != tc.want || !strings.Contains(body, tc.wantBody) {
			t.Errorf("%s %s: status %d, body %q; want %d containing %q", tc.method, tc.path, code, body, tc.want, tc.wantBody)
		}
	}
}

func TestNewAPIOptions(t *testing.T) {
	if _, err := NewAPI(APIOptions{}); err == nil || !strings.Contains(err.Error(), "Deployments") {
		t.Errorf("without Deployments: %v, want an error naming it", err)
	}
	d, _ := newDeployments(t, Options{})
	if _, err := NewAPI(APIOptions{Deployments: d, MaxApplyBytes: -1}); err == nil || !strings.Contains(err.Error(), "MaxApplyBytes") {
		t.Errorf("with a negative MaxApplyBytes: %v, want an error naming it", err)
	}
}
