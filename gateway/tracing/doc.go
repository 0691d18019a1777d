// Package tracing owns what the gateway tells about a request's time:
// W3C Trace Context (parsing the incoming traceparent, writing the one the
// runtime receives), OpenTelemetry spans exported by OTLP/HTTP, and the
// Server-Timing header value.
//
// The gateway keeps a Request per request, a value on its stack: Start
// reads the incoming traceparent and decides sampling (parent-based, then
// the Tracer's ratio on the trace id), Begin/End/Mark record when the
// stages (activator hold, queue wait, batch wait, upstream call) began and
// ended, AppendUpstreamTraceParent gives the traceparent for the upstream
// request (the upstream call's client span as its parent), and
// AppendServerTiming the Server-Timing value. Finish makes the spans after
// the fact from the recorded times and hands them to the SDK's batch span
// processor, which exports them off the request path. The request path
// records times only.
//
// Tracing is off with a nil *Tracer (New with no endpoint): a Request then
// records times for Server-Timing and nothing else, and allocates nothing
// (BenchmarkRequestOff, TestRequestOffAllocatesNothing). With tracing on,
// only sampled requests make spans; an unsampled one still propagates its
// trace context (sampled flag clear) so that the runtime agrees.
//
// tracing never reads headers itself, never blocks a request on the
// collector (a full span queue drops spans), and never sets the global
// OpenTelemetry provider. Sub-package otlptest is an in-process OTLP/HTTP
// collector for tests.
//
// Metrics, when Options.Registerer is set:
//   - infergate_tracing_spans_exported_total
//   - infergate_tracing_spans_failed_total
package tracing
