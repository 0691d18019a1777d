package tracing

import (
	"strconv"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Stage is a part of a request's time in the gateway that Server-Timing
// reports and, when the request is sampled, a span of its own.
type Stage uint8

const (
	// StageActivator is the hold in the revision's activator while it has
	// no ready replica with room (span "activator hold", Server-Timing
	// "activator").
	StageActivator Stage = iota
	// StageQueue is the wait in the gateway's fair queue in front of the
	// activator and batcher (span "queue wait", Server-Timing "queue").
	StageQueue
	// StageBatch is the wait in the revision's batcher for the batch to
	// leave (span "batch wait", Server-Timing "batch").
	StageBatch
	// StageUpstream is the call to the runtime, retries included (client
	// span "upstream call", Server-Timing "upstream").
	StageUpstream

	numStages
)

var (
	stageSpanNames   = [numStages]string{"activator hold", "queue wait", "batch wait", "upstream call"}
	stageTimingNames = [numStages]string{"activator", "queue", "batch", "upstream"}
)

// String returns the stage's span name.
func (s Stage) String() string {
	if s < numStages {
		return stageSpanNames[s]
	}
	return "stage(" + strconv.Itoa(int(s)) + ")"
}

// Protocol is the protocol a request arrived in or went upstream in; it
// picks the semantic conventions of the spans (http.* or rpc.*).
type Protocol uint8

const (
	// ProtocolREST is OIP over HTTP/REST: Request.Status and
	// Request.UpstreamStatus are HTTP status codes.
	ProtocolREST Protocol = iota
	// ProtocolGRPC is OIP over gRPC: the statuses are gRPC codes (0 is OK).
	ProtocolGRPC
)

// Request is what the gateway keeps for one request: when it started, when
// each stage began and ended, its trace context, and the attributes its
// spans carry. It is a value meant to live on the handler's stack: Start
// it, fill it as the request goes (Begin, End, Mark and the exported
// fields), write its Server-Timing, and Finish it before the handler
// returns. With no Tracer (tracing off) it records only times, and every
// method costs a nil check beyond that; nothing allocates.
//
// Spans are made after the fact, in Finish, with the times recorded here,
// so the request path records times only. A Request is used by one
// goroutine at a time; it keeps no reference to the bytes it was started
// with.
type Request struct {
	// Model and Revision name what the request was routed to
	// (infergate.model, infergate.revision).
	Model, Revision string
	// Protocol is the front door's protocol; Status is the answer's HTTP
	// status (REST) or gRPC code (gRPC), 0 when unknown on REST.
	Protocol Protocol
	Status   int
	// UpstreamProtocol is the runtime's protocol; UpstreamStatus is its
	// answer's status in that protocol (0 when unknown on REST);
	// UpstreamAddress is the replica's "host:port" when known
	// (server.address, server.port).
	UpstreamProtocol Protocol
	UpstreamStatus   int
	UpstreamAddress  string
	// BatchSize is the number of requests merged into the request's
	// batch, 0 when it was not batched (infergate.batch.size).
	BatchSize int

	t     *Tracer
	start time.Time
	// from and to are each stage's bounds as offsets from start, valid
	// for the stages whose bit is set in began and ended.
	from, to      [numStages]time.Duration
	began, ended  uint8
	sampled       bool
	remote        bool
	flags         trace.TraceFlags
	traceID       trace.TraceID
	parent        trace.SpanID // the caller's span, when remote
	server        trace.SpanID // the gateway's server span
	client        trace.SpanID // the upstream call's client span
	traceState    string
	traceStateSet bool
}

// Start resets r for a request that arrived at now with no trace context
// of its own (or whose context the caller does not read). t may be nil:
// tracing is off and r records times only. Set the exported fields after
// Start: it clears them.
func (r *Request) Start(t *Tracer, now time.Time) {
	*r = Request{t: t, start: now}
	if t != nil {
		r.newTrace()
	}
}

// StartBytes is Start for a request that carried traceparent and
// tracestate header values (nil when absent), as fasthttp's Peek returns
// them. A valid traceparent is continued (its trace, its sampled flag:
// parent-based sampling); an invalid or absent one starts a new trace,
// sampled at the Tracer's ratio, and its tracestate is ignored. The bytes
// are not retained; tracestate is copied, only when the trace is sampled.
func (r *Request) StartBytes(t *Tracer, now time.Time, traceparent, tracestate []byte) {
	*r = Request{t: t, start: now}
	if t == nil {
		return
	}
	if len(traceparent) == 0 {
		r.newTrace()
		return
	}
	tp, err := ParseTraceParent(traceparent)
	if err != nil {
		r.newTrace()
		return
	}
	r.continueTrace(tp)
	if r.sampled && len(tracestate) > 0 {
		r.traceState, r.traceStateSet = string(tracestate), true
	}
}

// StartString is StartBytes for gRPC metadata values ("" when absent).
func (r *Request) StartString(t *Tracer, now time.Time, traceparent, tracestate string) {
	*r = Request{t: t, start: now}
	if t == nil {
		return
	}
	if traceparent == "" {
		r.newTrace()
		return
	}
	tp, err := ParseTraceParentString(traceparent)
	if err != nil {
		r.newTrace()
		return
	}
	r.continueTrace(tp)
	if r.sampled && tracestate != "" {
		r.traceState, r.traceStateSet = tracestate, true
	}
}

func (r *Request) newTrace() {
	r.traceID = NewTraceID()
	r.sampled = r.t.sampleNew(r.traceID)
	r.flags = FlagRandom
	if r.sampled {
		r.flags |= FlagSampled
	}
	r.newSpans()
}

func (r *Request) continueTrace(tp TraceParent) {
	r.traceID, r.parent, r.flags, r.remote = tp.TraceID, tp.SpanID, tp.Flags, true
	r.sampled = tp.Flags.IsSampled()
	r.newSpans()
}

func (r *Request) newSpans() {
	r.client = NewSpanID()
	if r.sampled {
		r.server = NewSpanID()
	}
}

// Tracing reports whether r has a trace context (its Tracer is not nil):
// then the upstream request carries UpstreamTraceParent.
func (r *Request) Tracing() bool { return r.t != nil }

// Sampled reports whether Finish will export r's spans.
func (r *Request) Sampled() bool { return r.sampled }

// Continued reports whether r continues the trace of a valid incoming
// traceparent. When it does not, an incoming tracestate belongs to no
// trace the runtime will see and is to be removed from the upstream
// request.
func (r *Request) Continued() bool { return r.remote }

// TraceID returns r's trace id, zero when tracing is off.
func (r *Request) TraceID() trace.TraceID { return r.traceID }

// AppendUpstreamTraceParent appends the traceparent value the upstream
// request carries (the trace, with the upstream call's span as parent-id,
// and r's flags) to dst and reports true; with tracing off it returns dst
// unchanged and false, and the upstream request keeps what it had. It
// does not allocate when dst has room (TraceParentLen bytes), as in
//
//	var b [tracing.TraceParentLen]byte
//	if v, ok := tr.AppendUpstreamTraceParent(b[:0]); ok {
//		req.Header.SetBytesV(tracing.HeaderTraceParent, v)
//	}
func (r *Request) AppendUpstreamTraceParent(dst []byte) ([]byte, bool) {
	if r.t == nil {
		return dst, false
	}
	return TraceParent{TraceID: r.traceID, SpanID: r.client, Flags: r.flags}.AppendTo(dst), true
}

// UpstreamTraceParent is AppendUpstreamTraceParent as a string, for gRPC
// metadata; "" with tracing off. It allocates the string.
func (r *Request) UpstreamTraceParent() string {
	if r.t == nil {
		return ""
	}
	return TraceParent{TraceID: r.traceID, SpanID: r.client, Flags: r.flags}.String()
}

// Begin records now as the start of stage s, unless s began already (a
// retried upstream call spans from its first try to its last).
func (r *Request) Begin(s Stage) {
	if s >= numStages || r.began&(1<<s) != 0 {
		return
	}
	r.from[s] = time.Since(r.start)
	r.began |= 1 << s
}

// End records now as the end of stage s, if it began.
func (r *Request) End(s Stage) {
	if s >= numStages || r.began&(1<<s) == 0 {
		return
	}
	r.to[s] = time.Since(r.start)
	r.ended |= 1 << s
}

// Mark records stage s as from..to, times the caller took (a batcher's
// enqueue and dispatch times, say); a stage marked again keeps its first
// start and takes the later end.
func (r *Request) Mark(s Stage, from, to time.Time) {
	if s >= numStages {
		return
	}
	f, t := from.Sub(r.start), to.Sub(r.start)
	if r.began&(1<<s) == 0 {
		r.from[s] = f
		r.began |= 1 << s
	}
	r.to[s] = max(t, r.from[s])
	r.ended |= 1 << s
}

// Duration returns how long stage s took and whether it happened; a stage
// that began and has not ended counts until now.
func (r *Request) Duration(s Stage) (time.Duration, bool) {
	if s >= numStages || r.began&(1<<s) == 0 {
		return 0, false
	}
	to := r.to[s]
	if r.ended&(1<<s) == 0 {
		to = time.Since(r.start)
	}
	return max(to-r.from[s], 0), true
}

// AppendServerTiming appends r's Server-Timing header value to dst: one
// "name;dur=milliseconds" metric per stage that happened, in the order
// activator, queue, batch, upstream, milliseconds with up to three
// decimals, as in
//
//	activator;dur=12.5, queue;dur=0.031, upstream;dur=1.204
//
// It appends nothing when no stage happened (no header to set) and does
// not allocate when dst has room (about 100 bytes). It works with tracing
// off.
func (r *Request) AppendServerTiming(dst []byte) []byte {
	first := true
	for s := range numStages {
		d, ok := r.Duration(s)
		if !ok {
			continue
		}
		if !first {
			dst = append(dst, ',', ' ')
		}
		first = false
		dst = append(dst, stageTimingNames[s]...)
		dst = append(dst, ";dur="...)
		dst = appendMillis(dst, d)
	}
	return dst
}

// appendMillis appends d in milliseconds, rounded to the microsecond,
// with the fraction's trailing zeros (and a bare point) left out.
func appendMillis(dst []byte, d time.Duration) []byte {
	us := (d + time.Microsecond/2) / time.Microsecond
	dst = strconv.AppendInt(dst, int64(us/1000), 10)
	frac := int(us % 1000)
	if frac == 0 {
		return dst
	}
	digits := [3]byte{byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
	n := 3
	for digits[n-1] == '0' {
		n--
	}
	dst = append(dst, '.')
	return append(dst, digits[:n]...)
}

// Finish exports r's spans when r is sampled: the server span from Start
// to now, a child span per stage that happened (an unfinished stage ends
// with the request), the upstream call as a client span whose id is the
// parent-id UpstreamTraceParent sent. It hands them to the Tracer's batch
// processor and returns; the export happens later, off the request path.
// Call it once, before the handler returns. With tracing off, or for a
// request not sampled, it does nothing.
func (r *Request) Finish() {
	if r.t == nil || !r.sampled {
		return
	}
	r.t.emit(r, time.Now())
}
