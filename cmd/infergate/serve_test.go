package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infergate/infergate/bench"
	"github.com/infergate/infergate/config"
	pb "github.com/infergate/infergate/oip/inferencepb"
	"github.com/infergate/infergate/runtimes/supervisor"
)

// childrenOf lists the pids whose parent is pid, from /proc.
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	kids, err := bench.Children(pid)
	if err != nil {
		t.Skip("no /proc:", err)
	}
	return kids
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	state := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])[0]
	return state != "Z" && state != "X"
}

// TestServeEmbeddedDefault runs `infergate serve` as a user does, with no
// config: the sample models answer with real predictions over REST and
// gRPC, metrics count them, and SIGTERM stops the gateway with exit 0 and
// leaves no runtime process behind.
func TestServeEmbeddedDefault(t *testing.T) {
	p := startServe(t, "/v2/health/ready", "-data-dir", t.TempDir())
	cmd, rest, grpcAddr, admin := p.cmd, p.rest, p.grpc, p.admin

	for _, m := range []string{"iris", "digits", "textclass"} {
		body, err := os.ReadFile(filepath.Join(samplesDir, m, "request.json"))
		if err != nil {
			t.Fatal(err)
		}
		code, resp := postJSON(t, "http://"+rest+"/v2/models/"+m+"/infer", body, nil)
		if code != http.StatusOK || len(resp.Outputs) == 0 {
			t.Fatalf("%s: status %d, error %q", m, code, resp.Error)
		}
		want := loadReference(t, m)[0].Outputs[0]
		assertClose(t, m, floatsOf(t, resp.Outputs[0].Data), floatsOf(t, want.Data), 1e-4)
	}

	r, err := http.Get("http://" + rest + "/v2/models/iris")
	if err != nil {
		t.Fatal(err)
	}
	var md struct {
		Name   string `json:"name"`
		Inputs []struct {
			Name, Datatype string
			Shape          []int64
		} `json:"inputs"`
	}
	_ = json.NewDecoder(r.Body).Decode(&md)
	r.Body.Close()
	if md.Name != "iris" || len(md.Inputs) != 1 || md.Inputs[0].Datatype != "FP32" || fmt.Sprint(md.Inputs[0].Shape) != "[-1 4]" {
		t.Errorf("iris metadata = %+v", md)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gresp, err := dialGRPC(t, grpcAddr).ModelInfer(ctx, &pb.ModelInferRequest{
		ModelName: "iris",
		Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 4},
			Contents: &pb.InferTensorContents{Fp32Contents: []float32{5.1, 3.5, 1.4, 0.2}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if p := gresp.GetOutputs()[0].GetContents().GetFp32Contents(); len(p) != 3 || p[0] < 0.9 {
		t.Errorf("gRPC iris probabilities = %v", p)
	}

	mr, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mr.Body)
	mr.Body.Close()
	for _, want := range []string{
		`infergate_gateway_requests_total{code="200",model="iris",protocol="rest",revision="iris-00001"} 1`,
		`infergate_gateway_requests_total{code="OK",model="iris",protocol="grpc",revision="iris-00001"} 1`,
		`infergate_runtime_upstream_duration_seconds_count{model="digits",revision="digits-00001"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	out, err := exec.Command(binPath, "get", "models", "-admin", admin).CombinedOutput()
	if err != nil {
		t.Fatalf("infergate get models: %v\n%s", err, out)
	}
	for _, want := range []string{"MODEL", "DESIRED", "READY", "iris", "digits", "textclass"} {
		mustContain(t, "get models", string(out), want)
	}

	kids := childrenOf(t, cmd.Process.Pid)
	if len(kids) != 3 {
		t.Errorf("serve has %d child processes, want 3 model servers", len(kids))
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("infergate serve exited with %v after SIGTERM, want exit 0", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("infergate serve did not exit after SIGTERM")
	}
	for _, k := range kids {
		deadline := time.Now().Add(10 * time.Second)
		for alive(k) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(k) {
			t.Errorf("model server pid %d outlived the gateway", k)
			_ = syscall.Kill(k, syscall.SIGKILL)
		}
	}
}

// startServe runs `infergate serve` with args on loopback ports it picks
// itself (see startInfergate) and waits until readyPath (a path on the
// REST port) answers 200.
func startServe(t *testing.T, readyPath string, args ...string) *infergateProc {
	t.Helper()
	p := startInfergate(t, "serve", args...)
	waitHTTP(t, "http://"+p.rest+readyPath, 3*time.Minute)
	return p
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "models.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func waitGone(t *testing.T, pids []int, what string) {
	t.Helper()
	for _, k := range pids {
		deadline := time.Now().Add(10 * time.Second)
		for alive(k) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(k) {
			t.Errorf("%s pid %d outlived the gateway", what, k)
			_ = syscall.Kill(k, syscall.SIGKILL)
		}
	}
}

// TestServeKilledLeavesNoChild kills `infergate serve` with SIGKILL, which
// it cannot catch: its runtime replicas die with it.
func TestServeKilledLeavesNoChild(t *testing.T) {
	iris, err := filepath.Abs(filepath.Join(samplesDir, "iris"))
	if err != nil {
		t.Fatal(err)
	}
	config := writeConfig(t, fmt.Sprintf(`apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: iris}
spec:
  predictor:
    minReplicas: 2
    model: {modelFormat: {name: onnx}, storageUri: %q}
`, iris))
	p := startServe(t, "/v2/health/ready", "-config", config, "-data-dir", t.TempDir())
	cmd, exited := p.cmd, p.exited
	kids := childrenOf(t, cmd.Process.Pid)
	if len(kids) != 2 {
		t.Fatalf("serve has %d child processes, want 2 replicas", len(kids))
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	waitGone(t, kids, "replica")
}

// TestServeSupervisesUserCommand serves a model through a runtime command
// of the user's (here the built-in runtime, spelt as a template), a model
// whose command does not exist (failed, with the reason in the log, while
// the others serve), and a model scaled to zero (503).
func TestServeSupervisesUserCommand(t *testing.T) {
	iris, err := filepath.Abs(filepath.Join(samplesDir, "iris"))
	if err != nil {
		t.Fatal(err)
	}
	config := writeConfig(t, fmt.Sprintf(`apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
  annotations:
    infergate.io/command: >-
      %s modelserver -host {{.Host}} -http-port {{.HTTPPort}} -grpc-port {{.GRPCPort}}
      -model '{{.Model}}={{.ModelPath}}' -log-format json
spec:
  predictor:
    model: {modelFormat: {name: onnx}, storageUri: %q}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: broken
  annotations: {infergate.io/command: "/nonexistent/tritonserver --http-port={{.HTTPPort}}"}
spec:
  predictor:
    model: {modelFormat: {name: tensorrt}}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: idle}
spec:
  predictor:
    minReplicas: 0
    model: {modelFormat: {name: onnx}, storageUri: %q}
`, binPath, iris, iris))
	dataDir := t.TempDir()
	p := startServe(t, "/v2/models/iris/ready", "-config", config, "-data-dir", dataDir)
	cmd, rest, exited, logs := p.cmd, p.rest, p.exited, p.logs

	body, err := os.ReadFile(filepath.Join(samplesDir, "iris", "request.json"))
	if err != nil {
		t.Fatal(err)
	}
	if code, resp := postJSON(t, "http://"+rest+"/v2/models/iris/infer", body, nil); code != http.StatusOK || len(resp.Outputs) != 1 {
		t.Fatalf("iris: status %d, error %q", code, resp.Error)
	}
	if kids := childrenOf(t, cmd.Process.Pid); len(kids) != 1 {
		t.Errorf("before any request to idle: %d child processes, want 1 (iris)", len(kids))
	}
	// A model at zero scales from zero on its first request, which is held
	// until the replica is ready and then answered.
	if code, resp := postJSON(t, "http://"+rest+"/v2/models/idle/infer", body, nil); code != http.StatusOK {
		t.Errorf("model at zero: status %d (%q), want 200 after scaling from zero", code, resp.Error)
	}
	if b, err := os.ReadFile(filepath.Join(dataDir, "revisions", "iris-00001", "logs", "iris-0.log")); err != nil || !strings.Contains(string(b), `"msg":"model ready"`) {
		t.Errorf("iris replica log: %v\n%s", err, b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "model failed") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	mustContain(t, "serve log", logs.String(), `model=broken reason="replica 0 cannot start: runtimes: start /nonexistent/tritonserver: cannot execute: fork/exec /nonexistent/tritonserver: no such file or directory"`)

	kids := childrenOf(t, cmd.Process.Pid)
	if len(kids) != 2 {
		t.Errorf("serve has %d child processes, want 2 (iris, and idle scaled from zero)", len(kids))
	}
	if code, resp := postJSON(t, "http://"+rest+"/v2/models/broken/infer", body, nil); code != http.StatusServiceUnavailable || !strings.Contains(resp.Error, "executable not found") || strings.Contains(resp.Error, "/nonexistent") {
		t.Errorf("failed model: status %d (%q), want 503 with the cause and no path", code, resp.Error)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err != nil {
		t.Errorf("serve exited with %v after SIGTERM, want 0", err)
	}
	waitGone(t, kids, "replica")
}

// TestCommandFieldsMatchSupervisor keeps what config lets a command
// template use and what the supervisor gives it in step.
func TestCommandFieldsMatchSupervisor(t *testing.T) {
	if got, want := supervisor.VarNames(), config.CommandFields; !slices.Equal(got, want) {
		t.Errorf("supervisor.Vars fields %q, config.CommandFields %q: keep them the same", got, want)
	}
}
