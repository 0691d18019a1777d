package gateway

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/infergate/infergate/autoscaler/activator"
	"github.com/infergate/infergate/batcher"
	"github.com/infergate/infergate/gateway/payloadlog"
	"github.com/infergate/infergate/gateway/quota"
	"github.com/infergate/infergate/gateway/tracing"
	"github.com/infergate/infergate/gateway/tracing/otlptest"
	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
	"github.com/infergate/infergate/runtimes"
)

// These tests check what a request tells of itself: its spans (against
// an in-process OTLP collector), the trace context its runtime receives,
// its Server-Timing, and its payload log events (at a sink on loopback).

// seenTrace remembers the trace context headers (or metadata) of the
// inference requests a test runtime received.
type seenTrace struct {
	mu                      sync.Mutex
	traceparent, tracestate []string
}

func (s *seenTrace) add(tp, ts string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.traceparent = append(s.traceparent, tp)
	s.tracestate = append(s.tracestate, ts)
}

// last returns the trace context of the last request, failing the test
// when none arrived.
func (s *seenTrace) last(t *testing.T) (traceparent, tracestate string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.traceparent) == 0 {
		t.Fatal("no inference request reached the runtime")
	}
	return s.traceparent[len(s.traceparent)-1], s.tracestate[len(s.tracestate)-1]
}

// runtimeServerTiming is what the REST test runtime says of its own time.
const runtimeServerTiming = "model;dur=1"

// newTracedRESTRuntime is an in-memory REST runtime that records the
// trace context of its inference requests and answers with a
// Server-Timing of its own.
func newTracedRESTRuntime(t testing.TB) (runtimes.Client, *seenTrace) {
	t.Helper()
	seen := new(seenTrace)
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		if bytes.HasSuffix(ctx.Path(), []byte("/infer")) {
			seen.add(string(ctx.Request.Header.Peek("traceparent")), string(ctx.Request.Header.Peek("tracestate")))
			ctx.Response.Header.Set(HeaderServerTiming, runtimeServerTiming)
			ctx.SetBodyString(fakeResponse)
			return
		}
		if bytes.HasSuffix(ctx.Path(), []byte("/ready")) {
			return
		}
		ctx.SetBodyString(`{"name":"m","platform":"fake","inputs":[{"name":"x","datatype":"FP32","shape":[-1,1]}],"outputs":[{"name":"y","datatype":"FP32","shape":[-1,1]}]}`)
	}}
	go srv.Serve(ln) //nolint:errcheck // ends when the listener closes
	t.Cleanup(func() { ln.Close() })
	c, err := runtimes.NewRESTClient(runtimes.RESTOptions{Addr: "127.0.0.1:1", Dial: func(string) (net.Conn, error) { return ln.Dial() }})
	if err != nil {
		t.Fatal(err)
	}
	return c, seen
}

// grpcTraceRuntime is a gRPC runtime on loopback that records the trace
// context metadata of its inference requests.
type grpcTraceRuntime struct {
	pb.UnimplementedGRPCInferenceServiceServer
	seen *seenTrace
}

func (g grpcTraceRuntime) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	g.seen.add(strings.Join(md.Get("traceparent"), ","), strings.Join(md.Get("tracestate"), ","))
	return &pb.ModelInferResponse{ModelName: req.ModelName, Id: req.Id, Outputs: []*pb.ModelInferResponse_InferOutputTensor{{
		Name: "y", Datatype: "FP32", Shape: []int64{1, 1}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1}}}}}, nil
}

func (grpcTraceRuntime) ServerReady(context.Context, *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
	return &pb.ServerReadyResponse{Ready: true}, nil
}

func (grpcTraceRuntime) ModelReady(context.Context, *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	return &pb.ModelReadyResponse{Ready: true}, nil
}

func (grpcTraceRuntime) ModelMetadata(_ context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	return &pb.ModelMetadataResponse{Name: req.Name, Platform: "fake",
		Inputs:  []*pb.ModelMetadataResponse_TensorMetadata{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 1}}},
		Outputs: []*pb.ModelMetadataResponse_TensorMetadata{{Name: "y", Datatype: "FP32", Shape: []int64{-1, 1}}}}, nil
}

func newTracedGRPCRuntime(t testing.TB) (runtimes.Client, *seenTrace) {
	t.Helper()
	seen := new(seenTrace)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterGRPCInferenceServiceServer(srv, grpcTraceRuntime{seen: seen})
	go srv.Serve(ln) //nolint:errcheck // ends at Stop
	t.Cleanup(srv.Stop)
	c, err := runtimes.NewGRPCClient(runtimes.GRPCOptions{Addr: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, seen
}

// restInferAt posts an inference request to the REST front door with
// headers (name, value pairs) and returns the answer and its body.
func restInferAt(t *testing.T, addr, model string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v2/models/"+model+"/infer", strings.NewReader(inferBody))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	return resp, string(b)
}

// grpcInferAt calls ModelInfer on the gRPC front door with metadata
// (key, value pairs) and returns the answer's trailer.
func grpcInferAt(t *testing.T, addr, model string, md ...string) metadata.MD {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	var trailer metadata.MD
	_, err := grpcClient(t, addr).ModelInfer(ctx, &pb.ModelInferRequest{ModelName: model, Inputs: []*pb.ModelInferRequest_InferInputTensor{{
		Name: "x", Datatype: "FP32", Shape: []int64{1, 1}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1}}}}},
		grpc.Trailer(&trailer))
	if err != nil {
		t.Fatal(err)
	}
	return trailer
}

// newTestTracer is a Tracer exporting to a fresh in-process collector;
// the test flushes it (ForceFlush) rather than waiting for a batch.
func newTestTracer(t testing.TB, ratio float64) (*tracing.Tracer, *otlptest.Collector) {
	t.Helper()
	col := otlptest.Start(t)
	tr, err := tracing.New(tracing.Options{Endpoint: col.URL(), SampleRatio: ratio})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	return tr, col
}

// flushedSpans flushes tracer and waits for n spans at col.
func flushedSpans(t *testing.T, tracer *tracing.Tracer, col *otlptest.Collector, n int) []otlptest.Span {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := tracer.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	spans, err := col.WaitSpans(ctx, n)
	if err != nil {
		t.Fatalf("%d spans arrived, want %d: %v", len(spans), n, err)
	}
	return spans
}

// spanOfKind returns the one span of kind k named name (any name when
// ""), failing the test when there is not exactly one.
func spanOfKind(t *testing.T, spans []otlptest.Span, k string, name string) otlptest.Span {
	t.Helper()
	var found []otlptest.Span
	for _, s := range spans {
		if s.GetKind().String() == k && (name == "" || s.GetName() == name) {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans of kind %s named %q, want 1 (of %d spans)", len(found), k, name, len(spans))
	}
	return found[0]
}

// TestTraceContinuesAndPropagates: a request carrying a traceparent
// yields a server span continuing the caller's trace and an upstream
// client span under it, whose id the runtime received as its
// traceparent's parent-id, with the caller's tracestate; its answer's
// Server-Timing has the upstream stage (the REST runtime's own
// Server-Timing kept). Over REST to a REST runtime (the pass-through),
// over gRPC to a gRPC runtime (the pass-through, both gRPC servers), and
// over REST to a gRPC runtime (translated).
func TestTraceContinuesAndPropagates(t *testing.T) {
	const (
		traceID    = "4bf92f3577b34da6a3ce929d0e0e4736"
		callerSpan = "00f067aa0ba902b7"
		traceState = "vendor=opaque"
	)
	traceparent := "00-" + traceID + "-" + callerSpan + "-01"
	for _, tc := range []struct {
		name, front, runtime, server string
	}{
		{"REST to REST", "rest", "rest", ""},
		{"gRPC to gRPC, infergate server", "grpc", "grpc", GRPCServerInfergate},
		{"gRPC to gRPC, grpc-go server", "grpc", "grpc", GRPCServerGRPCGo},
		{"REST to gRPC", "rest", "grpc", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tracer, col := newTestTracer(t, 0) // the caller's sampled flag decides
			var (
				cl   runtimes.Client
				seen *seenTrace
			)
			if tc.runtime == "rest" {
				cl, seen = newTracedRESTRuntime(t)
			} else {
				cl, seen = newTracedGRPCRuntime(t)
			}
			s := serve(t, Options{GRPCServer: tc.server, Tracer: tracer, Routes: []Route{{Model: "m", Pool: readyPool(t, "m", cl)}}}, nil)
			var timing []string
			if tc.front == "rest" {
				resp, _ := restInferAt(t, s.rest, "m", "traceparent", traceparent, "tracestate", traceState)
				timing = resp.Header.Values(HeaderServerTiming)
			} else {
				timing = grpcInferAt(t, s.grpc, "m", "traceparent", traceparent, "tracestate", traceState).Get(MetadataServerTiming)
			}
			if !strings.Contains(strings.Join(timing, ", "), "upstream;dur=") {
				t.Errorf("Server-Timing %q: no upstream stage", timing)
			}
			if tc.front == "rest" && tc.runtime == "rest" && (len(timing) != 2 || timing[0] != runtimeServerTiming) {
				t.Errorf("Server-Timing %q: want the runtime's %q, then the gateway's", timing, runtimeServerTiming)
			}

			spans := flushedSpans(t, tracer, col, 2)
			server := spanOfKind(t, spans, "SPAN_KIND_SERVER", "")
			client := spanOfKind(t, spans, "SPAN_KIND_CLIENT", "upstream call")
			if server.TraceIDHex() != traceID || server.ParentSpanIDHex() != callerSpan {
				t.Errorf("server span in trace %s under %s, want trace %s under the caller's %s", server.TraceIDHex(), server.ParentSpanIDHex(), traceID, callerSpan)
			}
			if client.TraceIDHex() != traceID || client.ParentSpanIDHex() != server.SpanIDHex() {
				t.Errorf("upstream span in trace %s under %s, want trace %s under the server span %s", client.TraceIDHex(), client.ParentSpanIDHex(), traceID, server.SpanIDHex())
			}
			for key, want := range map[string]string{"infergate.model": "m", "infergate.revision": "m"} {
				if got, _ := server.Attr(key); got != want {
					t.Errorf("server span %s = %q, want %q", key, got, want)
				}
			}
			gotTP, gotTS := seen.last(t)
			if want := "00-" + traceID + "-" + client.SpanIDHex() + "-01"; gotTP != want {
				t.Errorf("the runtime received traceparent %q, want %q (the upstream span as parent)", gotTP, want)
			}
			if gotTS != traceState {
				t.Errorf("the runtime received tracestate %q, want the caller's %q", gotTS, traceState)
			}
		})
	}
}

// TestTracingOffPassesHeadersAndTimes: with tracing off, the caller's
// trace headers reach a REST runtime unchanged, nothing is sent over
// gRPC, and every answer still carries Server-Timing.
func TestTracingOffPassesHeadersAndTimes(t *testing.T) {
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	restRT, restSeen := newTracedRESTRuntime(t)
	grpcRT, grpcSeen := newTracedGRPCRuntime(t)
	for _, server := range []string{GRPCServerInfergate, GRPCServerGRPCGo} {
		s := serve(t, Options{GRPCServer: server, Routes: []Route{
			{Model: "m", Pool: readyPool(t, "m", restRT)},
			{Model: "g", Pool: readyPool(t, "g", grpcRT)},
		}}, nil)
		resp, _ := restInferAt(t, s.rest, "m", "traceparent", traceparent, "tracestate", "a=b")
		if tp, ts := restSeen.last(t); tp != traceparent || ts != "a=b" {
			t.Errorf("the REST runtime received %q, %q; want the caller's headers unchanged", tp, ts)
		}
		if v := resp.Header.Values(HeaderServerTiming); len(v) != 2 || !strings.HasPrefix(v[1], "upstream;dur=") {
			t.Errorf("REST Server-Timing %q, want the runtime's and an upstream stage", v)
		}
		trailer := grpcInferAt(t, s.grpc, "g", "traceparent", traceparent)
		if tp, _ := grpcSeen.last(t); tp != "" {
			t.Errorf("%s: the gRPC runtime received traceparent %q with tracing off", server, tp)
		}
		if v := trailer.Get(MetadataServerTiming); len(v) != 1 || !strings.HasPrefix(v[0], "upstream;dur=") {
			t.Errorf("%s: gRPC server-timing trailer %q, want an upstream stage", server, v)
		}
	}
}

// TestServerTimingStages: the fair queue's wait, the activator's hold and
// the batcher's wait are reported when they happened, and only then.
func TestServerTimingStages(t *testing.T) {
	t.Run("queue", func(t *testing.T) {
		rt := newHeldRuntime(t)
		fair, err := quota.NewFairQueue(quota.FairQueueOptions{Model: "m", Capacity: 1})
		if err != nil {
			t.Fatal(err)
		}
		g := newTestGateway(t, Route{Model: "m", Pool: readyPool(t, "m", rt.client(t)), Fair: fair})
		first := make(chan *fasthttp.RequestCtx)
		go func() { first <- serveOnce(g, "POST", "/v2/models/m/infer", inferBody) }()
		<-rt.arrived
		second := make(chan *fasthttp.RequestCtx)
		go func() { second <- serveOnce(g, "POST", "/v2/models/m/infer", inferBody) }()
		eventually(t, "the second request waits in the fair queue", func() bool { return fair.Waiting() == 1 })
		rt.release <- struct{}{}
		wantStages(t, <-first, "upstream")
		<-rt.arrived
		rt.release <- struct{}{}
		wantStages(t, <-second, "queue", "upstream")
	})
	t.Run("activator", func(t *testing.T) {
		rt := newFakeRuntime(t, "a")
		act, err := activator.New(activator.Options{Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		g := newTestGateway(t, Route{Model: "m", Pool: readyPool(t, "m", rt.client(t)), Activator: act})
		held := make(chan *fasthttp.RequestCtx)
		go func() { held <- serveOnce(g, "POST", "/v2/models/m/infer", inferBody) }()
		eventually(t, "the request is held by the activator", func() bool { return act.Concurrency("m") >= 1 })
		act.SetCapacity("m", 1)
		wantStages(t, <-held, "activator", "upstream")
		wantStages(t, serveOnce(g, "POST", "/v2/models/m/infer", inferBody), "upstream")
	})
	t.Run("batch", func(t *testing.T) {
		rt := newFakeRuntime(t, "a")
		pool := readyPool(t, "m", rt.client(t))
		b, err := batcher.New(batcher.Options{Model: "m", Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler),
			Dispatch: func(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error) {
				var resp *oip.InferResponse
				err := pool.Do(ctx, func(cl runtimes.Client) (err error) {
					resp, err = cl.Infer(ctx, req)
					return err
				})
				return resp, err
			}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- b.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		g := newTestGateway(t, Route{Model: "m", Pool: pool, Batcher: b})
		wantStages(t, serveOnce(g, "POST", "/v2/models/m/infer", inferBody), "batch", "upstream")
	})
}

// wantStages checks that a REST answer is a 200 whose Server-Timing names
// exactly stages, in order.
func wantStages(t *testing.T, ctx *fasthttp.RequestCtx, stages ...string) {
	t.Helper()
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	v := string(ctx.Response.Header.Peek(HeaderServerTiming))
	var got []string
	for _, m := range strings.Split(v, ", ") {
		name, _, _ := strings.Cut(m, ";")
		got = append(got, name)
	}
	if strings.Join(got, ",") != strings.Join(stages, ",") {
		t.Errorf("Server-Timing %q: stages %v, want %v", v, got, stages)
	}
}

// sinkEvent is one CloudEvent a sink received.
type sinkEvent struct {
	id, ceType, model, endpoint, contentType string
	body                                     string
}

// newSink is an HTTP payload-log sink on loopback that passes each event
// it receives to events; with hold set, each delivery waits for release
// to be closed first.
func newSink(t *testing.T, hold bool) (url string, events chan sinkEvent, release func()) {
	t.Helper()
	events = make(chan sinkEvent, 64)
	held := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(held) }) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hold {
			<-held
		}
		b, _ := io.ReadAll(r.Body)
		select {
		case events <- sinkEvent{id: r.Header.Get("Ce-Id"), ceType: r.Header.Get("Ce-Type"), model: r.Header.Get("Ce-Inferenceservicename"),
			endpoint: r.Header.Get("Ce-Endpoint"), contentType: r.Header.Get("Content-Type"), body: string(b)}:
		default:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(release) // before Close, which waits for the handlers
	return srv.URL, events, release
}

// runLogger runs a payload logger until the test ends.
func runLogger(t *testing.T, o payloadlog.Options) *payloadlog.Logger {
	t.Helper()
	l, err := payloadlog.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("payload logger: %v", err)
		}
	})
	return l
}

// receive returns the next n events, failing the test at waitLimit.
func receive(t *testing.T, events chan sinkEvent, n int) []sinkEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	var got []sinkEvent
	for len(got) < n {
		select {
		case ev := <-events:
			got = append(got, ev)
		case <-ctx.Done():
			t.Fatalf("%d payload log events arrived, want %d", len(got), n)
		}
	}
	return got
}

// byType returns the request and the response event of evs.
func byType(t *testing.T, evs []sinkEvent) (req, resp sinkEvent) {
	t.Helper()
	for _, ev := range evs {
		switch ev.ceType {
		case payloadlog.TypeRequest:
			req = ev
		case payloadlog.TypeResponse:
			resp = ev
		}
	}
	if req.ceType == "" || resp.ceType == "" {
		t.Fatalf("events %+v: want a request and a response", evs)
	}
	return req, resp
}

// TestPayloadLogs: a logged model's requests and answers reach the sink
// as CloudEvents sharing the request's id (Ce-Id, else X-Request-Id, else
// a new one), over REST (the bodies as they were) and gRPC (OIP JSON); a
// model not configured is not logged.
func TestPayloadLogs(t *testing.T) {
	sink, events, _ := newSink(t, false)
	logger := runLogger(t, payloadlog.Options{})
	restRT, _ := newTracedRESTRuntime(t)
	grpcRT, _ := newTracedGRPCRuntime(t)
	other := newFakeRuntime(t, "other")
	s := serve(t, Options{Payloads: logger, Routes: []Route{
		{Model: "m", Pool: readyPool(t, "m", restRT)},
		{Model: "g", Pool: readyPool(t, "g", grpcRT)},
		{Model: "other", Pool: readyPool(t, "other", other.client(t))},
	}}, nil)
	if err := s.g.SetPayloadLogs(map[string]payloadlog.ModelConfig{"m": {Sink: sink, SampleRate: 1}, "g": {Sink: sink, SampleRate: 1}}); err != nil {
		t.Fatal(err)
	}

	restInferAt(t, s.rest, "other")
	restInferAt(t, s.rest, "m", "Ce-Id", "req-1")
	req, resp := byType(t, receive(t, events, 2))
	if req.id != "req-1" || resp.id != "req-1" || req.model != "m" || req.endpoint != "m" {
		t.Errorf("REST events %+v, %+v: want id req-1 of model m, revision m", req, resp)
	}
	if req.body != inferBody || resp.body != fakeResponse || req.contentType != "application/json" {
		t.Errorf("REST events carry %s %q and %q; want the request and the answer as they were", req.contentType, req.body, resp.body)
	}

	restInferAt(t, s.rest, "m", "X-Request-Id", "req-2")
	if req, resp := byType(t, receive(t, events, 2)); req.id != "req-2" || resp.id != "req-2" {
		t.Errorf("events ids %q, %q; want X-Request-Id req-2", req.id, resp.id)
	}
	restInferAt(t, s.rest, "m")
	if req, resp := byType(t, receive(t, events, 2)); req.id == "" || req.id != resp.id {
		t.Errorf("events ids %q, %q; want one new id", req.id, resp.id)
	}

	grpcInferAt(t, s.grpc, "g", "ce-id", "req-3")
	req, resp = byType(t, receive(t, events, 2))
	if req.id != "req-3" || resp.id != "req-3" || req.model != "g" {
		t.Errorf("gRPC events %+v, %+v: want id req-3 of model g", req, resp)
	}
	if !strings.Contains(req.body, `"name":"x"`) || !strings.Contains(resp.body, `"name":"y"`) || req.contentType != "application/json" {
		t.Errorf("gRPC events carry %s %q and %q; want OIP JSON", req.contentType, req.body, resp.body)
	}
	select {
	case ev := <-events:
		t.Errorf("an unexpected event: %+v (the model not logged?)", ev)
	default:
	}
}

// TestPayloadLogSlowSink: a sink that does not answer neither slows nor
// blocks requests: they all complete while it is held, and the events
// that find the logger's queue full are dropped and counted.
func TestPayloadLogSlowSink(t *testing.T) {
	sink, _, release := newSink(t, true)
	reg := prometheus.NewRegistry()
	m, err := payloadlog.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	logger := runLogger(t, payloadlog.Options{QueueLength: 1, Senders: 1, SendTimeout: waitLimit, Metrics: m})
	rt := newFakeRuntime(t, "a")
	s := serve(t, Options{Payloads: logger, Routes: []Route{{Model: "m", Pool: readyPool(t, "m", rt.client(t))}}}, nil)
	if err := s.g.SetPayloadLogs(map[string]payloadlog.ModelConfig{"m": {Sink: sink, SampleRate: 1}}); err != nil {
		t.Fatal(err)
	}
	const requests = 8
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range requests {
			restInferAt(t, s.rest, "m")
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("requests did not complete while the payload sink was held")
	}
	// At most one event is with the held sender, one queued: the rest of
	// the 2 per request were dropped.
	if got := metricValue(t, reg, "infergate_payloadlog_events_dropped_total", "model", "m", "reason", "queue_full"); got < 2*requests-2 {
		t.Errorf("dropped events counted: %v, want at least %d", got, 2*requests-2)
	}
	release()
}

// TestSetPayloadLogsWithoutLogger: configuring a model's payload log on a
// gateway with no logger is an error, not silence.
func TestSetPayloadLogsWithoutLogger(t *testing.T) {
	g := newTestGateway(t, Route{Model: "m", Pool: readyPool(t, "m", newFakeRuntime(t, "a").client(t))})
	if err := g.SetPayloadLogs(map[string]payloadlog.ModelConfig{"m": {Sink: "http://127.0.0.1:1/"}}); err == nil {
		t.Error("SetPayloadLogs accepted a sink without Options.Payloads")
	}
	if err := g.SetPayloadLogs(map[string]payloadlog.ModelConfig{"m": {}}); err != nil {
		t.Errorf("SetPayloadLogs without a sink: %v", err)
	}
}

// observedGateway is a gateway for the pass-through's allocation tests
// and benchmarks: tracing on (no request sampled) or off, and a payload
// log for another model.
func observedGateway(t testing.TB, tracer *tracing.Tracer, payloads bool) *Gateway {
	t.Helper()
	rt := newFakeRuntime(t, "a")
	opts := Options{Tracer: tracer, Routes: []Route{{Model: "m", Pool: readyPool(t, "m", rt.client(t))}},
		Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)}
	if payloads {
		l, err := payloadlog.New(payloadlog.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.SetModels(map[string]payloadlog.ModelConfig{"other": {Sink: "http://127.0.0.1:1/", SampleRate: 1}}); err != nil {
			t.Fatal(err)
		}
		opts.Payloads = l
	}
	g, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// observedCases are the configurations the pass-through must serve
// without allocating.
func observedCases(t testing.TB) []struct {
	name string
	g    *Gateway
} {
	unsampled, _ := newTestTracer(t, 0)
	return []struct {
		name string
		g    *Gateway
	}{
		{"off", observedGateway(t, nil, false)},
		{"payload log for another model", observedGateway(t, nil, true)},
		{"tracing on, not sampled", observedGateway(t, unsampled, false)},
	}
}

// TestObservedPassThroughAllocs: Server-Timing, tracing that samples
// nothing, and a payload log of another model keep the REST pass-through
// free of allocations.
func TestObservedPassThroughAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool allocates")
	}
	body := []byte(inferBody)
	for _, tc := range observedCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			var ctx fasthttp.RequestCtx
			run := func() {
				ctx.Request.Reset()
				ctx.Response.Reset()
				ctx.Request.Header.SetMethod("POST")
				ctx.Request.SetRequestURI("/v2/models/m/infer")
				ctx.Request.SetBody(body)
				tc.g.HandleREST(&ctx)
			}
			run()
			if ctx.Response.StatusCode() != 200 || len(ctx.Response.Header.Peek(HeaderServerTiming)) == 0 {
				t.Fatalf("status %d, Server-Timing %q", ctx.Response.StatusCode(), ctx.Response.Header.Peek(HeaderServerTiming))
			}
			if n := testing.AllocsPerRun(200, run); n > 0 {
				t.Errorf("REST pass-through allocates %v times per request, want 0", n)
			}
		})
	}
}

// BenchmarkRESTPassThroughObserved is BenchmarkRESTPassThrough's loop
// with observability configured: off, a payload log for another model,
// and tracing on with nothing sampled.
func BenchmarkRESTPassThroughObserved(b *testing.B) {
	body := []byte(inferBody)
	for _, tc := range observedCases(b) {
		b.Run(tc.name, func(b *testing.B) {
			var ctx fasthttp.RequestCtx
			b.ReportAllocs()
			for b.Loop() {
				ctx.Request.Reset()
				ctx.Response.Reset()
				ctx.Request.Header.SetMethod("POST")
				ctx.Request.SetRequestURI("/v2/models/m/infer")
				ctx.Request.SetBody(body)
				tc.g.HandleREST(&ctx)
				if ctx.Response.StatusCode() != 200 {
					b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
			}
		})
	}
}
