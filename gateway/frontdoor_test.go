package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	pb "github.com/infergate/infergate/oip/inferencepb"
)

// These tests run the front doors on real loopback listeners, as clients
// and floods meet them. None of them measures time: each waits for what it
// expects (an answer, a close, Serve's return) with a generous deadline
// well above the short timeouts the gateway is given, and well below the
// defaults the gateway had before these limits.

// waitLimit bounds every wait in these tests. The gateway's own timeouts
// here are at most a second; the old defaults were a minute and more.
const waitLimit = 20 * time.Second

// served is a gateway serving on loopback.
type served struct {
	g          *Gateway
	reg        *prometheus.Registry
	rest, grpc string // addresses
	cancel     context.CancelFunc
	done       chan struct{} // closed when Serve returns, with err
	err        error
}

// serve runs a gateway with opts on fresh loopback listeners (wrapped by
// wrap when it is set) until the test ends.
func serve(t *testing.T, opts Options, wrap func(net.Listener) net.Listener) *served {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	opts.Logger = slog.New(slog.DiscardHandler)
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = waitLimit / 4 // a test's cleanup waits for the drain
	}
	g, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	restLn, grpcLn := listenLoopback(t), listenLoopback(t)
	s := &served{g: g, reg: reg, rest: restLn.Addr().String(), grpc: grpcLn.Addr().String(), done: make(chan struct{})}
	if wrap != nil {
		restLn, grpcLn = wrap(restLn), wrap(grpcLn)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.err = g.Serve(ctx, restLn, grpcLn); close(s.done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(waitLimit):
			t.Error("Serve did not return after its context ended")
		}
	})
	return s
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(waitLimit)); err != nil {
		t.Fatal(err)
	}
	return c
}

// roundTrip writes raw on a new connection and reads one answer.
func roundTrip(t *testing.T, addr, raw string) *http.Response {
	t.Helper()
	c := dial(t, addr)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	return readResponse(t, c)
}

func readResponse(t *testing.T, c net.Conn) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer's body: %v", err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp
}

// oipError checks that resp is an OIP error answer with the status want,
// and returns its message.
func oipError(t *testing.T, resp *http.Response, want int) string {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("status = %d, want %d (body %s)", resp.StatusCode, want, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Fatalf("body %s is not an OIP error: %v", body, err)
	}
	return e.Error
}

// waitClosed reads c until the gateway closes it, and returns what it
// read.
func waitClosed(t *testing.T, c net.Conn) []byte {
	t.Helper()
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the gateway did not close the connection: %v (read %q)", err, b)
	}
	return b
}

// metricValue reads one series of reg (labels as name=value pairs), 0 when
// absent.
func metricValue(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, labels) {
				switch {
				case m.GetGauge() != nil:
					return m.GetGauge().GetValue()
				case m.GetCounter() != nil:
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func hasLabels(m *dto.Metric, pairs []string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == pairs[i] && l.GetValue() == pairs[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// eventually waits until cond holds, failing the test at waitLimit. It is
// for state the gateway reports only through its metrics.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, waitLimit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// heldRuntime is an in-memory OIP REST runtime that holds each inference
// request until the test releases it.
type heldRuntime struct {
	*fakeRuntime
	arrived chan int // the body length of each request that arrived
	release chan struct{}
}

func newHeldRuntime(t *testing.T) *heldRuntime {
	t.Helper()
	h := &heldRuntime{
		fakeRuntime: &fakeRuntime{ln: fasthttputil.NewInmemoryListener(), name: "held"},
		arrived:     make(chan int, 16),
		release:     make(chan struct{}),
	}
	h.srv = &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if bytes.HasSuffix(ctx.Path(), []byte("/infer")) {
			h.arrived <- len(ctx.Request.Body())
			<-h.release
			ctx.SetContentType("application/json")
			ctx.SetBodyString(fakeResponse)
		}
	}}
	go h.srv.Serve(h.ln) //nolint:errcheck // ends when the listener closes
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() { close(h.release) })
		h.ln.Close()
	})
	return h
}

func post(path string, body string, headers ...string) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s",
		path, len(body), strings.Join(headers, ""), body)
}

func TestRESTHeaderLimits(t *testing.T) {
	s := serve(t, Options{MaxHeaderBytes: 16 << 10}, nil)
	token := strings.Repeat("t", 12<<10) // a large bearer token, under the limit
	resp := roundTrip(t, s.rest, "GET /v2/health/live HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer "+token+"\r\n\r\n")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("12 KiB token: status %d, want 200", resp.StatusCode)
	}

	secret := "s3cr3t-" + strings.Repeat("x", 20<<10)
	resp = roundTrip(t, s.rest, "GET /v2/health/live HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer "+secret+"\r\n\r\n")
	msg := oipError(t, resp, http.StatusRequestHeaderFieldsTooLarge)
	if !strings.Contains(msg, "16384 bytes") {
		t.Errorf("431 message %q does not name the limit", msg)
	}
	if strings.Contains(msg, "s3cr3t") {
		t.Errorf("431 message quotes the request: %q", msg)
	}
}

// TestRESTErrorsDoNotEchoRequest: fasthttp's parse errors quote the raw
// request; the gateway's answers must not, or they hand a request's
// credentials to whatever logs or shows error bodies.
func TestRESTErrorsDoNotEchoRequest(t *testing.T) {
	s := serve(t, Options{}, nil)
	creds := "Authorization: Bearer s3cr3t-token\r\nCookie: session=c00kie\r\n"
	tests := []struct{ name, req string }{
		{"bad content-length", "GET /v2/health/live HTTP/1.1\r\nHost: gw\r\n" + creds + "Content-Length: abc\r\n\r\n"},
		{"line without colon", "GET /v2/health/live HTTP/1.1\r\nHost: gw\r\n" + creds + "Bad Line\r\n\r\n"},
		{"bad transfer-encoding", "GET /v2/health/live HTTP/1.1\r\nHost: gw\r\n" + creds + "Transfer-Encoding: bogus\r\n\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := roundTrip(t, s.rest, tc.req)
			msg := oipError(t, resp, http.StatusBadRequest)
			for _, leak := range []string{"s3cr3t", "c00kie", "Authorization", "Cookie"} {
				if strings.Contains(msg, leak) {
					t.Errorf("error %q repeats the request (%s)", msg, leak)
				}
			}
		})
	}
}

func TestRESTSlowRequests408(t *testing.T) {
	rt := newFakeRuntime(t, "a")
	s := serve(t, Options{
		Routes:        []Route{{Model: "m", Pool: readyPool(t, "m", rt.client(t))}},
		HeaderTimeout: 200 * time.Millisecond,
		ReadTimeout:   200 * time.Millisecond,
	}, nil)
	t.Run("headers", func(t *testing.T) {
		c := dial(t, s.rest)
		io.WriteString(c, "GET /v2/health/live HTTP/1.1\r\nHost: gw\r\n") // and no end of headers
		oipError(t, readResponse(t, c), http.StatusRequestTimeout)
	})
	t.Run("body", func(t *testing.T) {
		c := dial(t, s.rest)
		io.WriteString(c, "POST /v2/models/m/infer HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n{\"inputs\":") // 90 bytes short
		oipError(t, readResponse(t, c), http.StatusRequestTimeout)
	})
}

// TestSilentConnectionsClosed: a connection that sends nothing (no
// request, no HTTP/2 preface) is closed once HeaderTimeout passes, on
// every listener; before, REST waited 60s and gRPC 120s.
func TestSilentConnectionsClosed(t *testing.T) {
	s := serve(t, Options{HeaderTimeout: 100 * time.Millisecond}, nil)
	adminLn := listenLoopback(t)
	ctx, cancel := context.WithCancel(context.Background())
	adminDone := make(chan error, 1)
	go func() {
		adminDone <- ServeAdmin(ctx, adminLn, AdminServerOptions{Handler: http.NotFoundHandler(), HeaderTimeout: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	}()
	t.Cleanup(func() { cancel(); <-adminDone })
	for name, addr := range map[string]string{"rest": s.rest, "grpc": s.grpc, "admin": adminLn.Addr().String()} {
		t.Run(name, func(t *testing.T) {
			// gRPC sends its own HTTP/2 settings first; REST and admin
			// close in silence.
			if b := waitClosed(t, dial(t, addr)); len(b) > 0 && name != "grpc" {
				t.Errorf("a connection that sent nothing got %q", b)
			}
		})
	}
}

func TestConnectionCap(t *testing.T) {
	s := serve(t, Options{MaxConns: 1}, nil)
	first := dial(t, s.rest)
	io.WriteString(first, "GET /v2/health/live HTTP/1.1\r\nHost: gw\r\n\r\n")
	if resp := readResponse(t, first); resp.StatusCode != http.StatusOK {
		t.Fatalf("first connection: status %d", resp.StatusCode)
	}
	// The first connection stays open (kept alive): the second waits in
	// the backlog, unaccepted, until it closes.
	second := dial(t, s.rest)
	io.WriteString(second, "GET /v2/health/live HTTP/1.1\r\nHost: gw\r\n\r\n")
	eventually(t, "the REST listener waits at its cap", func() bool {
		return metricValue(t, s.reg, "infergate_listener_full_waits_total", "listener", "rest") >= 1
	})
	for name, want := range map[string]float64{"infergate_listener_open_connections": 1, "infergate_listener_max_connections": 1} {
		if got := metricValue(t, s.reg, name, "listener", "rest"); got != want {
			t.Errorf("%s{listener=rest} = %v, want %v", name, got, want)
		}
	}
	first.Close()
	if resp := readResponse(t, second); resp.StatusCode != http.StatusOK {
		t.Fatalf("second connection, after the first closed: status %d", resp.StatusCode)
	}
}

// flakyListener fails its first fails Accepts with EMFILE, as a process
// out of descriptors does.
type flakyListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
}

func (f *flakyListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	fail := f.fails > 0
	f.fails--
	f.mu.Unlock()
	if fail {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return f.Listener.Accept()
}

func TestAcceptErrorsSurvived(t *testing.T) {
	rt := newFakeRuntime(t, "a")
	s := serve(t, Options{Routes: []Route{{Model: "m", Pool: readyPool(t, "m", rt.client(t))}}},
		func(ln net.Listener) net.Listener { return &flakyListener{Listener: ln, fails: 3} })
	resp := roundTrip(t, s.rest, "GET /v2/health/live HTTP/1.1\r\nHost: gw\r\n\r\n")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("REST after accept errors: status %d", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if _, err := grpcClient(t, s.grpc).ServerLive(ctx, &pb.ServerLiveRequest{}); err != nil {
		t.Errorf("gRPC after accept errors: %v", err)
	}
	for _, l := range []string{"rest", "grpc"} {
		if got := metricValue(t, s.reg, "infergate_listener_accept_errors_total", "listener", l); got != 3 {
			t.Errorf("%s accept errors counted = %v, want 3", l, got)
		}
	}
	select {
	case <-s.done:
		t.Fatalf("Serve returned %v after accept errors", s.err)
	default:
	}
}

func grpcClient(t *testing.T, addr string) pb.GRPCInferenceServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewGRPCInferenceServiceClient(conn)
}

// TestEncodedNamesRefused: a name is decoded once and may not hold '/' or
// "..", so that /v2/models/iris%2F..%2Fdigits/infer cannot reach digits
// past a proxy's rule for iris.
func TestEncodedNamesRefused(t *testing.T) {
	iris, digits := newFakeRuntime(t, "iris"), newFakeRuntime(t, "digits")
	s := serve(t, Options{Routes: []Route{
		{Model: "iris", Pool: readyPool(t, "iris", iris.client(t))},
		{Model: "digits", Pool: readyPool(t, "digits", digits.client(t))},
	}}, nil)
	for _, path := range []string{
		"/v2/models/iris%2F..%2Fdigits/infer",
		"/v2/models/iris%2f..%2fdigits/infer",
		"/v2/models/iris/../digits/infer",
		"/v2/models/iris/%2E%2E/digits/infer",
		"/v2/models/iris/.%2e/digits/infer",
		"/v2/models/iris/./infer",
		"/v2/models/iris/versions/..%2F..%2Fdigits/infer",
		"/v2/models/ir..is/infer",
		"/v2/models/digits/versions/1..2/infer",
	} {
		t.Run(path, func(t *testing.T) {
			oipError(t, roundTrip(t, s.rest, post(path, `{"inputs":[]}`)), http.StatusBadRequest)
		})
	}
	if n := digits.calls.Load(); n != 0 {
		t.Errorf("digits answered %d requests meant for iris", n)
	}
	if resp := roundTrip(t, s.rest, post("/v2/models/%64igits/infer", `{"inputs":[]}`)); resp.StatusCode != http.StatusOK {
		t.Errorf("an encoded name of no slash or dots: status %d, want 200", resp.StatusCode)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	c := grpcClient(t, s.grpc)
	for _, tc := range []struct{ name, version string }{{"iris/../digits", ""}, {"iris", "../digits"}, {"a/b", ""}} {
		_, err := c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: tc.name, ModelVersion: tc.version})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("gRPC ModelInfer %q version %q: %v, want INVALID_ARGUMENT", tc.name, tc.version, err)
		}
		_, err = c.ModelReady(ctx, &pb.ModelReadyRequest{Name: tc.name, Version: tc.version})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("gRPC ModelReady %q version %q: %v, want INVALID_ARGUMENT", tc.name, tc.version, err)
		}
	}
}

// TestDrainIsBounded: DrainTimeout bounds shutdown however the
// connections stand: a gRPC connection that never sent its preface
// (grpc-go's GracefulStop and Stop both wait for its handshake, 120s by
// default) and a REST request stuck at its runtime.
func TestDrainIsBounded(t *testing.T) {
	held := newHeldRuntime(t)
	s := serve(t, Options{
		Routes:        []Route{{Model: "m", Pool: readyPool(t, "m", held.client(t)), Timeout: time.Hour}},
		HeaderTimeout: time.Hour,
		DrainTimeout:  100 * time.Millisecond,
	}, nil)
	idle := dial(t, s.grpc)
	stuck := dial(t, s.rest)
	io.WriteString(stuck, post("/v2/models/m/infer", `{"inputs":[]}`))
	<-held.arrived
	// The silent gRPC connection is accepted (counted) before the drain.
	eventually(t, "the gRPC connection is accepted", func() bool {
		return metricValue(t, s.reg, "infergate_listener_open_connections", "listener", "grpc") == 1
	})
	s.cancel()
	select {
	case <-s.done:
		if s.err != nil {
			t.Errorf("Serve = %v, want nil after a drain", s.err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Serve did not return after its drain timeout")
	}
	waitClosed(t, idle)
	waitClosed(t, stuck)
}

func TestAdminDrainIsBounded(t *testing.T) {
	ln := listenLoopback(t)
	entered, unblock := make(chan struct{}), make(chan struct{})
	defer close(unblock)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-unblock
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ServeAdmin(ctx, ln, AdminServerOptions{Handler: h, DrainTimeout: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	}()
	c := dial(t, ln.Addr().String())
	io.WriteString(c, "GET /debug/pprof/profile HTTP/1.1\r\nHost: admin\r\n\r\n")
	<-entered
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeAdmin = %v, want nil after a drain", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("ServeAdmin did not return after its drain timeout")
	}
	waitClosed(t, c)
}

// TestRESTInFlightBytes: past MaxInFlightBytes a REST request gets 503
// with Retry-After, decided from its Content-Length before its body is
// read: the refused request sends only what fasthttp reads with the
// headers (the first 8 KiB) and is answered without the rest.
func TestRESTInFlightBytes(t *testing.T) {
	held := newHeldRuntime(t)
	const size = 20000
	s := serve(t, Options{
		Routes:           []Route{{Model: "m", Pool: readyPool(t, "m", held.client(t))}},
		MaxBodyBytes:     30000,
		MaxInFlightBytes: 30000,
		InFlightWait:     10 * time.Millisecond,
	}, nil)
	body := `{"inputs":[]}` + strings.Repeat(" ", size-13)
	first := dial(t, s.rest)
	io.WriteString(first, post("/v2/models/m/infer", body))
	if n := <-held.arrived; n != size {
		t.Fatalf("the runtime got %d bytes, want %d", n, size)
	}
	if got := metricValue(t, s.reg, "infergate_gateway_in_flight_request_bytes"); got != size {
		t.Errorf("in-flight bytes = %v, want %d", got, size)
	}

	second := dial(t, s.rest)
	full := post("/v2/models/m/infer", body)
	io.WriteString(second, full[:len(full)-size+8<<10])
	resp := readResponse(t, second)
	oipError(t, resp, http.StatusServiceUnavailable)
	if resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if got := metricValue(t, s.reg, "infergate_gateway_in_flight_refused_total", "protocol", "rest"); got != 1 {
		t.Errorf("refusals counted = %v, want 1", got)
	}

	held.release <- struct{}{}
	if resp := readResponse(t, first); resp.StatusCode != http.StatusOK {
		t.Fatalf("held request: status %d", resp.StatusCode)
	}
	// The room is back: the same request now goes through.
	third := dial(t, s.rest)
	io.WriteString(third, full)
	<-held.arrived
	held.release <- struct{}{}
	if resp := readResponse(t, third); resp.StatusCode != http.StatusOK {
		t.Errorf("after the room came back: status %d", resp.StatusCode)
	}
	if got := metricValue(t, s.reg, "infergate_gateway_in_flight_request_bytes"); got != 0 {
		t.Errorf("in-flight bytes after every answer = %v, want 0", got)
	}
}

func TestRESTChunkedBodies(t *testing.T) {
	rt := newFakeRuntime(t, "a")
	s := serve(t, Options{Routes: []Route{{Model: "m", Pool: readyPool(t, "m", rt.client(t))}}, MaxBodyBytes: 100}, nil)
	chunked := func(parts ...string) string {
		var b strings.Builder
		b.WriteString("POST /v2/models/m/infer HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n")
		for _, p := range parts {
			fmt.Fprintf(&b, "%x\r\n%s\r\n", len(p), p)
		}
		b.WriteString("0\r\n\r\n")
		return b.String()
	}
	if resp := roundTrip(t, s.rest, chunked(`{"inputs"`, `:[]}`)); resp.StatusCode != http.StatusOK {
		t.Errorf("chunked body: status %d", resp.StatusCode)
	}
	if resp := roundTrip(t, s.rest, chunked(strings.Repeat("x", 60), strings.Repeat("x", 60))); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked body over MaxBodyBytes: status %d, want 413", resp.StatusCode)
	}
	if resp := roundTrip(t, s.rest, chunked(strings.Repeat("x", 100))); resp.StatusCode != http.StatusOK {
		t.Errorf("chunked body of exactly MaxBodyBytes: status %d, want 200", resp.StatusCode)
	}
	if got := metricValue(t, s.reg, "infergate_gateway_in_flight_request_bytes"); got != 0 {
		t.Errorf("in-flight bytes after every answer = %v, want 0", got)
	}
}

func TestGRPCInFlightBytes(t *testing.T) { forEachGRPCServer(t, testGRPCInFlightBytes) }

func testGRPCInFlightBytes(t *testing.T, server string) {
	held := newHeldRuntime(t)
	s := serve(t, Options{
		Routes:           []Route{{Model: "m", Pool: readyPool(t, "m", held.client(t))}},
		MaxInFlightBytes: 1000,
		MaxBodyBytes:     1000,
		InFlightWait:     10 * time.Millisecond,
		GRPCServer:       server,
	}, nil)
	req := &pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{{
		Name: "x", Datatype: "FP32", Shape: []int64{1, 200},
		Contents: &pb.InferTensorContents{Fp32Contents: make([]float32, 200)},
	}}}
	c := grpcClient(t, s.grpc)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	first := make(chan error, 1)
	go func() { _, err := c.ModelInfer(ctx, req); first <- err }()
	<-held.arrived
	_, err := c.ModelInfer(ctx, req)
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a second call past the bound: %v, want RESOURCE_EXHAUSTED", err)
	}
	if got := metricValue(t, s.reg, "infergate_gateway_in_flight_refused_total", "protocol", "grpc"); got != 1 {
		t.Errorf("refusals counted = %v, want 1", got)
	}
	held.release <- struct{}{}
	if err := <-first; err != nil {
		t.Errorf("held call: %v", err)
	}
}

// TestGRPCTapRefusesWhileShort: while requests wait for room, a new
// ModelInfer call is refused before its message is read; other calls pass.
func TestGRPCTapRefusesWhileShort(t *testing.T) {
	g := newTestGateway(t)
	info := func(method string) *tap.Info { return &tap.Info{FullMethodName: method} }
	infer := pb.GRPCInferenceService_ModelInfer_FullMethodName
	if _, err := g.grpcTap(context.Background(), info(infer)); err != nil {
		t.Errorf("tap with room: %v", err)
	}
	g.budget.waiting.Add(1)
	defer g.budget.waiting.Add(-1)
	if _, err := g.grpcTap(context.Background(), info(infer)); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("tap while short, ModelInfer: %v, want RESOURCE_EXHAUSTED", err)
	}
	if _, err := g.grpcTap(context.Background(), info(pb.GRPCInferenceService_ServerLive_FullMethodName)); err != nil {
		t.Errorf("tap while short, ServerLive: %v", err)
	}
}

func TestInFlightOptions(t *testing.T) {
	if _, err := New(Options{MaxBodyBytes: 2000, MaxInFlightBytes: 1000}); err == nil {
		t.Error("New accepted MaxInFlightBytes below MaxBodyBytes")
	}
	g, err := New(Options{MaxBodyBytes: 2 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if g.opts.MaxInFlightBytes != 2<<30 {
		t.Errorf("default MaxInFlightBytes with a 2 GiB body limit = %d, want 2 GiB", g.opts.MaxInFlightBytes)
	}
	if _, err := New(Options{GRPCServer: "nginx"}); err == nil {
		t.Error("New accepted an unknown GRPCServer")
	}
}
