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
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/infergate/infergate/gateway"
	"github.com/infergate/infergate/internal/testbin"
	pb "github.com/infergate/infergate/oip/inferencepb"
	"github.com/infergate/infergate/runtimes"
	"github.com/infergate/infergate/runtimes/supervisor"
	"github.com/infergate/infergate/serving"
	"github.com/infergate/infergate/serving/servingtest"
)

// binPath is the infergate binary built once by TestMain, so that runtimes
// run as the real processes users get.
var binPath string

func TestMain(m *testing.M) {
	// Started by a test as a runtime process, it serves and exits here.
	servingtest.RunRuntime()
	testbin.Main(&binPath, m.Run)
}

const samplesDir = "../../examples/models"

// startModelServer starts `infergate modelserver` for the named sample
// models on loopback and waits until it is ready.
func startModelServer(t *testing.T, models ...string) *supervisor.Process {
	t.Helper()
	args := []string{"modelserver", "-host", "127.0.0.1", "-http-port", "0", "-grpc-port", "0"}
	for _, m := range models {
		args = append(args, "-model", m+"="+filepath.Join(samplesDir, m))
	}
	p, err := supervisor.StartProcess(context.Background(), supervisor.ProcessOptions{
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

// listenAddrs are the addresses a running `infergate serve` or `infergate
// gateway` bound, as its "infergate listening" log line reports them.
type listenAddrs struct{ rest, grpc, admin string }

// parseListening reads the addresses from the "infergate listening" log
// line, in the text or the JSON log format; false for any other line.
func parseListening(line string) (listenAddrs, bool) {
	var a listenAddrs
	if strings.HasPrefix(line, "{") {
		var rec struct{ Msg, Rest, GRPC, Admin string }
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "infergate listening" {
			return a, false
		}
		a = listenAddrs{rec.Rest, rec.GRPC, rec.Admin}
	} else {
		if !strings.Contains(line, `msg="infergate listening"`) {
			return a, false
		}
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "rest":
				a.rest = v
			case "grpc":
				a.grpc = v
			case "admin":
				a.admin = v
			}
		}
	}
	return a, a.rest != "" && a.grpc != "" && a.admin != ""
}

// procLog is a child process's stderr: kept whole for the test to read
// while the process writes it, and watched line by line for the
// "infergate listening" line, whose addresses it sends on listening once.
type procLog struct {
	mu        sync.Mutex
	b         bytes.Buffer
	scanned   int // bytes of b already looked at for the listening line
	found     bool
	listening chan listenAddrs
}

func newProcLog() *procLog { return &procLog{listening: make(chan listenAddrs, 1)} }

func (l *procLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, _ := l.b.Write(p)
	for !l.found {
		rest := l.b.Bytes()[l.scanned:]
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		l.scanned += i + 1
		if a, ok := parseListening(string(rest[:i])); ok {
			l.found = true
			l.listening <- a
		}
	}
	return n, nil
}

func (l *procLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// infergateProc is a running `infergate serve` or `infergate gateway`.
type infergateProc struct {
	cmd               *exec.Cmd
	rest, grpc, admin string // the addresses it listens on
	dataDir           string // its -data-dir
	exited            <-chan error
	logs              *procLog
}

// startInfergate runs `infergate command args...` with its REST, gRPC and
// admin listeners on port 0 of 127.0.0.1 (args may override them: a later
// flag wins) and returns once the process has bound them, with the
// addresses read back from its log, so that no other process can take a
// port between the test choosing it and the gateway binding it. The process
// is killed when the test ends if it still runs; its log is printed if the
// test failed.
func startInfergate(t *testing.T, command string, args ...string) *infergateProc {
	t.Helper()
	return startBinary(t, binPath, command, args...)
}

// startBinary is startInfergate with another build of infergate.
func startBinary(t *testing.T, bin, command string, args ...string) *infergateProc {
	t.Helper()
	logs := newProcLog()
	all := append([]string{command, "-rest-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0"}, args...)
	dataDir := "data"
	if i := slices.Index(args, "-data-dir"); i >= 0 && i+1 < len(args) {
		dataDir = args[i+1]
	} else if command == "serve" || command == "gateway" {
		// Each its own store: no state left by another test or run.
		dataDir = t.TempDir()
		all = append(all, "-data-dir", dataDir)
	}
	cmd := exec.Command(bin, all...)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// exited hands the exit to the test once; done says the process has
	// exited, to the cleanup, whether or not the test took the exit.
	exited := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		exited <- cmd.Wait()
		close(done)
	}()
	p := &infergateProc{cmd: cmd, exited: exited, logs: logs, dataDir: dataDir}
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
			<-done
		}
		if strings.Contains(logs.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector found a race in infergate %s", command)
		}
		if t.Failed() {
			t.Logf("infergate %s log:\n%s", command, logs.String())
		}
	})
	// Generous: the sample models are extracted and the runtimes of
	// models with minReplicas started before the line is logged.
	select {
	case a := <-logs.listening:
		p.rest, p.grpc, p.admin = a.rest, a.grpc, a.admin
	case <-done:
		t.Fatalf("infergate %s exited before listening: %v", command, cmd.ProcessState)
	case <-time.After(3 * time.Minute):
		t.Fatalf("infergate %s did not log its listening addresses within 3 minutes", command)
	}
	return p
}

// cli is `infergate args...` run as a user on the server's machine: with
// the local key of the server's data directory (INFERGATE_KEY_FILE).
func (p *infergateProc) cli(args ...string) *exec.Cmd {
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), envKeyFile+"="+filepath.Join(p.dataDir, serving.LocalKeyFile))
	return cmd
}

// localKey is the token of the server's local key.
func (p *infergateProc) localKey(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.dataDir, serving.LocalKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// stop sends SIGTERM and returns how the process exited, failing the test
// if it does not exit within a minute.
func (p *infergateProc) stop(t *testing.T) error {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		return err
	case <-time.After(time.Minute):
		t.Fatal("infergate did not exit within a minute of SIGTERM")
		return nil
	}
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

// testClient bounds every request postJSON sends, generously, so that a
// gateway that never answers fails the test instead of hanging it.
var testClient = &http.Client{Timeout: 2 * time.Minute}

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
	resp, err := testClient.Do(req)
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

// TestParseListening reads the addresses from serve's log line in both
// log formats, and from no other line.
func TestParseListening(t *testing.T) {
	want := listenAddrs{"127.0.0.1:1", "127.0.0.1:2", "[::1]:3"}
	for _, tc := range []struct {
		name, line string
		ok         bool
	}{
		{"text", `time=2026-01-02T03:04:05.000Z level=INFO msg="infergate listening" rest=127.0.0.1:1 grpc=127.0.0.1:2 admin=[::1]:3 models=1`, true},
		{"json", `{"time":"2026-01-02T03:04:05Z","level":"INFO","msg":"infergate listening","rest":"127.0.0.1:1","grpc":"127.0.0.1:2","admin":"[::1]:3","models":1}`, true},
		{"other text line", `time=2026-01-02T03:04:05.000Z level=INFO msg="revision created" model=iris rest=127.0.0.1:1 grpc=127.0.0.1:2 admin=[::1]:3`, false},
		{"other json line", `{"msg":"replica started","rest":"127.0.0.1:1","grpc":"127.0.0.1:2","admin":"[::1]:3"}`, false},
		{"an address missing", `time=x level=INFO msg="infergate listening" rest=127.0.0.1:1 grpc=127.0.0.1:2`, false},
	} {
		got, ok := parseListening(tc.line)
		if ok != tc.ok || ok && got != want {
			t.Errorf("%s: %+v, %v; want %+v, %v", tc.name, got, ok, want, tc.ok)
		}
	}
}
