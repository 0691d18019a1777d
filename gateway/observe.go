package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/batcher"
	"github.com/infergate/infergate/gateway/payloadlog"
	"github.com/infergate/infergate/gateway/tracing"
	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
	"github.com/infergate/infergate/oip/rest"
	"github.com/infergate/infergate/runtimes"
)

// Observability of an inference request: what it tells about its time
// (a tracing.Request on the handler's stack: Server-Timing on every
// answer, spans when Options.Tracer samples it) and about its payloads
// (a payloadlog.Handle, when Options.Payloads logs its model).
//
// A request is traced from the moment its revision admitted it (after
// authentication, routing and quotas) to its answer. Its stages: the
// fair queue's wait (Route.Fair) when it had to wait, the activator's
// hold when it had to wait, the batcher's wait for its batch to leave,
// and the upstream call (retries included, from the first try's start
// to the last one's answer). The runtime receives the upstream call's
// traceparent: as a header on the REST pass-through, as gRPC metadata
// (runtimes.GRPCClient sends it) on the gRPC pass-through and on calls
// translated for a gRPC runtime. A merged batch carries none (its
// requests belong to several traces), nor does a call translated for a
// runtime that is not a gRPC one.

// HeaderServerTiming is the REST answer's header, and MetadataServerTiming
// the gRPC answer's trailing metadata key, that tell where the request's
// time went: one "name;dur=milliseconds" metric per stage that happened,
// of activator, queue, batch and upstream (see
// tracing.Request.AppendServerTiming). A REST runtime's own Server-Timing
// is kept, as a field before the gateway's.
const (
	HeaderServerTiming   = "Server-Timing"
	MetadataServerTiming = "server-timing"
)

// The request id a payload log's events carry: the request's CloudEvents
// id (Ce-Id, as a KServe client or broker sends it), else its
// X-Request-Id; gRPC metadata ce-id, else x-request-id. A request with
// neither gets a new UUID (see payloadlog.Logger.Begin).
const (
	HeaderCEID          = "Ce-Id"
	HeaderRequestID     = "X-Request-Id"
	metadataCEID        = "ce-id"
	metadataRequestID   = "x-request-id"
	serverTimingBufSize = 160
)

// SetPayloadLogs replaces the payload logging of the models (keyed by
// model name; a model absent, or with no Sink, is not logged), as
// payloadlog.Logger.SetModels does for Options.Payloads: the
// configurations are validated first and nothing changes on error.
// Requests in flight finish under the configuration they began with.
// Note that a ModelConfig's SampleRate 0 logs nothing: build configs
// with payloadlog.ParseAnnotations (which defaults it to 1) or set it.
// With no Options.Payloads, a configuration with a Sink is an error.
func (g *Gateway) SetPayloadLogs(configs map[string]payloadlog.ModelConfig) error {
	if g.opts.Payloads == nil {
		for model, c := range configs {
			if c.Sink != "" {
				return errors.New("gateway: model \"" + model + "\" has payload logging configured, but the gateway has no payload logger (Options.Payloads)")
			}
		}
		return nil
	}
	return g.opts.Payloads.SetModels(configs)
}

// startREST starts tr for a REST request that arrived at now, continuing
// its traceparent when tracing is on (the headers are read only then).
func (g *Gateway) startREST(tr *tracing.Request, h *fasthttp.RequestHeader, now time.Time) {
	if t := g.opts.Tracer; t != nil {
		tr.StartBytes(t, now, h.Peek(tracing.HeaderTraceParent), h.Peek(tracing.HeaderTraceState))
	} else {
		tr.Start(nil, now)
	}
	tr.Protocol = tracing.ProtocolREST
}

// startGRPC is startREST for a gRPC call's metadata.
func (g *Gateway) startGRPC(tr *tracing.Request, ctx context.Context, now time.Time) {
	if t := g.opts.Tracer; t != nil {
		tr.StartString(t, now, firstValue(ctx, tracing.HeaderTraceParent), firstValue(ctx, tracing.HeaderTraceState))
	} else {
		tr.Start(nil, now)
	}
	tr.Protocol = tracing.ProtocolGRPC
}

// firstValue returns the first value of a gRPC call's metadata key, ""
// when absent.
func firstValue(ctx context.Context, key string) string {
	if v := metadata.ValueFromIncomingContext(ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// setUpstreamTraceParent gives the REST request forwarded to the runtime
// the upstream call's traceparent, when tracing is on (with it off the
// caller's headers pass unchanged), and drops a tracestate of a trace it
// did not continue. It does not allocate.
func setUpstreamTraceParent(h *fasthttp.RequestHeader, tr *tracing.Request) {
	var b [tracing.TraceParentLen]byte
	v, ok := tr.AppendUpstreamTraceParent(b[:0])
	if !ok {
		return
	}
	h.SetBytesV(tracing.HeaderTraceParent, v)
	if !tr.Continued() {
		h.Del(tracing.HeaderTraceState)
	}
}

// traceContext returns ctx with the upstream call's trace context as
// outgoing gRPC metadata (traceparent, and tracestate, the caller's, when
// its trace is continued), for a runtime client that sends it; ctx itself
// when tracing is off.
func traceContext(ctx context.Context, tr *tracing.Request, tracestate string) context.Context {
	if !tr.Tracing() {
		return ctx
	}
	if tr.Continued() && tracestate != "" {
		return metadata.AppendToOutgoingContext(ctx, tracing.HeaderTraceParent, tr.UpstreamTraceParent(), tracing.HeaderTraceState, tracestate)
	}
	return metadata.AppendToOutgoingContext(ctx, tracing.HeaderTraceParent, tr.UpstreamTraceParent())
}

// setServerTiming adds the request's Server-Timing to a REST answer
// (nothing when no stage happened). It does not allocate once the
// response's header has grown to hold it.
func setServerTiming(h *fasthttp.ResponseHeader, tr *tracing.Request) {
	var b [serverTimingBufSize]byte
	if v := tr.AppendServerTiming(b[:0]); len(v) > 0 {
		h.AddBytesV(HeaderServerTiming, v)
	}
}

// serverTimingTrailer is setServerTiming for a gRPC answer's trailing
// metadata: nil when no stage happened.
func serverTimingTrailer(tr *tracing.Request) metadata.MD {
	var b [serverTimingBufSize]byte
	if v := tr.AppendServerTiming(b[:0]); len(v) > 0 {
		return metadata.MD{MetadataServerTiming: []string{string(v)}}
	}
	return nil
}

// markUpstream records one upstream call, t0 to t1, on tr: the stage (a
// retried call spans from its first try to its last answer) and, for a
// sampled request, the runtime's protocol and address.
func markUpstream(tr *tracing.Request, cl runtimes.Client, t0, t1 time.Time) {
	tr.Mark(tracing.StageUpstream, t0, t1)
	if !tr.Sampled() {
		return
	}
	tr.UpstreamProtocol = tracing.ProtocolREST
	if _, ok := cl.(runtimes.RawInferer); ok {
		tr.UpstreamProtocol = tracing.ProtocolGRPC
	}
	if a, ok := cl.(interface{ Addr() string }); ok {
		tr.UpstreamAddress = a.Addr()
	}
}

// markBatch records a batched request's stages on tr from what the
// batcher told (t): the wait for its batch to leave, and its batch's
// upstream call, with the batch's size.
func markBatch(tr *tracing.Request, t *batcher.Timing) {
	switch {
	case t.Enqueued.IsZero():
	case t.Sent.IsZero():
		tr.Mark(tracing.StageBatch, t.Enqueued, time.Now())
	default:
		tr.Mark(tracing.StageBatch, t.Enqueued, t.Sent)
		tr.Mark(tracing.StageUpstream, t.Sent, t.Returned)
		tr.BatchSize = t.Requests
	}
}

// beginPayloadREST decides whether a REST request routed to r is
// payload-logged, with its Ce-Id or X-Request-Id as the events' id. It
// costs nothing without Options.Payloads, and allocates nothing for a
// model not logged.
func (g *Gateway) beginPayloadREST(h *fasthttp.RequestHeader, r *route) payloadlog.Handle {
	if g.opts.Payloads == nil {
		return payloadlog.Handle{}
	}
	id := h.Peek(HeaderCEID)
	if len(id) == 0 {
		id = h.Peek(HeaderRequestID)
	}
	return g.opts.Payloads.Begin(r.name, r.Revision, id)
}

// beginPayloadGRPC is beginPayloadREST for a gRPC call (ce-id, else
// x-request-id metadata).
func (g *Gateway) beginPayloadGRPC(ctx context.Context, r *route) payloadlog.Handle {
	if !g.opts.Payloads.Logs(r.name) {
		return payloadlog.Handle{}
	}
	id := firstValue(ctx, metadataCEID)
	if id == "" {
		id = firstValue(ctx, metadataRequestID)
	}
	return g.opts.Payloads.BeginString(r.name, r.Revision, id)
}

// identity reports whether a Content-Encoding leaves the body as it is:
// a compressed body is not logged (the logger would show bytes no
// consumer reads, and could not redact them).
func identity(encoding []byte) bool {
	return len(encoding) == 0 || string(encoding) == "identity"
}

// logRESTRequest logs a REST request's body as it arrived, unless it is
// compressed.
func logRESTRequest(h payloadlog.Handle, req *fasthttp.Request) {
	if h.Logged() && identity(req.Header.ContentEncoding()) {
		h.Request(oipContentType(&req.Header), req.Body())
	}
}

// jsonType is an OIP REST body's type.
var jsonType = []byte(rest.ContentTypeJSON)

// oipContentType is the type of an OIP inference request's body: JSON,
// whatever the client called it (curl -d says form-urlencoded), unless
// it carries binary tensors after its JSON header (Triton's extension).
func oipContentType(h *fasthttp.RequestHeader) []byte {
	if len(h.Peek(rest.HeaderInferenceHeaderContentLength)) > 0 {
		return h.ContentType()
	}
	return jsonType
}

// logRESTResponse logs a REST answer's body when it is a success (200)
// and not compressed.
func logRESTResponse(h payloadlog.Handle, resp *fasthttp.Response) {
	if h.Logged() && resp.StatusCode() == fasthttp.StatusOK && identity(resp.Header.ContentEncoding()) {
		h.Response(resp.Header.ContentType(), resp.Body())
	}
}

// logGRPCRequest logs a gRPC ModelInferRequest as OIP JSON (the form
// KServe's consumers read, and redaction needs), decoding it only
// because it is logged. A message that does not decode is not logged:
// its call fails anyway.
func logGRPCRequest(h payloadlog.Handle, in *oip.RawFrame) {
	if !h.Logged() {
		return
	}
	var msg pb.ModelInferRequest
	var req oip.InferRequest
	if proto.Unmarshal(in.Bytes, &msg) != nil || oip.RequestFromProto(&msg, &req) != nil {
		return
	}
	if b, _, err := oip.AppendInferRequest(nil, &req, false); err == nil {
		h.Request(jsonType, b)
	}
}

// logGRPCResponse logs a gRPC call's successful answer as OIP JSON, as
// logGRPCRequest does its request.
func logGRPCResponse(h payloadlog.Handle, out *oip.RawFrame) {
	if !h.Logged() || out == nil {
		return
	}
	var msg pb.ModelInferResponse
	var resp oip.InferResponse
	if proto.Unmarshal(out.Bytes, &msg) != nil || oip.ResponseFromProto(&msg, &resp) != nil {
		return
	}
	if b, _, err := oip.AppendInferResponse(nil, &resp, nil); err == nil {
		h.Response(jsonType, b)
	}
}
