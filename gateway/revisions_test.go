package gateway

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/infergate/infergate/autoscaler/activator"
	"github.com/infergate/infergate/router"
	"github.com/infergate/infergate/runtimes"
)

// scriptedRuntime is an in-memory OIP REST runtime whose infer answer is
// set per test, and which remembers the paths it was asked.
type scriptedRuntime struct {
	ln     *fasthttputil.InmemoryListener // or addr, a loopback socket
	addr   string
	calls  atomic.Int64
	status atomic.Int64
	body   string
	mu     sync.Mutex
	paths  []string
}

func newScriptedRuntime(t testing.TB, body string) *scriptedRuntime {
	t.Helper()
	s := &scriptedRuntime{ln: fasthttputil.NewInmemoryListener(), body: body}
	s.status.Store(200)
	go s.server().Serve(s.ln) //nolint:errcheck // ends when the listener closes
	t.Cleanup(func() { s.ln.Close() })
	return s
}

func (s *scriptedRuntime) server() *fasthttp.Server {
	return &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		switch {
		case bytes.HasSuffix(ctx.Path(), []byte("/ready")):
		case bytes.HasSuffix(ctx.Path(), []byte("/infer")):
			s.calls.Add(1)
			s.mu.Lock()
			s.paths = append(s.paths, string(ctx.Path()))
			s.mu.Unlock()
			ctx.SetStatusCode(int(s.status.Load()))
			ctx.SetContentType("application/json")
			ctx.SetBodyString(s.body)
		}
	}}
}

// newLoopbackRuntime is a scriptedRuntime listening on 127.0.0.1.
func newLoopbackRuntime(t testing.TB, body string) *scriptedRuntime {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptedRuntime{addr: ln.Addr().String(), body: body}
	s.status.Store(200)
	go s.server().Serve(ln) //nolint:errcheck // ends when the listener closes
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *scriptedRuntime) client(t testing.TB) runtimes.Client {
	t.Helper()
	if s.addr != "" {
		c, err := runtimes.NewRESTClient(runtimes.RESTOptions{Addr: s.addr})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c, err := runtimes.NewRESTClient(runtimes.RESTOptions{Addr: "127.0.0.1:1", Dial: func(string) (net.Conn, error) { return s.ln.Dial() }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (s *scriptedRuntime) lastPath() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.paths) == 0 {
		return ""
	}
	return s.paths[len(s.paths)-1]
}

const scoresA = `{"model_name":"m","outputs":[{"name":"scores","datatype":"FP32","shape":[1,2],"data":[0.9,0.1]}]}`
const scoresB = `{"model_name":"m","outputs":[{"name":"scores","datatype":"FP32","shape":[1,2],"data":[0.2,0.8]}]}`
const inferBody = `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1]}]}`

// twoRevisions routes model m to a (m-00001) and b (m-00002) with the
// given percents; tags latest=b, prev=a.
func twoRevisions(t testing.TB, a, b *scriptedRuntime, pa, pb float64, mirror *router.Mirror) []router.Model[Route] {
	t.Helper()
	m := router.Model[Route]{
		Name: "m",
		Revisions: []*router.Revision[Route]{
			{Name: "m-00001", Number: 1, Backend: Route{Pool: readyPool(t, "m", a.client(t))}},
			{Name: "m-00002", Number: 2, Backend: Route{Pool: readyPool(t, "m", b.client(t))}},
		},
		Tags:   map[string]string{"latest": "m-00002", "prev": "m-00001"},
		Mirror: mirror,
	}
	if pa > 0 {
		m.Traffic = append(m.Traffic, router.Weight{Revision: "m-00001", Percent: pa})
	}
	if pb > 0 {
		m.Traffic = append(m.Traffic, router.Weight{Revision: "m-00002", Percent: pb})
	}
	return []router.Model[Route]{m}
}

func serveWith(g *Gateway, path string, header map[string]string) *fasthttp.RequestCtx {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("POST")
	ctx.Request.SetRequestURI(path)
	for k, v := range header {
		ctx.Request.Header.Set(k, v)
	}
	ctx.Request.SetBodyString(inferBody)
	g.HandleREST(&ctx)
	return &ctx
}

func TestRevisionsPinnedAndSplit(t *testing.T) {
	a, b := newScriptedRuntime(t, scoresA), newScriptedRuntime(t, scoresB)
	g := newTestGateway(t)
	if err := g.SetModels(twoRevisions(t, a, b, 90, 10, nil)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		header     map[string]string
		want       *scriptedRuntime
	}{
		{"path number", "/v2/models/m/versions/2/infer", nil, b},
		{"path name", "/v2/models/m/versions/m-00001/infer", nil, a},
		{"path tag", "/v2/models/m/versions/latest/infer", nil, b},
		{"header tag", "/v2/models/m/infer", map[string]string{HeaderRevision: "prev"}, a},
		{"path wins over header", "/v2/models/m/versions/2/infer", map[string]string{HeaderRevision: "1"}, b},
	} {
		before := tc.want.calls.Load()
		ctx := serveWith(g, tc.path, tc.header)
		if ctx.Response.StatusCode() != 200 || tc.want.calls.Load() != before+1 {
			t.Errorf("%s: status %d, the pinned revision served %d", tc.name, ctx.Response.StatusCode(), tc.want.calls.Load()-before)
		}
		// The runtime serves the model under its own versions: the
		// revision's version is not passed on.
		if p := tc.want.lastPath(); p != "/v2/models/m/infer" {
			t.Errorf("%s: the runtime was asked %s", tc.name, p)
		}
	}
	ctx := serveWith(g, "/v2/models/m/versions/7/infer", nil)
	if ctx.Response.StatusCode() != 404 || !strings.Contains(string(ctx.Response.Body()), `revisions: m-00001 (1), m-00002 (2); tags: latest=m-00002, prev=m-00001`) {
		t.Errorf("unknown revision: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}

	const n = 4000
	a0, b0 := a.calls.Load(), b.calls.Load()
	for range n {
		if ctx := serveWith(g, "/v2/models/m/infer", nil); ctx.Response.StatusCode() != 200 {
			t.Fatalf("status %d", ctx.Response.StatusCode())
		}
	}
	got := float64(b.calls.Load() - b0)
	if tol := 5 * math.Sqrt(n*0.1*0.9); math.Abs(got-n*0.1) > tol || a.calls.Load()-a0+int64(got) != n {
		t.Errorf("canary at 10%% took %.0f of %d requests (a took %d)", got, n, a.calls.Load()-a0)
	}
}

func TestStickySessions(t *testing.T) {
	a, b := newScriptedRuntime(t, scoresA), newScriptedRuntime(t, scoresB)
	g := newTestGateway(t)
	if err := g.SetModels(twoRevisions(t, a, b, 50, 50, nil)); err != nil {
		t.Fatal(err)
	}
	// Through a server connection: the cookie is read from the raw header.
	gwLn := fasthttputil.NewInmemoryListener()
	go g.restServer().Serve(gwLn) //nolint:errcheck // ends when the listener closes
	defer gwLn.Close()
	client := &fasthttp.HostClient{Addr: "gw", Dial: func(string) (net.Conn, error) { return gwLn.Dial() }}
	onB := 0
	for user := range 200 {
		key := fmt.Sprintf("user-%d", user)
		var first *scriptedRuntime
		for i := range 10 {
			a0 := a.calls.Load()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			req.SetRequestURI("http://gw/v2/models/m/infer")
			req.Header.SetMethod("POST")
			req.SetBodyString(inferBody)
			if i%2 == 1 {
				req.Header.Set("Cookie", "theme=dark; "+CookieSession+"="+key)
			} else {
				req.Header.Set(HeaderSessionKey, key)
			}
			if err := client.Do(req, resp); err != nil || resp.StatusCode() != 200 {
				t.Fatalf("request: %v %d", err, resp.StatusCode())
			}
			fasthttp.ReleaseRequest(req)
			fasthttp.ReleaseResponse(resp)
			got := b
			if a.calls.Load() > a0 {
				got = a
			}
			if first == nil {
				first = got
			} else if got != first {
				t.Fatalf("session %s moved between revisions", key)
			}
		}
		if first == b {
			onB++
		}
	}
	if onB < 60 || onB > 140 {
		t.Errorf("%d of 200 sessions on the 50%% revision", onB)
	}
}

// TestWeightChangesUnderLoad changes a canary's weight every few hundred
// milliseconds while clients send requests without pause, over loopback
// sockets to the gateway and from it to two runtimes: no request fails or
// is lost, and in each phase the share each revision took matches its
// weight within 5 standard deviations plus a point (under 7 points at 50%
// over 2,000 requests).
func TestWeightChangesUnderLoad(t *testing.T) {
	a, b := newLoopbackRuntime(t, scoresA), newLoopbackRuntime(t, scoresB)
	g := newTestGateway(t)
	tables := map[float64][]router.Model[Route]{}
	for _, w := range []float64{0, 10, 25, 50, 90, 100} {
		tables[w] = twoRevisions(t, a, b, 100-w, w, nil)
	}
	if err := g.SetModels(tables[0]); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- g.Serve(ctx, ln, nil) }()
	defer func() {
		cancel()
		<-served
	}()
	client := &fasthttp.HostClient{Addr: ln.Addr().String(), MaxConns: 16}

	const workers = 4
	var failed, sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	deadline := time.Now().Add(time.Minute)
	for range workers {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for i := 0; i < 200000 && time.Now().Before(deadline); i++ { // bounded; stop ends it sooner
				select {
				case <-stop:
					return
				default:
				}
				req.SetRequestURI("http://" + client.Addr + "/v2/models/m/infer")
				req.Header.SetMethod("POST")
				req.SetBodyString(inferBody)
				if err := client.DoTimeout(req, resp, 10*time.Second); err != nil || resp.StatusCode() != 200 {
					failed.Add(1)
				}
				sent.Add(1)
			}
		})
	}
	// waitSent waits until at least n more requests were answered and at
	// least d passed (bounded by the load's own deadline).
	waitSent := func(n int64, d time.Duration) {
		target, until := sent.Load()+n, time.Now().Add(d)
		for (sent.Load() < target || time.Now().Before(until)) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	for _, w := range []float64{10, 25, 50, 90, 100, 50, 0} {
		if err := g.SetModels(tables[w]); err != nil {
			t.Fatal(err)
		}
		waitSent(2*workers, 0) // requests resolved on the old table finish
		a0, b0 := a.calls.Load(), b.calls.Load()
		waitSent(2000, 300*time.Millisecond)
		da, db := a.calls.Load()-a0, b.calls.Load()-b0
		share := 100 * float64(db) / float64(da+db)
		// 5 standard deviations of the share, plus a point for requests
		// that straddle the phase's edges.
		tol := 500*math.Sqrt(w/100*(1-w/100)/float64(da+db)) + 1
		if math.Abs(share-w) > tol {
			t.Errorf("at weight %v%% the canary took %.1f%% of %d requests", w, share, da+db)
		}
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed across weight changes", failed.Load(), sent.Load())
	}
	if a.calls.Load()+b.calls.Load() != sent.Load() {
		t.Fatalf("runtimes answered %d requests, clients sent %d", a.calls.Load()+b.calls.Load(), sent.Load())
	}
	t.Logf("%d requests across 7 weight changes", sent.Load())
}

func TestMirrorComparesOutputs(t *testing.T) {
	a, b := newScriptedRuntime(t, scoresA), newScriptedRuntime(t, scoresB)
	reg := prometheus.NewRegistry()
	g, err := New(Options{Registerer: reg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.SetModels(twoRevisions(t, a, b, 100, 0, &router.Mirror{Revision: "latest", Percent: 100})); err != nil {
		t.Fatal(err)
	}
	const n = 50
	for range n {
		ctx := serveWith(g, "/v2/models/m/infer", nil)
		if ctx.Response.StatusCode() != 200 || !bytes.Contains(ctx.Response.Body(), []byte("0.9")) {
			t.Fatalf("the client got %d %s, not the primary's answer", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
	mm := g.metrics.mirror
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		done := counterValue(t, mm.outcome("m", "m-00002", "compared")) + counterValue(t, mm.outcome("m", "m-00002", "dropped"))
		if done == n {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	compared := counterValue(t, mm.outcome("m", "m-00002", "compared"))
	if compared == 0 || compared != float64(b.calls.Load()) {
		t.Fatalf("compared %v copies, the mirror runtime answered %d", compared, b.calls.Load())
	}
	if got := counterValue(t, mm.argmax.WithLabelValues("m", "m-00002", "false")); got != compared {
		t.Errorf("argmax disagreements %v, want %v (every row disagrees)", got, compared)
	}
	if got := counterValue(t, mm.argmax.WithLabelValues("m", "m-00002", "true")); got != 0 {
		t.Errorf("argmax agreements %v, want 0", got)
	}
}

func TestRevisionStatsJudgeOutcomes(t *testing.T) {
	a, b := newScriptedRuntime(t, scoresA), newScriptedRuntime(t, scoresB)
	g := newTestGateway(t)
	if err := g.SetModels(twoRevisions(t, a, b, 50, 50, nil)); err != nil {
		t.Fatal(err)
	}
	b.status.Store(500)
	for range 10 {
		serveWith(g, "/v2/models/m/versions/2/infer", nil)
	}
	a.status.Store(400)
	for range 10 {
		serveWith(g, "/v2/models/m/versions/1/infer", nil)
	}
	if c := g.RevisionCounts("m-00002"); c.Requests != 10 || c.ServerErrors != 10 || c.ErrorRate() != 1 {
		t.Errorf("revision answering 500: %+v", c)
	}
	if c := g.RevisionCounts("m-00001"); c.Requests != 10 || c.ClientErrors != 10 || c.ErrorRate() != 0 {
		t.Errorf("revision answering 400: %+v", c)
	}
	// Counts survive a new table for the same revisions.
	if err := g.SetModels(twoRevisions(t, a, b, 90, 10, nil)); err != nil {
		t.Fatal(err)
	}
	if c := g.RevisionCounts("m-00002"); c.ServerErrors != 10 {
		t.Errorf("stats lost across a table swap: %+v", c)
	}
}

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestCookieValue(t *testing.T) {
	for _, tc := range []struct{ header, want string }{
		{"infergate-session=abc", "abc"},
		{"a=1; infergate-session=u-42; b=2", "u-42"},
		{"a=1;infergate-session=x", "x"},
		{"xinfergate-session=no; infergate-session=yes", "yes"},
		{"infergate-session-2=no", ""},
		{"a=1", ""},
		{"", ""},
	} {
		if got := string(cookieValue([]byte(tc.header), CookieSession)); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.header, got, tc.want)
		}
	}
}

// TestCookiesPassUnchanged: over a real connection, the session cookie
// pins a revision and the Cookie header reaches the runtime as the client
// wrote it.
func TestCookiesPassUnchanged(t *testing.T) {
	var got atomic.Value
	rt := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		got.Store(string(ctx.Request.Header.Peek("Cookie")))
		ctx.SetBodyString(scoresA)
	}}
	rtLn := fasthttputil.NewInmemoryListener()
	go rt.Serve(rtLn) //nolint:errcheck // ends when the listener closes
	defer rtLn.Close()
	c, err := runtimes.NewRESTClient(runtimes.RESTOptions{Addr: "127.0.0.1:1", Dial: func(string) (net.Conn, error) { return rtLn.Dial() }})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := runtimes.NewPool(runtimes.PoolOptions{Model: "m", Logger: slog.New(slog.DiscardHandler)}, []runtimes.Client{c})
	if err != nil {
		t.Fatal(err)
	}
	pool.Replicas()[0].SetReady(true)
	g := newTestGateway(t, Route{Model: "m", Pool: pool})
	gwLn := fasthttputil.NewInmemoryListener()
	go g.restServer().Serve(gwLn) //nolint:errcheck // ends when the listener closes
	defer gwLn.Close()
	conn, err := gwLn.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const cookie = `c="q v"; =x; infergate-session=u1`
	fmt.Fprintf(conn, "POST /v2/models/m/infer HTTP/1.1\r\nHost: gw\r\nCookie: %s\r\nContent-Length: %d\r\n\r\n%s", cookie, len(inferBody), inferBody)
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(conn)); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != 200 || got.Load() != cookie {
		t.Fatalf("status %d; the runtime got Cookie %q, want %q", resp.StatusCode(), got.Load(), cookie)
	}
	if k := rawHeader([]byte("Host: gw\r\ncookie: a=1; infergate-session=u1\r\n"), "Cookie"); string(cookieValue(k, CookieSession)) != "u1" {
		t.Fatalf("session from raw headers: %q", k)
	}
}

// TestRetiredRevisionReroutesHeldRequests: a request held in the activator
// for a revision that is then retired is routed again on the new table
// and answered there, not failed.
func TestRetiredRevisionReroutesHeldRequests(t *testing.T) {
	a, b := newScriptedRuntime(t, scoresA), newScriptedRuntime(t, scoresB)
	act, err := activator.New(activator.Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	g := newTestGateway(t)
	old := []router.Model[Route]{{
		Name:      "m",
		Revisions: []*router.Revision[Route]{{Name: "m-00001", Number: 1, Backend: Route{Pool: readyPool(t, "m", a.client(t)), Activator: act}}},
		Traffic:   []router.Weight{{Revision: "m-00001", Percent: 100}},
	}}
	if err := g.SetModels(old); err != nil {
		t.Fatal(err)
	}
	// m-00001 has no ready replica in the activator's eyes: requests wait.
	done := make(chan *fasthttp.RequestCtx, 1)
	go func() { done <- serveWith(g, "/v2/models/m/infer", nil) }()
	for act.Concurrency("m-00001") == 0 {
		runtime.Gosched()
	}
	next := []router.Model[Route]{{
		Name:      "m",
		Revisions: []*router.Revision[Route]{{Name: "m-00002", Number: 2, Backend: Route{Pool: readyPool(t, "m", b.client(t))}}},
		Traffic:   []router.Weight{{Revision: "m-00002", Percent: 100}},
	}}
	if err := g.SetModels(next); err != nil {
		t.Fatal(err)
	}
	act.Fail("m-00001", ErrRevisionRetired)
	ctx := <-done
	if ctx.Response.StatusCode() != 200 || string(ctx.Response.Header.Peek(HeaderRevision)) != "m-00002" || b.calls.Load() != 1 {
		t.Fatalf("held request: %d from %q (%s); the new revision served %d", ctx.Response.StatusCode(), ctx.Response.Header.Peek(HeaderRevision), ctx.Response.Body(), b.calls.Load())
	}
	if a.calls.Load() != 0 {
		t.Fatal("the retired revision served the request")
	}
}

// TestRoutingHeadersStayHere: the pin and session headers chose this
// gateway's revision and do not reach the runtime.
func TestRoutingHeadersStayHere(t *testing.T) {
	var seen atomic.Value
	rt := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		seen.Store(string(ctx.Request.Header.Peek(HeaderRevision)) + "|" + string(ctx.Request.Header.Peek(HeaderSessionKey)) + "|" + string(ctx.Request.Header.Peek("X-Other")))
		ctx.SetBodyString(scoresA)
	}}
	ln := fasthttputil.NewInmemoryListener()
	go rt.Serve(ln) //nolint:errcheck // ends when the listener closes
	defer ln.Close()
	c, err := runtimes.NewRESTClient(runtimes.RESTOptions{Addr: "127.0.0.1:1", Dial: func(string) (net.Conn, error) { return ln.Dial() }})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := runtimes.NewPool(runtimes.PoolOptions{Model: "m", Logger: slog.New(slog.DiscardHandler)}, []runtimes.Client{c})
	if err != nil {
		t.Fatal(err)
	}
	pool.Replicas()[0].SetReady(true)
	g := newTestGateway(t, Route{Model: "m", Pool: pool})
	ctx := serveWith(g, "/v2/models/m/infer", map[string]string{HeaderRevision: "1", HeaderSessionKey: "u1", "X-Other": "kept"})
	if ctx.Response.StatusCode() != 200 || seen.Load() != "||kept" {
		t.Fatalf("status %d; the runtime saw %q", ctx.Response.StatusCode(), seen.Load())
	}
}

// TestHeaderNamesAnyCase: header names are case-insensitive (HTTP/2
// proxies send them lowercase): a lowercase x-model-revision pins.
func TestHeaderNamesAnyCase(t *testing.T) {
	a, b := newScriptedRuntime(t, scoresA), newScriptedRuntime(t, scoresB)
	g := newTestGateway(t)
	if err := g.SetModels(twoRevisions(t, a, b, 100, 0, nil)); err != nil {
		t.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	go g.restServer().Serve(ln) //nolint:errcheck // ends when the listener closes
	defer ln.Close()
	conn, err := ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v2/models/m/infer HTTP/1.1\r\nhost: gw\r\nx-model-revision: latest\r\ncontent-length: %d\r\n\r\n%s", len(inferBody), inferBody)
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(conn)); err != nil {
		t.Fatal(err)
	}
	if got := string(resp.Header.Peek(HeaderRevision)); resp.StatusCode() != 200 || got != "m-00002" || b.calls.Load() != 1 {
		t.Fatalf("status %d, answered by %q; a lowercase header name was not read", resp.StatusCode(), got)
	}
}
