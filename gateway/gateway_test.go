package gateway

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/infergate/infergate/autoscaler/activator"
	"github.com/infergate/infergate/runtimes"
)

// fakeRuntime is an in-memory OIP REST runtime: the narrowest seam for
// unit tests and benchmarks of the gateway's REST path.
type fakeRuntime struct {
	ln    *fasthttputil.InmemoryListener
	srv   *fasthttp.Server
	calls atomic.Int64
	name  string
}

const fakeResponse = `{"model_name":"m","outputs":[{"name":"y","datatype":"FP32","shape":[1,1],"data":[1]}]}`

func newFakeRuntime(t testing.TB, name string) *fakeRuntime {
	t.Helper()
	f := &fakeRuntime{ln: fasthttputil.NewInmemoryListener(), name: name}
	f.srv = &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		switch {
		case bytes.HasSuffix(ctx.Path(), []byte("/ready")):
		case bytes.HasSuffix(ctx.Path(), []byte("/infer")):
			f.calls.Add(1)
			ctx.SetContentType("application/json")
			ctx.Response.Header.Set("X-Runtime", f.name)
			ctx.SetBodyString(fakeResponse)
		default:
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"name":"m","platform":"fake","inputs":[{"name":"x","datatype":"FP32","shape":[-1,1]}],"outputs":[{"name":"y","datatype":"FP32","shape":[-1,1]}]}`)
		}
	}}
	go f.srv.Serve(f.ln) //nolint:errcheck // ends when the listener closes
	t.Cleanup(func() { f.ln.Close() })
	return f
}

func (f *fakeRuntime) client(t testing.TB) runtimes.Client {
	t.Helper()
	c, err := runtimes.NewRESTClient(runtimes.RESTOptions{Addr: "127.0.0.1:1", Dial: func(string) (net.Conn, error) { return f.ln.Dial() }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func readyPool(t testing.TB, model string, clients ...runtimes.Client) *runtimes.Pool {
	t.Helper()
	p, err := runtimes.NewPool(runtimes.PoolOptions{Model: model, Logger: slog.New(slog.DiscardHandler)}, clients)
	if err != nil {
		t.Fatal(err)
	}
	p.Probe(context.Background())
	if !p.Ready() {
		t.Fatal("pool not ready after probe")
	}
	return p
}

func newTestGateway(t testing.TB, routes ...Route) *Gateway {
	t.Helper()
	g, err := New(Options{Routes: routes, Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// serveOnce runs one request through HandleREST without a network.
func serveOnce(g *Gateway, method, path, body string) *fasthttp.RequestCtx {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(path)
	ctx.Request.SetBodyString(body)
	g.HandleREST(&ctx)
	return &ctx
}

func TestHandleRESTRoutes(t *testing.T) {
	rt := newFakeRuntime(t, "a")
	g := newTestGateway(t, Route{Model: "m", Pool: readyPool(t, "m", rt.client(t))})
	tests := []struct {
		name, method, path string
		wantCode           int
		wantBody           string
	}{
		{"live", "GET", "/v2/health/live", 200, ""},
		{"ready", "GET", "/v2/health/ready", 200, ""},
		{"server metadata", "GET", "/v2", 200, `"name":"infergate"`},
		{"model metadata", "GET", "/v2/models/m", 200, `"platform":"fake"`},
		{"model ready", "GET", "/v2/models/m/ready", 200, ""},
		{"infer", "POST", "/v2/models/m/infer", 200, fakeResponse},
		{"infer version", "POST", "/v2/models/m/versions/1/infer", 200, fakeResponse},
		{"unknown model", "POST", "/v2/models/x/infer", 404, `model \"x\" not found; served models: m`},
		{"wrong method", "GET", "/v2/models/m/infer", 405, "use POST"},
		{"unknown path", "GET", "/metrics", 404, "no OIP endpoint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := serveOnce(g, tc.method, tc.path, `{"inputs":[]}`)
			if got := ctx.Response.StatusCode(); got != tc.wantCode {
				t.Errorf("status = %d, want %d (body %s)", got, tc.wantCode, ctx.Response.Body())
			}
			if !bytes.Contains(ctx.Response.Body(), []byte(tc.wantBody)) {
				t.Errorf("body = %s, want it to contain %s", ctx.Response.Body(), tc.wantBody)
			}
		})
	}
	// The wrong method is counted as what it was answered: 405, not 404.
	if got := testutil.ToFloat64(g.metrics.requests.WithLabelValues("", "", "rest", "405")); got != 1 {
		t.Errorf(`infergate_gateway_requests_total{code="405"} = %v, want 1`, got)
	}
	if got := testutil.ToFloat64(g.metrics.requests.WithLabelValues("", "", "rest", "404")); got != 2 {
		t.Errorf(`infergate_gateway_requests_total{code="404"} = %v, want 2 (unknown model and path)`, got)
	}
}

// TestSetRoutesUnderLoad swaps the route table between two runtimes while
// requests flow: no request fails, and both runtimes serve.
func TestSetRoutesUnderLoad(t *testing.T) {
	a, b := newFakeRuntime(t, "a"), newFakeRuntime(t, "b")
	ra := Route{Model: "m", Pool: readyPool(t, "m", a.client(t))}
	rb := Route{Model: "m", Pool: readyPool(t, "m", b.client(t))}
	g := newTestGateway(t, ra)
	const workers, perWorker = 4, 500
	var wg sync.WaitGroup
	var failures, done atomic.Int64
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer done.Add(1)
			for range perWorker {
				if ctx := serveOnce(g, "POST", "/v2/models/m/infer", `{}`); ctx.Response.StatusCode() != 200 {
					failures.Add(1)
				}
			}
		}()
	}
	for i := 0; done.Load() < workers; i++ {
		r := ra
		if i%2 == 1 {
			r = rb
		}
		if err := g.SetRoutes([]Route{r}); err != nil {
			t.Fatal(err)
		}
		runtime.Gosched()
	}
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Errorf("%d of %d requests failed across route swaps", n, workers*perWorker)
	}
	if a.calls.Load() == 0 || b.calls.Load() == 0 || a.calls.Load()+b.calls.Load() != workers*perWorker {
		t.Errorf("runtime a served %d, b %d; want both > 0 and %d in all", a.calls.Load(), b.calls.Load(), workers*perWorker)
	}
}

func TestSetRoutesRejectsBadTables(t *testing.T) {
	rt := newFakeRuntime(t, "a")
	p := readyPool(t, "m", rt.client(t))
	g := newTestGateway(t, Route{Model: "m", Pool: p})
	for name, routes := range map[string][]Route{
		"duplicate": {{Model: "m", Pool: p}, {Model: "m", Pool: p}},
		"no pool":   {{Model: "m"}},
		"no name":   {{Pool: p}},
	} {
		if err := g.SetRoutes(routes); err == nil {
			t.Errorf("%s: SetRoutes accepted a bad table", name)
		}
	}
	if ctx := serveOnce(g, "POST", "/v2/models/m/infer", `{}`); ctx.Response.StatusCode() != 200 {
		t.Errorf("a rejected table replaced the good one: status %d", ctx.Response.StatusCode())
	}
}

func TestParseTimeout(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"250ms", 250 * time.Millisecond, false},
		{"2s", 2 * time.Second, false},
		{"1.5", 1500 * time.Millisecond, false},
		{"0", 0, true},
		{"-1s", 0, true},
		{"soon", 0, true},
		{"", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseTimeout([]byte(tc.in))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseTimeout(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestAdminPprofLoopbackOnly(t *testing.T) {
	h := AdminHandler(AdminOptions{Gatherer: prometheus.NewRegistry()})
	for _, tc := range []struct {
		remote string
		want   int
	}{{"127.0.0.1:5000", 200}, {"[::1]:5000", 200}, {"10.1.2.3:5000", 403}} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/debug/pprof/", nil)
		req.RemoteAddr = tc.remote
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("pprof from %s: %d, want %d", tc.remote, rec.Code, tc.want)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("/metrics: %d", rec.Code)
	}
}

// BenchmarkRESTPassThrough measures the gateway's handler on the fast
// path, upstream over an in-memory connection.
func BenchmarkRESTPassThrough(b *testing.B) {
	rt := newFakeRuntime(b, "a")
	g := newTestGateway(b, Route{Model: "m", Pool: readyPool(b, "m", rt.client(b))})
	body := []byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1]}]}`)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		for pb.Next() {
			ctx.Request.Reset()
			ctx.Response.Reset()
			ctx.Request.Header.SetMethod("POST")
			ctx.Request.SetRequestURI("/v2/models/m/infer")
			ctx.Request.SetBody(body)
			g.HandleREST(&ctx)
			if ctx.Response.StatusCode() != 200 {
				b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
		}
	})
}

// TestRESTPassThroughAllocs guards the fast path's allocation budget.
func TestRESTPassThroughAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool allocates")
	}
	rt := newFakeRuntime(t, "a")
	g := newTestGateway(t, Route{Model: "m", Pool: readyPool(t, "m", rt.client(t))})
	body := []byte(`{"inputs":[]}`)
	var ctx fasthttp.RequestCtx
	run := func() {
		ctx.Request.Reset()
		ctx.Response.Reset()
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI("/v2/models/m/infer")
		ctx.Request.SetBody(body)
		g.HandleREST(&ctx)
	}
	run() // first call creates the status counter
	if n := testing.AllocsPerRun(200, run); n > 0 {
		t.Errorf("REST pass-through allocates %v times per request, want 0", n)
	}
}

func TestReadyFollowsServing(t *testing.T) {
	rt := newFakeRuntime(t, "a")
	serving := false
	empty, err := runtimes.NewPool(runtimes.PoolOptions{Model: "later", Logger: slog.New(slog.DiscardHandler)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := newTestGateway(t,
		Route{Model: "m", Pool: readyPool(t, "m", rt.client(t))},
		Route{Model: "later", Pool: empty, Serving: func() bool { return serving }},
	)
	if g.Ready() {
		t.Error("ready while a supervised model has no replica up yet")
	}
	serving = true
	if !g.Ready() {
		t.Error("not ready once every model serves")
	}
	if err := g.SetRoutes([]Route{{Model: "zero", Pool: empty}}); err != nil {
		t.Fatal(err)
	}
	if !g.Ready() {
		t.Error("a model with an empty pool and no Serving func holds readiness back")
	}
}

// TestRuntime5xxPassesThroughAndCounts: a runtime's 5xx answer reaches the
// client as the runtime wrote it, and the pool sees it as a failure.
func TestRuntime5xxPassesThroughAndCounts(t *testing.T) {
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if bytes.HasSuffix(ctx.Path(), []byte("/ready")) {
			return
		}
		ctx.SetStatusCode(500)
		ctx.SetBodyString(`{"error":"model exploded"}`)
	}}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { ln.Close() })
	c, err := runtimes.NewRESTClient(runtimes.RESTOptions{Addr: "127.0.0.1:1", Dial: func(string) (net.Conn, error) { return ln.Dial() }})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := runtimes.NewPool(runtimes.PoolOptions{Model: "m", Logger: slog.New(slog.DiscardHandler), EjectFailures: -1, BreakerFailures: 3}, []runtimes.Client{c})
	if err != nil {
		t.Fatal(err)
	}
	pool.Probe(context.Background())
	g := newTestGateway(t, Route{Model: "m", Pool: pool})
	for i := 0; i < 3; i++ {
		ctx := serveOnce(g, "POST", "/v2/models/m/infer", `{}`)
		if ctx.Response.StatusCode() != 500 || string(ctx.Response.Body()) != `{"error":"model exploded"}` {
			t.Fatalf("answer %d = %d %s, want the runtime's own 500", i, ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
	if st := pool.Stats(); st.BreakerOpens != 1 {
		t.Errorf("breaker opens = %d after 3 runtime 500s, want 1", st.BreakerOpens)
	}
}

// TestActivatedPassThroughAllocs: a route with an activator and a ready
// replica keeps the pass-through free of allocations (no context or timer
// unless the request has to wait).
func TestActivatedPassThroughAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool allocates")
	}
	rt := newFakeRuntime(t, "a")
	act, err := activator.New(activator.Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	act.SetCapacity("m", 1)
	g := newTestGateway(t, Route{Model: "m", Pool: readyPool(t, "m", rt.client(t)), Activator: act})
	body := []byte(`{"inputs":[]}`)
	var ctx fasthttp.RequestCtx
	run := func() {
		ctx.Request.Reset()
		ctx.Response.Reset()
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI("/v2/models/m/infer")
		ctx.Request.SetBody(body)
		g.HandleREST(&ctx)
	}
	run()
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if n := testing.AllocsPerRun(200, run); n > 0 {
		t.Errorf("activated pass-through allocates %v times per request, want 0", n)
	}
}
