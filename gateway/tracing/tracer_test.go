package tracing_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/infergate/infergate/gateway/tracing"
	"github.com/infergate/infergate/gateway/tracing/otlptest"
)

const (
	callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan  = "00f067aa0ba902b7"
)

// newTracer returns a Tracer exporting to c.
func newTracer(t *testing.T, c *otlptest.Collector, ratio float64, reg prometheus.Registerer) *tracing.Tracer {
	t.Helper()
	tr, err := tracing.New(tracing.Options{
		Endpoint:           c.URL(),
		SampleRatio:        ratio,
		ServiceVersion:     "v-test",
		ResourceAttributes: map[string]string{"deployment.environment.name": "test", "service.name": "ignored"},
		Registerer:         reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	if tr == nil {
		t.Fatal("New with an endpoint returned no Tracer")
	}
	return tr
}

func shutdown(t *testing.T, tr *tracing.Tracer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// waitSpans flushes tr's batch (rather than wait out its batch timeout)
// and waits for n spans at c.
func waitSpans(t *testing.T, tr *tracing.Tracer, c *otlptest.Collector, n int) []otlptest.Span {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	spans, err := c.WaitSpans(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(spans) != n {
		t.Fatalf("got %d spans, want %d", len(spans), n)
	}
	return spans
}

func byName(t *testing.T, spans []otlptest.Span) map[string]otlptest.Span {
	t.Helper()
	m := map[string]otlptest.Span{}
	for _, s := range spans {
		if _, dup := m[s.GetName()]; dup {
			t.Fatalf("two spans named %q", s.GetName())
		}
		m[s.GetName()] = s
	}
	return m
}

// pick returns the span attributes named in keys.
func pick(s otlptest.Span, keys ...string) map[string]string {
	all := s.Attrs()
	m := map[string]string{}
	for _, k := range keys {
		if v, ok := all[k]; ok {
			m[k] = v
		}
	}
	return m
}

func TestSpansContinueTheCallersTrace(t *testing.T) {
	c := otlptest.Start(t)
	reg := prometheus.NewRegistry()
	// Ratio 0: the caller's sampled flag decides (parent-based).
	tr := newTracer(t, c, 0, reg)

	start := time.Now()
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	var r tracing.Request
	r.StartBytes(tr, start, []byte("00-"+callerTrace+"-"+callerSpan+"-01"), []byte("vendor=abc"))
	r.Model, r.Revision = "iris", "iris-00002"
	r.Protocol, r.UpstreamProtocol = tracing.ProtocolREST, tracing.ProtocolGRPC
	r.Mark(tracing.StageActivator, at(0), at(5))
	r.Mark(tracing.StageQueue, at(5), at(6))
	r.Mark(tracing.StageBatch, at(6), at(8))
	r.Mark(tracing.StageUpstream, at(8), at(12))
	r.BatchSize = 4
	r.Status, r.UpstreamStatus, r.UpstreamAddress = 200, 0, "127.0.0.1:9001"
	if !r.Sampled() || !r.Continued() || !r.Tracing() {
		t.Fatalf("sampled %v continued %v tracing %v, want all true", r.Sampled(), r.Continued(), r.Tracing())
	}
	var buf [tracing.TraceParentLen]byte
	up, ok := r.AppendUpstreamTraceParent(buf[:0])
	if !ok {
		t.Fatal("no upstream traceparent with tracing on")
	}
	if got := r.UpstreamTraceParent(); got != string(up) {
		t.Errorf("UpstreamTraceParent %q, AppendUpstreamTraceParent %q", got, up)
	}
	upstream, err := tracing.ParseTraceParent(up)
	if err != nil {
		t.Fatalf("upstream traceparent %q: %v", up, err)
	}
	if upstream.TraceID.String() != callerTrace || !upstream.Sampled() || upstream.SpanID.String() == callerSpan {
		t.Errorf("upstream traceparent %q: want the caller's trace, sampled, a span of ours", up)
	}
	r.Finish()
	spans := byName(t, waitSpans(t, tr, c, 5))
	shutdown(t, tr)

	srv := spans["POST /v2/models/{model_name}/infer"]
	if srv.Span == nil {
		t.Fatalf("no server span in %v", spans)
	}
	for name, s := range spans {
		if s.TraceIDHex() != callerTrace {
			t.Errorf("%s: trace %s, want the caller's %s", name, s.TraceIDHex(), callerTrace)
		}
		if name == srv.GetName() {
			continue
		}
		if s.ParentSpanIDHex() != srv.SpanIDHex() {
			t.Errorf("%s: parent %s, want the server span %s", name, s.ParentSpanIDHex(), srv.SpanIDHex())
		}
	}
	if srv.ParentSpanIDHex() != callerSpan {
		t.Errorf("server span's parent %s, want the caller's span %s", srv.ParentSpanIDHex(), callerSpan)
	}
	if srv.GetTraceState() != "vendor=abc" {
		t.Errorf("server span's trace state %q, want the caller's", srv.GetTraceState())
	}
	if srv.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("server span kind %v", srv.GetKind())
	}
	if diff := cmp.Diff(map[string]string{
		"http.request.method":       "POST",
		"http.route":                "/v2/models/{model_name}/infer",
		"http.response.status_code": "200",
		"infergate.model":           "iris",
		"infergate.revision":        "iris-00002",
		"infergate.batch.size":      "4",
	}, srv.Attrs()); diff != "" {
		t.Errorf("server span attributes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{
		"service.name":                "infergate",
		"service.version":             "v-test",
		"deployment.environment.name": "test",
	}, map[string]string{
		"service.name":                srv.Resource["service.name"],
		"service.version":             srv.Resource["service.version"],
		"deployment.environment.name": srv.Resource["deployment.environment.name"],
	}); diff != "" {
		t.Errorf("resource (-want +got):\n%s", diff)
	}

	cl := spans["upstream call"]
	if cl.Span == nil {
		t.Fatal("no upstream call span")
	}
	if cl.GetKind() != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("upstream call kind %v, want client", cl.GetKind())
	}
	if cl.SpanIDHex() != upstream.SpanID.String() {
		t.Errorf("upstream call span %s, but the runtime was told its parent is %s", cl.SpanIDHex(), upstream.SpanID)
	}
	if diff := cmp.Diff(map[string]string{
		"rpc.system.name":          "grpc",
		"rpc.method":               "inference.GRPCInferenceService/ModelInfer",
		"rpc.response.status_code": "OK",
		"server.address":           "127.0.0.1",
		"server.port":              "9001",
		"infergate.model":          "iris",
		"infergate.revision":       "iris-00002",
		"infergate.batch.size":     "4",
	}, cl.Attrs()); diff != "" {
		t.Errorf("upstream call attributes (-want +got):\n%s", diff)
	}

	wantTimes := map[string][2]int{
		"activator hold": {0, 5}, "queue wait": {5, 6}, "batch wait": {6, 8}, "upstream call": {8, 12},
	}
	for name, ms := range wantTimes {
		s := spans[name]
		if s.Span == nil {
			t.Errorf("no %q span", name)
			continue
		}
		if got, want := s.GetStartTimeUnixNano(), uint64(at(ms[0]).UnixNano()); got != want {
			t.Errorf("%s starts at %d, want %d", name, got, want)
		}
		if got, want := s.GetEndTimeUnixNano(), uint64(at(ms[1]).UnixNano()); got != want {
			t.Errorf("%s ends at %d, want %d", name, got, want)
		}
	}
	if got, want := srv.GetStartTimeUnixNano(), uint64(start.UnixNano()); got != want {
		t.Errorf("server span starts at %d, want %d", got, want)
	}
	if v, _ := spans["batch wait"].Attr("infergate.batch.size"); v != "4" {
		t.Errorf("batch wait: batch size %q, want 4", v)
	}
	if got := counterValue(t, reg, "infergate_tracing_spans_exported_total"); got != 5 {
		t.Errorf("spans exported %v, want 5", got)
	}
}

// counterValue returns the value of the unlabelled counter name in reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestNewTraceIsARootSpan(t *testing.T) {
	c := otlptest.Start(t)
	tr := newTracer(t, c, 1, nil)
	var r tracing.Request
	// An invalid traceparent restarts the trace; its tracestate goes.
	r.StartString(tr, time.Now(), "00-"+strings.ToUpper(callerTrace)+"-"+callerSpan+"-01", "vendor=abc")
	if r.Continued() || !r.Sampled() {
		t.Fatalf("continued %v sampled %v, want a new sampled trace", r.Continued(), r.Sampled())
	}
	if r.TraceID().String() == strings.ToLower(callerTrace) {
		t.Fatal("an invalid traceparent's trace was continued")
	}
	r.Protocol, r.Status = tracing.ProtocolGRPC, 14 // UNAVAILABLE
	r.Begin(tracing.StageActivator)                 // never ended: ends with the request
	up := r.UpstreamTraceParent()
	if !strings.HasSuffix(up, "-03") || !strings.HasPrefix(up, "00-"+r.TraceID().String()+"-") {
		t.Errorf("upstream traceparent %q: want our trace, sampled and random flags", up)
	}
	r.Finish()
	spans := byName(t, waitSpans(t, tr, c, 2))
	shutdown(t, tr)

	srv := spans["inference.GRPCInferenceService/ModelInfer"]
	if srv.Span == nil {
		t.Fatalf("no gRPC server span in %v", spans)
	}
	if srv.ParentSpanIDHex() != "" || srv.TraceIDHex() != r.TraceID().String() || srv.GetTraceState() != "" {
		t.Errorf("server span: parent %q trace %s state %q; want a root of trace %s with no state",
			srv.ParentSpanIDHex(), srv.TraceIDHex(), srv.GetTraceState(), r.TraceID())
	}
	if srv.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("UNAVAILABLE server span status %v, want error", srv.GetStatus())
	}
	if diff := cmp.Diff(map[string]string{
		"rpc.system.name":          "grpc",
		"rpc.method":               "inference.GRPCInferenceService/ModelInfer",
		"rpc.response.status_code": "UNAVAILABLE",
		"error.type":               "UNAVAILABLE",
	}, pick(srv, "rpc.system.name", "rpc.method", "rpc.response.status_code", "error.type")); diff != "" {
		t.Errorf("server span attributes (-want +got):\n%s", diff)
	}
	hold := spans["activator hold"]
	if hold.GetEndTimeUnixNano() != srv.GetEndTimeUnixNano() {
		t.Errorf("an unfinished hold ends at %d, want with the request at %d", hold.GetEndTimeUnixNano(), srv.GetEndTimeUnixNano())
	}
	if _, ok := spans["upstream call"]; ok {
		t.Error("an upstream span for a request that never went upstream")
	}
}

// TestNothingSampledSendsNothing: ratio 0 and no caller, or a caller that
// did not sample, export nothing (proven after Shutdown, which flushes),
// yet the runtime is told the trace with the sampled flag clear.
func TestNothingSampledSendsNothing(t *testing.T) {
	c := otlptest.Start(t)
	tr := newTracer(t, c, 0, nil)
	for i := range 50 {
		var r tracing.Request
		var tp []byte
		if i%2 == 1 {
			tp = []byte("00-" + callerTrace + "-" + callerSpan + "-00")
		}
		r.StartBytes(tr, time.Now(), tp, nil)
		r.Begin(tracing.StageUpstream)
		r.End(tracing.StageUpstream)
		up := r.UpstreamTraceParent()
		if tp, err := tracing.ParseTraceParentString(up); r.Sampled() || err != nil || tp.Sampled() {
			t.Fatalf("request %d: sampled %v, upstream %q (%v)", i, r.Sampled(), up, err)
		}
		if i%2 == 1 && !strings.HasPrefix(up, "00-"+callerTrace+"-") {
			t.Fatalf("unsampled caller's trace not propagated: %q", up)
		}
		r.Finish()
	}
	shutdown(t, tr)
	if n, s := c.Requests(), len(c.Spans()); n != 0 || s != 0 {
		t.Errorf("collector got %d exports with %d spans, want none", n, s)
	}
}

func TestRatioSamplesSome(t *testing.T) {
	c := otlptest.Start(t)
	tr := newTracer(t, c, 0.5, nil)
	sampled := 0
	const n = 400
	for range n {
		var r tracing.Request
		r.Start(tr, time.Now())
		if r.Sampled() {
			sampled++
		}
		r.Finish()
	}
	shutdown(t, tr)
	if got := len(c.Spans()); got != sampled {
		t.Errorf("%d requests sampled, %d spans exported", sampled, got)
	}
	// Binomial(400, 0.5): outside [120, 280] has probability below 1e-18.
	if sampled < 120 || sampled > 280 {
		t.Errorf("ratio 0.5 sampled %d of %d", sampled, n)
	}
}

func TestTracingOff(t *testing.T) {
	tr, err := tracing.New(tracing.Options{})
	if tr != nil || err != nil {
		t.Fatalf("New with no endpoint: %v, %v; want nil, nil", tr, err)
	}
	var r tracing.Request
	r.StartBytes(tr, time.Now(), []byte("00-"+callerTrace+"-"+callerSpan+"-01"), nil)
	if r.Tracing() || r.Sampled() {
		t.Error("a Request with tracing off traces")
	}
	if v, ok := r.AppendUpstreamTraceParent(nil); ok || len(v) != 0 || r.UpstreamTraceParent() != "" {
		t.Error("tracing off rewrites the upstream traceparent")
	}
	r.Finish()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestExportFailuresAreCounted(t *testing.T) {
	c := otlptest.Start(t)
	c.SetStatus(400) // not retried by the exporter
	reg := prometheus.NewRegistry()
	tr := newTracer(t, c, 1, reg)
	var r tracing.Request
	r.Start(tr, time.Now())
	r.Finish()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = tr.Shutdown(ctx) // reports the failed export
	if got := counterValue(t, reg, "infergate_tracing_spans_failed_total"); got != 1 {
		t.Errorf("spans failed %v, want 1", got)
	}
	if c.Requests() != 1 {
		t.Errorf("collector saw %d exports, want 1", c.Requests())
	}
}

func TestOptionsErrors(t *testing.T) {
	for _, o := range []tracing.Options{
		{Endpoint: "http://127.0.0.1:4318", SampleRatio: 1.5},
		{Endpoint: "http://127.0.0.1:4318", SampleRatio: -0.1},
		{Endpoint: "127.0.0.1:4318"},
		{Endpoint: "grpc://127.0.0.1:4317"},
		{Endpoint: "http://"},
		{Endpoint: "http://127.0.0.1:4318", ResourceAttributes: map[string]string{"": "x"}},
	} {
		if tr, err := tracing.New(o); err == nil {
			_ = tr.Shutdown(context.Background())
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

// TestEndpointPath: a URL with its own path is used as it is.
func TestEndpointPath(t *testing.T) {
	c := otlptest.Start(t)
	tr, err := tracing.New(tracing.Options{Endpoint: c.URL() + "/elsewhere", SampleRatio: 1})
	if err != nil {
		t.Fatal(err)
	}
	var r tracing.Request
	r.Start(tr, time.Now())
	r.Finish()
	_ = tr.Shutdown(context.Background())
	if c.Requests() != 0 {
		t.Error("an endpoint with a path was sent to /v1/traces")
	}
}

func BenchmarkRequestOnSampled(b *testing.B) {
	c, err := otlptest.New()
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	tr, err := tracing.New(tracing.Options{Endpoint: c.URL(), SampleRatio: 1, MaxQueueSize: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		var r tracing.Request
		r.Start(tr, time.Now())
		r.Model, r.Revision, r.Status = "iris", "iris-00001", 200
		r.Begin(tracing.StageQueue)
		r.End(tracing.StageQueue)
		r.Begin(tracing.StageUpstream)
		v, _ := r.AppendUpstreamTraceParent(buf[:0])
		r.End(tracing.StageUpstream)
		_ = r.AppendServerTiming(v[:0])
		r.Finish()
	}
}
