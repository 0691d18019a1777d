package gateway

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infergate/infergate/auth"
	"github.com/infergate/infergate/batcher"
	"github.com/infergate/infergate/gateway/tracing"
	"github.com/infergate/infergate/internal/keyhash"
	"github.com/infergate/infergate/oip"
	"github.com/infergate/infergate/oip/rest"
	"github.com/infergate/infergate/router"
	"github.com/infergate/infergate/runtimes"
)

var requestPool = sync.Pool{New: func() any { return new(oip.InferRequest) }}

// HandleREST is the gateway's fasthttp handler for the OIP REST endpoints.
// Anything else is 404 with a JSON error; a path that encodes '/' or has
// dot segments, or a model name or version holding '/' or "..", is 400.
func (g *Gateway) HandleREST(ctx *fasthttp.RequestCtx) {
	if err := checkRawPath(ctx.Request.URI().PathOriginal()); err != nil {
		g.restError(ctx, err)
		return
	}
	p := oip.ParseRESTPath(ctx.Path())
	switch {
	case p.Endpoint == oip.EndpointUnknown:
		g.restError(ctx, oip.Errorf(oip.KindNotFound, "no OIP endpoint at %s %q", ctx.Method(), ctx.Path()))
		return
	case string(ctx.Method()) != p.Endpoint.Method():
		g.restError(ctx, &methodError{
			error: oip.Errorf(oip.KindNotFound, "%s %q: use %s", ctx.Method(), ctx.Path(), p.Endpoint.Method()),
			allow: p.Endpoint.Method(),
		})
		return
	}
	switch p.Endpoint {
	case oip.EndpointServerLive:
		ctx.SetStatusCode(fasthttp.StatusOK)
		return
	case oip.EndpointServerReady:
		if !g.Ready() {
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		}
		return
	case oip.EndpointServerMeta:
		rest.WriteJSON(ctx, g.serverMetadata())
		return
	}
	// Who asks, before anything of the model is told (a caller with no
	// credential learns nothing, not even whether the model exists).
	principal, err := g.restPrincipal(ctx)
	if err != nil {
		g.restError(ctx, err)
		return
	}
	req := router.Request{Model: p.Model, Pin: p.Version}
	if len(req.Pin) == 0 {
		req.Pin = ctx.Request.Header.Peek(HeaderRevision)
	}
	k, keyFromHeader := sessionKey(ctx)
	if len(k) > 0 {
		req.Key, req.Sticky = keyhash.Bytes(k), true
	}
	r, mirror, err := g.resolve(req)
	if err != nil {
		g.restError(ctx, err)
		return
	}
	action := auth.ActionMetadata
	if p.Endpoint == oip.EndpointModelInfer {
		action = auth.ActionInfer
	}
	ticket, err := g.admit(principal, r, action)
	if err != nil {
		g.restError(ctx, err)
		return
	}
	defer ticket.Release()
	switch p.Endpoint {
	case oip.EndpointModelReady:
		if !r.Pool.Ready() {
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		}
	case oip.EndpointModelMeta:
		timeout := r.Timeout
		if v := ctx.Request.Header.Peek(HeaderRequestTimeout); len(v) > 0 {
			if timeout, err = parseTimeout(v); err != nil {
				rest.WriteError(ctx, err)
				return
			}
		}
		c, cancel := context.WithTimeout(g.drain, timeout)
		defer cancel()
		md, err := r.metadata(c)
		ctx.Response.Header.Set(HeaderRevision, r.Revision)
		if err != nil {
			g.restFailed(ctx, err)
			return
		}
		rest.WriteJSON(ctx, md)
	case oip.EndpointModelInfer:
		start := time.Now()
		if len(p.Version) > 0 {
			// The version picked the revision; the runtime serves the
			// model under its own versions.
			ctx.Request.URI().SetPath("/v2/models/" + r.Model + "/infer")
		}
		// Hop-by-hop headers and this gateway's routing headers stay on
		// this hop: a runtime that is itself an infergate gateway would
		// read the pin and the session key again.
		h := &ctx.Request.Header
		h.Del("Connection")
		h.Del("Keep-Alive")
		// The caller's credential is for this gateway, never for the
		// runtime (or a mirror). A gateway that authenticates nothing
		// passes it on: it is the runtime's then.
		if g.opts.Auth != nil {
			h.Del(fasthttp.HeaderAuthorization)
		}
		if len(req.Pin) > 0 {
			h.Del(HeaderRevision)
		}
		if keyFromHeader {
			h.Del(HeaderSessionKey)
		}
		timeoutHeader := h.Peek(HeaderRequestTimeout)
		// The request's time, on the stack (see observe.go).
		var tr tracing.Request
		g.startREST(&tr, h, start)
		tr.Model = r.name
		setUpstreamTraceParent(h, &tr)
		plog := g.beginPayloadREST(h, r)
		logRESTRequest(plog, &ctx.Request)
		r, mirror, err = g.send(req, r, mirror, func(r *route) bool {
			return g.restInfer(ctx, principal, r, req, start, timeoutHeader, &tr)
		})
		if err != nil {
			g.restError(ctx, err)
			g.finishREST(ctx, &tr, nil)
			return
		}
		ctx.Response.Header.Set(HeaderRevision, r.Revision)
		code := ctx.Response.StatusCode()
		r.record(r.restRequests, r.gatewayREST, statusLabel(code), start, httpOutcome(code, len(timeoutHeader) > 0))
		g.finishREST(ctx, &tr, r)
		logRESTResponse(plog, &ctx.Response)
		if mirror != nil {
			g.mirror.rest(ctx, r.name, mirror)
		}
	}
}

// finishREST sets a REST inference answer's Server-Timing and finishes
// its trace; r is the revision that answered, nil for none.
func (g *Gateway) finishREST(ctx *fasthttp.RequestCtx, tr *tracing.Request, r *route) {
	setServerTiming(&ctx.Response.Header, tr)
	if r != nil {
		tr.Revision = r.Revision
	}
	tr.Status = ctx.Response.StatusCode()
	tr.Finish()
}

// sessionKey returns the request's sticky key, and whether it came from
// HeaderSessionKey rather than the CookieSession cookie; nil when it has
// neither. The cookie is read from the raw header bytes: asking fasthttp
// for the Cookie header parses it, and fasthttp then writes the cookies
// out anew, changed, when the request is forwarded.
func sessionKey(ctx *fasthttp.RequestCtx) (key []byte, fromHeader bool) {
	if k := ctx.Request.Header.Peek(HeaderSessionKey); len(k) > 0 {
		return k, true
	}
	return cookieValue(rawHeader(ctx.Request.Header.RawHeaders(), "Cookie"), CookieSession), false
}

// rawHeader returns the value of the first header called name in raw
// request header lines, nil when absent. It does not allocate.
func rawHeader(raw []byte, name string) []byte {
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) > len(name) && line[len(name)] == ':' && bytes.EqualFold(line[:len(name)], []byte(name)) {
			return bytes.TrimSpace(line[len(name)+1:])
		}
	}
	return nil
}

// cookieValue returns the value of the cookie name in a Cookie header
// ("a=1; name=v"), nil when absent. It does not allocate.
func cookieValue(h []byte, name string) []byte {
	for len(h) > 0 {
		var pair []byte
		if i := bytes.IndexByte(h, ';'); i >= 0 {
			pair, h = h[:i], h[i+1:]
		} else {
			pair, h = h, nil
		}
		pair = bytes.TrimLeft(pair, " ")
		if len(pair) > len(name) && pair[len(name)] == '=' && string(pair[:len(name)]) == name {
			return bytes.TrimRight(pair[len(name)+1:], " ")
		}
	}
	return nil
}

// httpOutcome judges an answer for the revision's health: the client's
// mistakes (4xx) are not the revision's, except overload (429) and a
// timeout (408); 5xx are, but a 504 for a deadline the client chose
// (clientDeadline) is the client's.
func httpOutcome(code int, clientDeadline bool) router.Outcome {
	switch {
	case code < 400:
		return router.OutcomeOK
	case code == fasthttp.StatusGatewayTimeout && clientDeadline:
		return router.OutcomeClientError
	case code < 500 && code != fasthttp.StatusRequestTimeout && code != fasthttp.StatusTooManyRequests:
		return router.OutcomeClientError
	}
	return router.OutcomeServerError
}

// restError answers err, for a request that reached no revision, in OIP
// form and counts it.
func (g *Gateway) restError(ctx *fasthttp.RequestCtx, err error) {
	writeRESTError(ctx, err)
	g.countUnrouted("rest", statusLabel(ctx.Response.StatusCode()))
}

// methodError is a request whose endpoint takes another method: 405, with
// the method it takes in Allow.
type methodError struct {
	error
	allow string
}

func (e *methodError) Unwrap() error { return e.error }

// writeRESTError answers err in OIP form: the status its kind maps to, or
// what the gateway's own error types ask for.
func writeRESTError(ctx *fasthttp.RequestCtx, err error) {
	rest.WriteError(ctx, err)
	var me *methodError
	switch {
	case errors.As(err, &me):
		ctx.Response.Header.Set("Allow", me.allow)
		ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
	case ctx.Response.StatusCode() == fasthttp.StatusUnauthorized:
		ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Bearer realm="infergate"`)
	}
	setRetryAfter(ctx, err)
}

// restFailed answers a request's failure to get its runtime's answer in
// OIP form. Once the drain deadline has passed, the failure is the
// drain's (errDrainDeadline) and the connection closes after the answer.
func (g *Gateway) restFailed(ctx *fasthttp.RequestCtx, err error) {
	if g.draining() {
		err = errDrainDeadline
		ctx.SetConnectionClose()
	}
	rest.WriteError(ctx, err)
	setRetryAfter(ctx, err)
}

// restInfer sends a REST infer request to a replica: as bytes to a REST
// replica, translated for any other.
// It reports whether the revision was retired while the request waited
// in its activator, so that the caller routes it again.
// timeoutHeader is the request's HeaderRequestTimeout, if any.
func (g *Gateway) restInfer(ctx *fasthttp.RequestCtx, p *auth.Principal, r *route, req router.Request, start time.Time, timeoutHeader []byte, tr *tracing.Request) (retired bool) {
	timeout := r.Timeout
	if v := timeoutHeader; len(v) > 0 {
		d, err := parseTimeout(v)
		if err != nil {
			rest.WriteError(ctx, err)
			return false
		}
		timeout = d
	}
	deadline := start.Add(timeout)
	slot, err := g.fairShare(g.drain, p, r, deadline, tr, priorityOf{rest: &ctx.Request})
	if err != nil {
		g.restFailed(ctx, err)
		return false
	}
	defer slot.Release()
	for try := 1; ; try++ {
		release, err := r.activate(g.drain, deadline, tr)
		if err != nil {
			g.restFailed(ctx, err)
			return errors.Is(err, ErrRevisionRetired)
		}
		if r.Batcher != nil {
			g.restBatched(ctx, r, deadline, tr)
			release()
			return false
		}
		err = g.restCall(ctx, r, req, deadline, tr)
		release()
		if err == nil {
			break
		}
		ctx.Response.Reset()
		if !r.awaitReplica(err, try, deadline, g.drain.Done()) {
			g.restFailed(ctx, err)
			break
		}
	}
	// The runtime's Connection header is of its own hop.
	ctx.Response.Header.Del("Connection")
	if g.draining() {
		ctx.SetConnectionClose()
	}
	return false
}

// restCall sends a REST infer request to a replica of r and puts the
// answer in ctx's response: as bytes from a REST replica (a runtime's
// error answer included), translated from any other. It returns the error
// of a call that got no answer, for the caller to retry or write.
func (g *Gateway) restCall(ctx *fasthttp.RequestCtx, r *route, req router.Request, deadline time.Time, tr *tracing.Request) error {
	var decoded *oip.InferRequest
	defer func() { putRequest(decoded) }()
	// The pass-through needs only the deadline; a context (two allocations
	// and a timer) is made only when the request is translated. g.drain
	// stops the pool's retries at the drain deadline.
	err := r.do(g.drain, req, func(cl runtimes.Client) error {
		if g.draining() {
			// A call sent now could outlast the connections' last close
			// (see abortInFlight).
			return errDrainDeadline
		}
		t0 := time.Now()
		var err error
		if fw, ok := cl.(runtimes.Forwarder); ok {
			err = fw.Forward(&ctx.Request, &ctx.Response, deadline)
			t1 := time.Now()
			code := ctx.Response.StatusCode()
			g.countUpstream(r, t1.Sub(t0), err, code)
			markUpstream(tr, cl, t0, t1)
			tr.UpstreamStatus = 0
			if err == nil {
				tr.UpstreamStatus = code
			}
			if err == nil && code >= fasthttp.StatusInternalServerError {
				// The pool's breaker, ejection and retries must see a
				// runtime's 5xx; the client still gets the runtime's answer.
				return &oip.Error{Kind: oip.KindFromHTTPStatus(code), Msg: "runtime answered HTTP " + statusLabel(code), Err: errRuntimeAnswered}
			}
			return err
		}
		if decoded == nil {
			if decoded, err = decodeREST(ctx, r); err != nil {
				return err
			}
		}
		c, cancel := context.WithDeadline(g.drain, deadline)
		defer cancel()
		resp, err := cl.Infer(traceContext(c, tr, restTraceState(ctx, tr)), decoded)
		t1 := time.Now()
		g.countUpstream(r, t1.Sub(t0), err, 0)
		markUpstream(tr, cl, t0, t1)
		tr.UpstreamStatus = upstreamStatus(tr, err)
		if err != nil {
			return err
		}
		rest.WriteInferResponse(ctx, resp, decoded.BinaryOutput)
		return nil
	})
	if err != nil && !errors.Is(err, errRuntimeAnswered) {
		return err
	}
	return nil
}

// errRuntimeAnswered marks an error made from a runtime's own error answer,
// which is passed to the client as the runtime wrote it.
var errRuntimeAnswered = errors.New("runtime answered with an error status")

// countUpstream records one upstream call that took d: by HTTP status when
// the call got an answer, by error kind when it did not.
func (g *Gateway) countUpstream(r *route, d time.Duration, err error, status int) {
	r.upstream.Observe(d.Seconds())
	code := "200"
	switch {
	case err != nil:
		code = oip.KindOf(err).String()
	case status != 0 && status != 200:
		code = statusLabel(status)
	}
	r.upstreamRequests.with(code).Inc()
}

// restBatched decodes a REST request and hands it to the model's batcher.
func (g *Gateway) restBatched(ctx *fasthttp.RequestCtx, r *route, deadline time.Time, tr *tracing.Request) {
	req, err := decodeREST(ctx, r)
	defer putRequest(req)
	if err != nil {
		rest.WriteError(ctx, err)
		return
	}
	c, cancel := context.WithDeadline(g.drain, deadline)
	defer cancel()
	// A request that goes alone is sent under c: a gRPC runtime then
	// receives its trace context.
	var timing batcher.Timing
	resp, err := r.Batcher.SubmitTimed(traceContext(c, tr, restTraceState(ctx, tr)), req, &timing)
	markBatch(tr, &timing)
	if err != nil {
		g.restFailed(ctx, err)
		return
	}
	rest.WriteInferResponse(ctx, resp, req.BinaryOutput)
}

// decodeREST decodes ctx's body into a pooled request for r's model; the
// caller returns it with putRequest, error or not. The request names no
// version: a version in the path chose the revision.
func decodeREST(ctx *fasthttp.RequestCtx, r *route) (*oip.InferRequest, error) {
	req := requestPool.Get().(*oip.InferRequest)
	if err := rest.DecodeInferRequest(ctx, req); err != nil {
		return req, err
	}
	req.ModelName, req.ModelVersion = r.Model, ""
	return req, nil
}

// do calls fn with a replica of r's pool: the one a sticky request's key
// hashes to when the revision asks for sticky replicas, else the pool's
// choice.
func (r *route) do(ctx context.Context, req router.Request, fn func(runtimes.Client) error) error {
	if r.StickyReplicas && req.Sticky {
		return r.Pool.DoKey(ctx, req.Key, fn)
	}
	return r.Pool.Do(ctx, fn)
}

// putRequest returns a request from decodeREST to the pool (nil is fine).
func putRequest(req *oip.InferRequest) {
	if req != nil {
		req.Reset()
		requestPool.Put(req)
	}
}

// restTraceState returns the REST request's tracestate, for a runtime
// reached over gRPC metadata; "" when tracing is off.
func restTraceState(ctx *fasthttp.RequestCtx, tr *tracing.Request) string {
	if !tr.Tracing() || !tr.Continued() {
		return ""
	}
	return string(ctx.Request.Header.Peek(tracing.HeaderTraceState))
}

// upstreamStatus is the status of a decoded upstream call's answer for a
// sampled request's client span, in the runtime's protocol (markUpstream
// set it): its error's gRPC code or HTTP status; 0 (OK, or unknown for
// REST) with no error.
func upstreamStatus(tr *tracing.Request, err error) int {
	switch {
	case err == nil || !tr.Sampled():
		return 0
	case tr.UpstreamProtocol == tracing.ProtocolGRPC:
		return int(oip.GRPCCode(err))
	}
	return oip.HTTPStatus(err)
}
