package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/infergate/infergate/gateway"
	"github.com/infergate/infergate/internal/testbin"
	pb "github.com/infergate/infergate/oip/inferencepb"
	"github.com/infergate/infergate/runtimes"
)

// binPath is the infergate binary built once by TestMain, so that runtimes
// run as the real processes users get.
var binPath string

func TestMain(m *testing.M) {
	if spec := os.Getenv(fakeRuntimeEnv); spec != "" {
		// Started by a test as a runtime process; see fakeRuntimeMain.
		fakeRuntimeMain(spec, os.Args[len(os.Args)-1])
		return
	}
	testbin.Main(&binPath, m.Run)
}

const samplesDir = "../../examples/models"

// startModelServer starts `infergate modelserver` for the named sample
// models on loopback and waits until it is ready.
func startModelServer(t *testing.T, models ...string) *runtimes.Process {
	t.Helper()
	args := []string{"modelserver", "-host", "127.0.0.1", "-http-port", "0", "-grpc-port", "0"}
	for _, m := range models {
		args = append(args, "-model", m+"="+filepath.Join(samplesDir, m))
	}
	p, err := runtimes.StartProcess(context.Background(), runtimes.ProcessOptions{
		Path: binPath, Args: args, LogPath: filepath.Join(t.TempDir(), "modelserver.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
	waitHTTP(t, "http://"+p.RESTAddr+"/v2/health/ready", 90*time.Second)
	return p
}

// waitHTTP polls url until it answers 200, failing the test at the deadline.
func waitHTTP(t *testing.T, url string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %s (last: %v)", url, limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type testGateway struct {
	gw       *gateway.Gateway
	restURL  string
	grpcAddr string
	cancel   context.CancelFunc
	done     chan error
}

// startGateway serves routes in process on loopback, with pools probed
// until the test ends.
func startGateway(t *testing.T, opts gateway.Options, routes map[string][]runtimes.Client) *testGateway {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	for model, clients := range routes {
		pool, err := runtimes.NewPool(runtimes.PoolOptions{Model: model, ProbeInterval: 100 * time.Millisecond}, clients)
		if err != nil {
			t.Fatal(err)
		}
		pool.Probe(ctx)
		go pool.Run(ctx)
		opts.Routes = append(opts.Routes, gateway.Route{Model: model, Pool: pool, Timeout: opts.DrainTimeout + 10*time.Second})
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	gw, err := gateway.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	restLn := listen(t)
	grpcLn := listen(t)
	tg := &testGateway{gw: gw, restURL: "http://" + restLn.Addr().String(), grpcAddr: grpcLn.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { tg.done <- gw.Serve(ctx, restLn, grpcLn) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-tg.done:
		case <-time.After(40 * time.Second):
			t.Error("gateway did not stop")
		}
	})
	return tg
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func restClient(t *testing.T, addr string) runtimes.Client {
	t.Helper()
	c, err := runtimes.NewRESTClient(runtimes.RESTOptions{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func grpcClient(t *testing.T, addr string) runtimes.Client {
	t.Helper()
	c, err := runtimes.NewGRPCClient(runtimes.GRPCOptions{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dialGRPC(t *testing.T, addr string) pb.GRPCInferenceServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewGRPCInferenceServiceClient(conn)
}

// Types a user would write with encoding/json: the tests check the wire
// format independently of infergate's own codec.
type jsonTensor struct {
	Name     string          `json:"name"`
	Datatype string          `json:"datatype"`
	Shape    []int64         `json:"shape"`
	Data     json.RawMessage `json:"data,omitempty"`
}

type jsonRequest struct {
	ID     string       `json:"id,omitempty"`
	Inputs []jsonTensor `json:"inputs"`
}

type jsonResponse struct {
	ModelName    string       `json:"model_name"`
	ModelVersion string       `json:"model_version"`
	ID           string       `json:"id"`
	Outputs      []jsonTensor `json:"outputs"`
	Error        string       `json:"error"`
}

type referenceCase struct {
	Name    string       `json:"name"`
	Inputs  []jsonTensor `json:"inputs"`
	Outputs []jsonTensor `json:"outputs"`
}

func loadReference(t *testing.T, model string) []referenceCase {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(samplesDir, model, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Cases []referenceCase `json:"cases"`
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	return ref.Cases
}

// postJSON posts body and decodes the JSON answer.
func postJSON(t *testing.T, url string, body []byte, header map[string]string) (int, jsonResponse) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out jsonResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("POST %s: status %d, body is not JSON: %q", url, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

// floatsOf decodes a flat or nested JSON array of numbers.
func floatsOf(t *testing.T, raw json.RawMessage) []float64 {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	var out []float64
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				walk(e)
			}
		case float64:
			out = append(out, x)
		default:
			t.Fatalf("unexpected element %T in data", v)
		}
	}
	walk(v)
	return out
}

// assertClose fails unless got and want have the same length and agree
// within tol.
func assertClose(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > tol {
			t.Fatalf("%s[%d] = %v, want %v (tolerance %v)", what, i, got[i], want[i], tol)
		}
	}
}

func mustContain(t *testing.T, what, got, want string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Errorf("%s = %q, want it to contain %q", what, got, want)
	}
}
