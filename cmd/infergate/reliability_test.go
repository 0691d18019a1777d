package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/infergate/infergate/controlplane"
	pb "github.com/infergate/infergate/oip/inferencepb"
)

// configDir is a config directory holding one file, m.yaml, that write
// replaces atomically (the watcher never reads half a file).
type configDir struct {
	t    *testing.T
	dir  string
	file string
}

func newConfigDir(t *testing.T, yaml string) *configDir {
	t.Helper()
	dir := t.TempDir()
	c := &configDir{t: t, dir: dir, file: filepath.Join(dir, "m.yaml")}
	c.write(yaml)
	return c
}

func (c *configDir) write(yaml string) {
	c.t.Helper()
	tmp := filepath.Join(c.dir, ".m.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(yaml), 0o644); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, c.file); err != nil {
		c.t.Fatal(err)
	}
}

// waitRow waits (bounded) until cond holds for the admin row of revision
// rev of model m, and returns it.
func waitRow(t *testing.T, admin, m, rev string, what string, cond func(controlplane.RevisionRow) bool) controlplane.RevisionRow {
	t.Helper()
	return waitRowFor(t, admin, m, rev, what, 30*time.Second, cond)
}

// waitRowFor is waitRow with a bound of its own.
func waitRowFor(t *testing.T, admin, m, rev string, what string, limit time.Duration, cond func(controlplane.RevisionRow) bool) controlplane.RevisionRow {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last controlplane.RevisionRow
	for time.Now().Before(deadline) {
		for _, r := range revisionRows(t, admin, m) {
			if r.Revision == rev {
				if last = r; cond(r) {
					return r
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("revision %s of %s is not %s: %+v", rev, m, what, last)
	return last
}

// TestReloadWaitsForTheNewRevisionToBeReady reloads a config whose new
// revision never becomes ready: the old revision keeps all the traffic
// (the bug: the new one got 100% at once and every request failed), and
// the next good revision takes over once it is ready.
func TestReloadWaitsForTheNewRevisionToBeReady(t *testing.T) {
	cfg := newConfigDir(t, fakeModel("m", "1", 200, ""))
	p := startServe(t, "/v2/models/m/ready", "-config", cfg.dir, "-data-dir", t.TempDir())
	waitTraffic(t, p.admin, "m", "m-00001=100")

	cfg.write(fakeModel("m", "2,unready", 200, ""))
	waitRow(t, p.admin, "m", "m-00002", "pending with a running replica", func(r controlplane.RevisionRow) bool {
		return r.Pending && r.Status == "pending" && r.Running > 0
	})
	if share := versionShare(t, p.rest, "m", "1", 200); share != 1 {
		t.Fatalf("while m-00002 is not ready, version 1 answered %.0f%% of requests", 100*share)
	}
	waitTraffic(t, p.admin, "m", "m-00001=100,m-00002=0")

	cfg.write(fakeModel("m", "3", 200, ""))
	waitTraffic(t, p.admin, "m", "m-00001=0,m-00002=0,m-00003=100")
	if share := versionShare(t, p.rest, "m", "3", 50); share != 1 {
		t.Fatalf("once m-00003 is ready, version 3 answered %.0f%% of requests", 100*share)
	}
	rows := revisionRows(t, p.admin, "m")
	if tags := strings.Join(rows[0].Tags, ","); tags != "prev" {
		t.Errorf("m-00001 tags %q, want prev (m-00002 never served)", tags)
	}
}

// TestMissingStorageURIRefused applies and reloads an InferenceService
// whose storageUri names nothing: both are refused with the file,
// document, field and value, and the model keeps serving.
func TestMissingStorageURIRefused(t *testing.T) {
	cfg := newConfigDir(t, fakeModel("m", "1", 200, ""))
	p := startServe(t, "/v2/models/m/ready", "-config", cfg.dir, "-data-dir", t.TempDir())
	missing := `apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
spec:
  predictor:
    model:
      modelFormat: {name: onnx}
      storageUri: ./no-such-model
`
	bad := filepath.Join(t.TempDir(), "iris.yaml")
	if err := os.WriteFile(bad, []byte(missing), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := p.cli("apply", "-f", bad, "-admin", p.admin).CombinedOutput()
	want := `iris.yaml#1: spec.predictor.model.storageUri: "./no-such-model": ` + filepath.Join(filepath.Dir(bad), "no-such-model") + " does not exist"
	if err == nil || !strings.Contains(string(out), want) {
		t.Fatalf("apply of a missing storageUri: %v\n%s\nwant %s", err, out, want)
	}

	// An existing directory that holds no model is refused too.
	empty := t.TempDir()
	cfg.write(fakeModel("m", "1", 200, "") + "---\n" + strings.Replace(missing, "./no-such-model", empty, 1))
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.logs.String(), "config not applied") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if l := p.logs.String(); !strings.Contains(l, "m.yaml#2: spec.predictor.model.storageUri: ") || !strings.Contains(l, "no model.onnx") {
		t.Fatalf("the reload's log does not name the storageUri:\n%s", l)
	}
	for _, r := range revisionRows(t, p.admin, "iris") {
		t.Errorf("iris was deployed: %+v", r)
	}
	if share := versionShare(t, p.rest, "m", "1", 20); share != 1 {
		t.Errorf("m answered %.0f%% after the bad reload", 100*share)
	}
}

// TestKilledReplicaHoldsRequests kills the only replica of a model under
// load: the requests that arrive while it restarts wait in the activator
// and are served once it is back, and so are those in flight on the killed
// process, the model being idempotent (the bug: every request failed at
// once for 5 s with "exited before it was ready").
func TestKilledReplicaHoldsRequests(t *testing.T) {
	cfg := newConfigDir(t, fakeModel("m", "1", 200, ""))
	p := startServe(t, "/v2/models/m/ready", "-config", cfg.dir, "-data-dir", t.TempDir())
	kids := childrenOf(t, p.cmd.Process.Pid)
	if len(kids) != 1 {
		t.Fatalf("serve has children %v, want the one replica", kids)
	}
	const clients = 8
	var (
		ok, failed atomic.Int64
		mu         sync.Mutex
		failures   []string
		stop       = make(chan struct{})
		wg         sync.WaitGroup
	)
	deadline := time.Now().Add(time.Minute) // bounds the load whatever happens
	for range clients {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				select {
				case <-stop:
					return
				default:
				}
				a, err := inferFake(p.rest, "/v2/models/m/infer", map[string]string{"X-Request-Timeout": "30s"})
				if err == nil && a.code == 200 {
					ok.Add(1)
					continue
				}
				failed.Add(1)
				mu.Lock()
				failures = append(failures, fmt.Sprintf("%d %v %s", a.code, err, a.body))
				mu.Unlock()
			}
		})
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		limit := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(limit) {
				close(stop)
				wg.Wait()
				t.Fatalf("waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("load", func() bool { return ok.Load() > 100 })
	if err := syscall.Kill(kids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor("a new replica", func() bool {
		now := childrenOf(t, p.cmd.Process.Pid)
		return len(now) == 1 && now[0] != kids[0]
	})
	before := ok.Load()
	waitFor("answers from the new replica", func() bool { return ok.Load() > before+200 })
	close(stop)
	wg.Wait()
	t.Logf("%d answered, %d failed across the kill", ok.Load(), failed.Load())
	// Models are idempotent unless declared otherwise: even the requests
	// in flight on the killed process are sent again once a replica is
	// back, so none fails.
	if n := failed.Load(); n > 0 {
		t.Errorf("%d requests failed across the kill, want none:\n%s", n, strings.Join(failures[:min(len(failures), 10)], "\n"))
	}
}

// TestStartFailureReasonIsClientSafe sends a request to a model whose
// runtime exits at start: it fails at once with the cause (exit status),
// and the body carries no log line, path or internal address; those are
// in the admin API.
func TestStartFailureReasonIsClientSafe(t *testing.T) {
	cfg := newConfigDir(t, fakeModel("m", "1,exit=3", 200, ""))
	p := startInfergate(t, "serve", "-config", cfg.dir, "-data-dir", t.TempDir())
	a, err := inferFake(p.rest, "/v2/models/m/infer", map[string]string{"X-Request-Timeout": "30s"})
	if err != nil {
		t.Fatal(err)
	}
	if a.code != 503 || !strings.Contains(a.body, "exit status 3") {
		t.Fatalf("request to a runtime that exits at start: %d %s, want 503 with the exit status", a.code, a.body)
	}
	for _, leak := range []string{"/srv/secret", "exiting as told", "127.0.0.1", p.cmd.Path} {
		if strings.Contains(a.body, leak) {
			t.Errorf("the client's error body carries %q: %s", leak, a.body)
		}
	}
	// The operator sees the runtime's own words in the gateway's log.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.logs.String(), "exiting as told") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(p.logs.String(), "exiting as told") {
		t.Errorf("the gateway's log does not carry the runtime's last log line")
	}
}

// TestConfigFileAndApplyLastChangeWins applies a new revision over a
// served config file, then changes another file in the directory: the
// re-read leaves what apply did (the bug: the re-read reverted it), and
// rollout status says the file's declaration is overridden; an edit of the
// model's own file wins again.
func TestConfigFileAndApplyLastChangeWins(t *testing.T) {
	cfg := newConfigDir(t, fakeModel("m", "1", 200, ""))
	p := startServe(t, "/v2/models/m/ready", "-config", cfg.dir, "-data-dir", t.TempDir())
	waitTraffic(t, p.admin, "m", "m-00001=100")

	applied := filepath.Join(t.TempDir(), "m-v2.yaml")
	if err := os.WriteFile(applied, []byte(fakeModel("m", "2", 200, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := p.cli("apply", "-f", applied, "-admin", p.admin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "inferenceservice/m revised: revision m-00002 (pending: it takes its traffic once ready); traffic m-00001 100%") {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	waitTraffic(t, p.admin, "m", "m-00001=0,m-00002=100")

	// Another file appears: the directory is read again.
	other := filepath.Join(cfg.dir, "other.yaml")
	if err := os.WriteFile(other, []byte(fakeModel("other", "1", 200, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	waitRow(t, p.admin, "other", "other-00001", "deployed", func(controlplane.RevisionRow) bool { return true })
	waitTraffic(t, p.admin, "m", "m-00001=0,m-00002=100")
	out, err = exec.Command(binPath, "rollout", "status", "m", "-admin", p.admin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Overrides: "+cfg.file+"#1") || !strings.Contains(string(out), "Source:   "+applied+"#1") {
		t.Fatalf("rollout status after the re-read: %v\n%s", err, out)
	}

	// The model's own file changes: it wins.
	cfg.write(fakeModel("m", "3", 200, ""))
	waitTraffic(t, p.admin, "m", "m-00001=0,m-00002=0,m-00003=100")
	out, err = exec.Command(binPath, "rollout", "status", "m", "-admin", p.admin).CombinedOutput()
	if err != nil || strings.Contains(string(out), "Overrides:") {
		t.Fatalf("rollout status after the file changed: %v\n%s", err, out)
	}
}

// TestMetadataWakesAModelAtZero asks a model at zero replicas that never
// ran for its metadata, over REST and gRPC: the request wakes it and is
// answered (the bug: 503 and nothing woken, so a client that reads the
// metadata first could not start), naming the revision as infer answers do.
func TestMetadataWakesAModelAtZero(t *testing.T) {
	cfg := newConfigDir(t, fakeModel("m", "1", 200, "    minReplicas: 0\n"))
	p := startInfergate(t, "serve", "-config", cfg.dir, "-data-dir", t.TempDir())
	waitTraffic(t, p.admin, "m", "m-00001=100")
	if kids := childrenOf(t, p.cmd.Process.Pid); len(kids) != 0 {
		t.Fatalf("runtimes %v run before any request", kids)
	}
	req, err := http.NewRequest("GET", "http://"+p.rest+"/v2/models/m", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Request-Timeout", "60s")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"platform":"fake"`) || resp.Header.Get("X-Model-Revision") != "m-00001" {
		t.Fatalf("metadata of a model at zero: %d %s revision %q", resp.StatusCode, body, resp.Header.Get("X-Model-Revision"))
	}
	var hdr metadata.MD
	md, err := dialGRPC(t, p.grpc).ModelMetadata(context.Background(), &pb.ModelMetadataRequest{Name: "m"}, grpc.Header(&hdr))
	if err != nil || md.GetPlatform() != "fake" || strings.Join(hdr.Get("x-model-revision"), ",") != "m-00001" {
		t.Fatalf("gRPC metadata: %v %v, header %v", md, err, hdr)
	}
}

// TestFailedRuntimeAnswersAtOnce lets a runtime that exits at every start
// be marked failed, then asks it again well after the activator's 5 s hold
// of a start failure: the answer is still 503 with the cause (the bug: the
// request was held until its deadline, then 504).
func TestFailedRuntimeAnswersAtOnce(t *testing.T) {
	cfg := newConfigDir(t, fakeModel("m", "1,exit=1", 200, ""))
	p := startInfergate(t, "serve", "-config", cfg.dir, "-data-dir", t.TempDir())
	// Five exits with backoffs of 1, 2, 4 and 8 s.
	waitRowFor(t, p.admin, "m", "m-00001", "failed", time.Minute, func(r controlplane.RevisionRow) bool { return r.Failed })
	// Past the activator's hold of a start failure (5 s): the failure
	// must stand on its own, not on that hold.
	time.Sleep(6 * time.Second)
	a, err := inferFake(p.rest, "/v2/models/m/infer", map[string]string{"X-Request-Timeout": "30s"})
	if err != nil {
		t.Fatal(err)
	}
	if a.code != 503 || !strings.Contains(a.body, "runtime failed") || !strings.Contains(a.body, "exit status 1") {
		t.Fatalf("request to a failed runtime: %d %s, want 503 with the cause", a.code, a.body)
	}
}
