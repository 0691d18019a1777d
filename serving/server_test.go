package serving

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/infergate/infergate/config"
	"github.com/infergate/infergate/controlplane"
	"github.com/infergate/infergate/gateway"
)

// startServer runs a Server on loopback ports and returns it with its
// REST and admin addresses, and stop, which ends its context and returns
// what Serve returned. The test's end stops it too.
func startServer(t *testing.T, opts Options) (s *Server, rest, admin string, stop func() error) {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	restLn, grpcLn, adminLn := listen(t), listen(t), listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, restLn, grpcLn, adminLn) }()
	var (
		once   sync.Once
		result error
	)
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-done:
			case <-time.After(waitLimit):
				result = fmt.Errorf("Serve did not return within %s of its context's end", waitLimit)
			}
		})
		return result
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return s, restLn.Addr().String(), adminLn.Addr().String(), stop
}

// adminCall sends a request to the admin port and decodes a JSON answer
// into out (when not nil).
func adminCall(t *testing.T, method, url, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := inferClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, url, err, b)
		}
	}
	return resp.StatusCode
}

// TestServer runs the whole assembly on loopback: the config's model
// serves from a local runtime process, the admin API applies another
// model and reports both, a changed config file is applied on Reload, the
// metrics are scraped, and at the end of its context Serve returns nil
// with every runtime process stopped.
func TestServer(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "models.yaml")
	if err := os.WriteFile(path, []byte(fakeModel("m", "version=1", "", "")), 0o644); err != nil {
		t.Fatal(err)
	}
	fp := controlplane.ConfigFingerprint(path)
	models, err := config.LoadPath(path)
	if err != nil {
		t.Fatal(err)
	}
	log := &lockedBuffer{}
	reload := make(chan os.Signal, 1)
	s, rest, admin, stop := startServer(t, Options{
		Models: models, LocalRuntimes: true, DataDir: t.TempDir(),
		Gateway:    gateway.Options{DrainTimeout: 10 * time.Second},
		ConfigPath: path, ConfigFingerprint: fp, Reload: reload,
		Logger: slog.New(slog.NewTextHandler(log, nil)),
	})
	h := &harness{rest: rest, dep: s.dep, rec: s.reconciler}
	h.mustServe(t, "m", "1", "m-00001")
	if !strings.Contains(log.String(), `msg="infergate listening" rest=`+rest) {
		t.Errorf("no listening line with the REST address in the log:\n%s", log)
	}

	// The admin API applies a model at a URL; both are reported.
	body, err := json.Marshal(controlplane.ApplyRequest{Files: []controlplane.ApplyFile{{Source: "api.yaml", YAML: endpointModel("e", "", fakeEndpoint(t, "version=7"))}}})
	if err != nil {
		t.Fatal(err)
	}
	var ch controlplane.Changes
	if code := adminCall(t, "POST", "http://"+admin+"/api/v1/apply", string(body), &ch); code != http.StatusOK || len(ch.Models) != 1 || ch.Models[0].Revision != "e-00001" {
		t.Fatalf("apply: status %d, changes %+v", code, ch)
	}
	// A runtime at a URL serves once the pool's probe found it ready.
	h.waitState(t, "e-00001 ready", revisionReady("e", "e-00001"))
	h.mustServe(t, "e", "7", "e-00001")
	var rows []controlplane.RevisionRow
	if code := adminCall(t, "GET", "http://"+admin+"/api/v1/models", "", &rows); code != http.StatusOK {
		t.Fatalf("models: status %d", code)
	}
	got := map[string]string{}
	for _, r := range rows {
		got[r.Revision] = fmt.Sprintf("traffic %d, running %d, ready %d", r.Traffic, r.Running, r.Ready)
	}
	for rev, want := range map[string]string{"m-00001": "traffic 100, running 1, ready 1", "e-00001": "traffic 100, running 1, ready 1"} {
		if got[rev] != want {
			t.Errorf("row of %s: %q, want %q", rev, got[rev], want)
		}
	}

	// Reload applies the changed file, which is the whole state: e, which
	// it does not declare, goes.
	if err := os.WriteFile(path, []byte(fakeModel("m", "version=22", "", "")), 0o644); err != nil {
		t.Fatal(err)
	}
	reload <- syscall.SIGHUP
	h.waitState(t, "m-00002 ready", revisionReady("m", "m-00002"))
	h.mustServe(t, "m", "22", "m-00002")
	h.mustNotRoute(t, "e")

	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`infergate_revision_traffic_percent{model="m",revision="m-00002"} 100`, `infergate_gateway_requests_total{`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	procs := append(pids(s.manager.get("m-00001")), pids(s.manager.get("m-00002"))...)
	if len(procs) != 2 {
		t.Fatalf("runtime processes %v, want one per revision of m", procs)
	}
	if err := stop(); err != nil {
		t.Errorf("Serve returned %v at the end of its context, want nil", err)
	}
	for _, pid := range procs {
		if alive(pid) {
			t.Errorf("runtime process %d still runs after Serve returned", pid)
		}
	}
	if !strings.Contains(log.String(), `msg="infergate stopped"`) {
		t.Errorf("no stopped line in the log")
	}
}

// TestServeRefusesBadModels: Serve fails at once when the models it
// starts with are wrong, starts no runtime, and closes its listeners.
func TestServeRefusesBadModels(t *testing.T) {
	s, err := New(Options{Models: parse(t, `apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: files}
spec:
  predictor:
    model: {modelFormat: {name: onnx}, storageUri: "file:///no/such/model"}
`), LocalRuntimes: true, DataDir: t.TempDir(), Logger: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	restLn, grpcLn, adminLn := listen(t), listen(t), listen(t)
	err = s.Serve(t.Context(), restLn, grpcLn, adminLn)
	if err == nil || !strings.Contains(err.Error(), "/no/such/model does not exist") {
		t.Fatalf("Serve: %v, want the model's error", err)
	}
	if names := s.manager.Names(); len(names) != 0 {
		t.Errorf("runtimes %v", names)
	}
	for _, ln := range []net.Listener{restLn, grpcLn, adminLn} {
		if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			t.Errorf("listener %s still accepts", ln.Addr())
		}
	}
}

func TestNewOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"routes given", Options{Gateway: gateway.Options{Routes: []gateway.Route{{Model: "m"}}}}, "Routes"},
		{"negative rollout interval", Options{RolloutInterval: -time.Second}, "RolloutInterval"},
	} {
		if _, err := New(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
}
