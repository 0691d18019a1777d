package tracing

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Options configure a Tracer. The zero value is tracing off.
type Options struct {
	// Endpoint is the OTLP/HTTP collector's URL, http:// or https://. A
	// URL with no path (or "/") gets the standard "/v1/traces"; any other
	// path is used as it is. Empty means tracing is off: New returns a nil
	// Tracer.
	Endpoint string
	// SampleRatio is the fraction (0 to 1) of new traces sampled, decided
	// from the trace id as OpenTelemetry's TraceIDRatioBased does. It is
	// parent-based: a request continuing a trace follows its caller's
	// sampled flag whatever the ratio. 0 samples no new trace.
	SampleRatio float64
	// ServiceName is the resource's service.name; "" means "infergate".
	ServiceName string
	// ServiceVersion is the resource's service.version, left out when "".
	ServiceVersion string
	// ResourceAttributes are more resource attributes (deployment
	// environment, host, ...); they cannot override service.name.
	ResourceAttributes map[string]string
	// Headers are sent with every export (a collector's API key, say).
	Headers map[string]string
	// ExportTimeout bounds one export call; 0 means 10 s.
	ExportTimeout time.Duration
	// BatchTimeout is the longest a span waits in the batch processor
	// before it is exported; 0 means 5 s.
	BatchTimeout time.Duration
	// MaxQueueSize bounds the spans waiting for export: past it new spans
	// are dropped (the request never waits). 0 means 2048.
	MaxQueueSize int
	// Registerer, when not nil, gets infergate_tracing_spans_exported_total
	// and infergate_tracing_spans_failed_total.
	Registerer prometheus.Registerer
}

// Tracer turns Requests into OpenTelemetry spans and exports them by
// OTLP/HTTP through a batch span processor. A nil *Tracer is tracing off:
// Requests started with it record times only, and its methods do nothing.
// A Tracer is safe for concurrent use.
type Tracer struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	// bound is the ratio as TraceIDRatioBased computes it: a new trace is
	// sampled when the trace id's low 63 bits are below it.
	bound   uint64
	sampleN bool // bound is meaningful (ratio in (0, 1)); else all or none
	all     bool
}

// New returns a Tracer for o, or nil and no error when o.Endpoint is
// empty. The SDK's batch processor runs a goroutine from here until
// Shutdown; nothing is exported until a sampled Request finishes.
func New(o Options) (*Tracer, error) {
	if o.Endpoint == "" {
		return nil, nil
	}
	if math.IsNaN(o.SampleRatio) || o.SampleRatio < 0 || o.SampleRatio > 1 {
		return nil, fmt.Errorf("tracing: sample ratio %v: want a number from 0 to 1", o.SampleRatio)
	}
	if o.MaxQueueSize < 0 || o.ExportTimeout < 0 || o.BatchTimeout < 0 {
		return nil, fmt.Errorf("tracing: negative export timeout, batch timeout or queue size")
	}
	endpoint, err := exportURL(o.Endpoint)
	if err != nil {
		return nil, err
	}
	if o.ServiceName == "" {
		o.ServiceName = "infergate"
	}
	if o.ExportTimeout == 0 {
		o.ExportTimeout = 10 * time.Second
	}
	if o.BatchTimeout == 0 {
		o.BatchTimeout = 5 * time.Second
	}
	if o.MaxQueueSize == 0 {
		o.MaxQueueSize = 2048
	}
	attrs := make([]attribute.KeyValue, 0, 2+len(o.ResourceAttributes))
	for k, v := range o.ResourceAttributes {
		if k == "" {
			return nil, fmt.Errorf("tracing: resource attribute with an empty name (value %q)", v)
		}
		if k != string(semconv.ServiceNameKey) {
			attrs = append(attrs, attribute.String(k, v))
		}
	}
	attrs = append(attrs, semconv.ServiceName(o.ServiceName))
	if o.ServiceVersion != "" {
		attrs = append(attrs, semconv.ServiceVersion(o.ServiceVersion))
	}
	res, err := resource.New(context.Background(),
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attrs...))
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	opts := []otlptracehttp.Option{
		otlptracehttp.WithEndpointURL(endpoint),
		otlptracehttp.WithTimeout(o.ExportTimeout),
	}
	if len(o.Headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(o.Headers))
	}
	exp, err := otlptracehttp.New(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter for %s: %w", endpoint, err)
	}
	var export sdktrace.SpanExporter = exp
	if o.Registerer != nil {
		if export, err = countingExporter(exp, o.Registerer); err != nil {
			return nil, err
		}
	}
	t := &Tracer{}
	switch {
	case o.SampleRatio >= 1:
		t.all = true
	case o.SampleRatio > 0:
		t.sampleN = true
		t.bound = uint64(o.SampleRatio * (1 << 63))
	}
	t.provider = sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		// The Request decided; the spans Finish makes are all sampled.
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithIDGenerator(presetIDs{}),
		sdktrace.WithBatcher(export,
			sdktrace.WithBatchTimeout(o.BatchTimeout),
			sdktrace.WithMaxQueueSize(o.MaxQueueSize),
			sdktrace.WithExportTimeout(o.ExportTimeout)),
	)
	t.tracer = t.provider.Tracer("github.com/infergate/infergate/gateway",
		trace.WithSchemaURL(semconv.SchemaURL))
	return t, nil
}

// exportURL checks the endpoint and adds the OTLP traces path to a bare
// base URL.
func exportURL(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", fmt.Errorf("tracing: OTLP endpoint %q: %w", endpoint, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("tracing: OTLP endpoint %q: want an http:// or https:// URL with a host", endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String(), nil
}

// Shutdown exports the spans still waiting and stops the exporter, within
// ctx. A nil Tracer has nothing to do. Requests finished afterwards are
// dropped.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}

// ForceFlush exports the spans waiting now, within ctx.
func (t *Tracer) ForceFlush(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.ForceFlush(ctx)
}

// sampleNew decides whether a new trace is sampled, as TraceIDRatioBased
// does from the trace id, so that every holder of the id agrees.
func (t *Tracer) sampleNew(id trace.TraceID) bool {
	switch {
	case t.all:
		return true
	case !t.sampleN:
		return false
	}
	return binary.BigEndian.Uint64(id[8:16])>>1 < t.bound
}

// presetIDs is the TracerProvider's id generator: it hands out the ids a
// Request chose at its start (carried in the context Finish starts each
// span with), so that the exported spans are the ones whose ids went
// upstream; other spans get random ids.
type presetIDs struct{}

type presetKey struct{}

type preset struct {
	traceID trace.TraceID
	spanID  trace.SpanID
}

func withPreset(ctx context.Context, p *preset) context.Context {
	return context.WithValue(ctx, presetKey{}, p)
}

func (presetIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if p, _ := ctx.Value(presetKey{}).(*preset); p != nil && p.traceID.IsValid() && p.spanID.IsValid() {
		return p.traceID, p.spanID
	}
	return NewTraceID(), NewSpanID()
}

func (presetIDs) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if p, _ := ctx.Value(presetKey{}).(*preset); p != nil && p.spanID.IsValid() {
		return p.spanID
	}
	return NewSpanID()
}

// Span names of the front doors' server spans and the methods they carry.
const (
	restMethod = "POST"
	restRoute  = "/v2/models/{model_name}/infer"
	grpcMethod = "inference.GRPCInferenceService/ModelInfer"
)

// Attribute keys of infergate's own attributes.
const (
	AttrModel     = attribute.Key("infergate.model")
	AttrRevision  = attribute.Key("infergate.revision")
	AttrBatchSize = attribute.Key("infergate.batch.size")
)

// emit makes r's spans, ending at end.
func (t *Tracer) emit(r *Request, end time.Time) {
	ctx := context.Background()
	if r.remote {
		cfg := trace.SpanContextConfig{TraceID: r.traceID, SpanID: r.parent, TraceFlags: r.flags, Remote: true}
		if r.traceStateSet {
			// A tracestate that does not parse is dropped, the
			// traceparent kept, as the specification says.
			cfg.TraceState, _ = trace.ParseTraceState(r.traceState)
		}
		ctx = trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(cfg))
	}
	common := []attribute.KeyValue{AttrModel.String(r.Model), AttrRevision.String(r.Revision)}
	if r.BatchSize > 0 {
		common = append(common, AttrBatchSize.Int(r.BatchSize))
	}

	name, attrs, status := serverSpan(r.Protocol, r.Status)
	attrs = append(attrs, common...)
	srvCtx, srv := t.tracer.Start(withPreset(ctx, &preset{traceID: r.traceID, spanID: r.server}), name,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(r.start),
		trace.WithAttributes(attrs...))

	// Stage spans get random ids: shadow the server span's preset.
	stageCtx := withPreset(srvCtx, nil)
	for s := range StageUpstream {
		if r.began&(1<<s) == 0 {
			continue
		}
		from, to := r.stageTimes(s, end)
		var opts []trace.SpanStartOption
		if s == StageBatch && r.BatchSize > 0 {
			opts = append(opts, trace.WithAttributes(AttrBatchSize.Int(r.BatchSize)))
		}
		_, sp := t.tracer.Start(stageCtx, stageSpanNames[s],
			append(opts, trace.WithSpanKind(trace.SpanKindInternal), trace.WithTimestamp(from))...)
		sp.End(trace.WithTimestamp(to))
	}
	if r.began&(1<<StageUpstream) != 0 {
		from, to := r.stageTimes(StageUpstream, end)
		cattrs, cstatus := clientAttributes(r.UpstreamProtocol, r.UpstreamStatus, r.UpstreamAddress)
		cattrs = append(cattrs, common...)
		_, cl := t.tracer.Start(withPreset(srvCtx, &preset{spanID: r.client}), stageSpanNames[StageUpstream],
			trace.WithSpanKind(trace.SpanKindClient),
			trace.WithTimestamp(from),
			trace.WithAttributes(cattrs...))
		if cstatus != "" {
			cl.SetStatus(codes.Error, cstatus)
		}
		cl.End(trace.WithTimestamp(to))
	}
	if status != "" {
		srv.SetStatus(codes.Error, status)
	}
	srv.End(trace.WithTimestamp(end))
}

// stageTimes returns stage s's wall-clock bounds; one not ended ends at
// end.
func (r *Request) stageTimes(s Stage, end time.Time) (from, to time.Time) {
	from = r.start.Add(r.from[s])
	to = end
	if r.ended&(1<<s) != 0 {
		to = r.start.Add(r.to[s])
	}
	return from, to
}

// serverSpan returns the server span's name, attributes and error
// description ("" for no error) by the semantic conventions of p.
func serverSpan(p Protocol, status int) (string, []attribute.KeyValue, string) {
	attrs := make([]attribute.KeyValue, 0, 8)
	if p == ProtocolGRPC {
		code := grpcCodeName(status)
		attrs = append(attrs, semconv.RPCSystemNameKey.String("grpc"), semconv.RPCMethod(grpcMethod),
			semconv.RPCResponseStatusCodeKey.String(code))
		if grpcServerError(status) {
			attrs = append(attrs, semconv.ErrorTypeKey.String(code))
			return grpcMethod, attrs, code
		}
		return grpcMethod, attrs, ""
	}
	attrs = append(attrs, semconv.HTTPRequestMethodKey.String(restMethod), semconv.HTTPRoute(restRoute))
	if status != 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(status))
	}
	if status >= 500 {
		s := strconv.Itoa(status)
		attrs = append(attrs, semconv.ErrorTypeKey.String(s))
		return restMethod + " " + restRoute, attrs, "HTTP " + s
	}
	return restMethod + " " + restRoute, attrs, ""
}

// clientAttributes returns the upstream call's attributes and error
// description: a client span's error is any 4xx or 5xx, any gRPC code but
// OK.
func clientAttributes(p Protocol, status int, address string) ([]attribute.KeyValue, string) {
	attrs := make([]attribute.KeyValue, 0, 8)
	if host, port, err := net.SplitHostPort(address); err == nil {
		attrs = append(attrs, semconv.ServerAddress(host))
		if n, err := strconv.Atoi(port); err == nil {
			attrs = append(attrs, semconv.ServerPort(n))
		}
	}
	if p == ProtocolGRPC {
		code := grpcCodeName(status)
		attrs = append(attrs, semconv.RPCSystemNameKey.String("grpc"), semconv.RPCMethod(grpcMethod),
			semconv.RPCResponseStatusCodeKey.String(code))
		if status != 0 {
			attrs = append(attrs, semconv.ErrorTypeKey.String(code))
			return attrs, code
		}
		return attrs, ""
	}
	attrs = append(attrs, semconv.HTTPRequestMethodKey.String(restMethod))
	if status != 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(status))
	}
	if status >= 400 {
		s := strconv.Itoa(status)
		attrs = append(attrs, semconv.ErrorTypeKey.String(s))
		return attrs, "HTTP " + s
	}
	return attrs, ""
}

// grpcCodeNames are the gRPC status codes' canonical names, which
// rpc.response.status_code carries.
var grpcCodeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

func grpcCodeName(c int) string {
	if c >= 0 && c < len(grpcCodeNames) {
		return grpcCodeNames[c]
	}
	return strconv.Itoa(c)
}

// grpcServerError reports whether a server answering code c failed, by
// the semantic conventions' list for gRPC servers.
func grpcServerError(c int) bool {
	switch c {
	case 2, 4, 12, 13, 14, 15: // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS
		return true
	}
	return c < 0 || c >= len(grpcCodeNames)
}

// countingExporter counts the spans exp exported and failed to export.
func countingExporter(exp sdktrace.SpanExporter, reg prometheus.Registerer) (sdktrace.SpanExporter, error) {
	c := &counting{
		SpanExporter: exp,
		exported: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "infergate_tracing_spans_exported_total",
			Help: "Spans the OTLP exporter delivered to the collector.",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "infergate_tracing_spans_failed_total",
			Help: "Spans the OTLP exporter failed to deliver (collector down, refused or too slow); they are not retried past the export timeout.",
		}),
	}
	for _, m := range []prometheus.Collector{c.exported, c.failed} {
		if err := reg.Register(m); err != nil {
			return nil, fmt.Errorf("tracing: register metrics: %w", err)
		}
	}
	return c, nil
}

type counting struct {
	sdktrace.SpanExporter
	exported, failed prometheus.Counter
}

func (c *counting) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := c.SpanExporter.ExportSpans(ctx, spans)
	if err != nil {
		c.failed.Add(float64(len(spans)))
		return err
	}
	c.exported.Add(float64(len(spans)))
	return nil
}
