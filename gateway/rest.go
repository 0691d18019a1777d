package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infergate/infergate/oip"
	"github.com/infergate/infergate/oip/rest"
	"github.com/infergate/infergate/runtimes"
)

var requestPool = sync.Pool{New: func() any { return new(oip.InferRequest) }}

// HandleREST is the gateway's fasthttp handler for the OIP REST endpoints.
// Anything else is 404 with a JSON error.
func (g *Gateway) HandleREST(ctx *fasthttp.RequestCtx) {
	p := oip.ParseRESTPath(ctx.Path())
	switch {
	case p.Endpoint == oip.EndpointUnknown:
		g.restError(ctx, nil, oip.Errorf(oip.KindNotFound, "no OIP endpoint at %s %q", ctx.Method(), ctx.Path()))
		return
	case string(ctx.Method()) != p.Endpoint.Method():
		g.restError(ctx, nil, oip.Errorf(oip.KindNotFound, "%s %q: use %s", ctx.Method(), ctx.Path(), p.Endpoint.Method()))
		ctx.Response.Header.Set("Allow", p.Endpoint.Method())
		ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
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
	r, err := g.lookup(p.Model)
	if err != nil {
		g.restError(ctx, nil, err)
		return
	}
	switch p.Endpoint {
	case oip.EndpointModelReady:
		if !r.Pool.Ready() {
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		}
	case oip.EndpointModelMeta:
		c, cancel := context.WithTimeout(context.Background(), r.Timeout)
		defer cancel()
		md, err := r.Pool.Metadata(c)
		if err != nil {
			g.restError(ctx, r, err)
			return
		}
		rest.WriteJSON(ctx, md)
	case oip.EndpointModelInfer:
		start := time.Now()
		g.restInfer(ctx, r, p.Version, start)
		r.restRequests.inc(ctx.Response.StatusCode())
		r.gatewayREST.Observe(time.Since(start).Seconds())
	}
}

// restError answers err in OIP form and counts it.
func (g *Gateway) restError(ctx *fasthttp.RequestCtx, r *route, err error) {
	rest.WriteError(ctx, err)
	if r == nil {
		g.metrics.requests.WithLabelValues("", "rest", statusLabel(ctx.Response.StatusCode())).Inc()
	}
}

// restInfer sends a REST infer request to a replica: as bytes to a REST
// replica, translated for any other.
func (g *Gateway) restInfer(ctx *fasthttp.RequestCtx, r *route, version []byte, start time.Time) {
	timeout := r.Timeout
	if v := ctx.Request.Header.Peek(HeaderRequestTimeout); len(v) > 0 {
		d, err := parseTimeout(v)
		if err != nil {
			rest.WriteError(ctx, err)
			return
		}
		timeout = d
	}
	deadline := start.Add(timeout)

	// Hop-by-hop headers stay on this hop.
	ctx.Request.Header.Del("Connection")
	ctx.Request.Header.Del("Keep-Alive")
	var decoded *oip.InferRequest
	defer func() { putRequest(decoded) }()
	release, err := r.activate(deadline)
	if err != nil {
		rest.WriteError(ctx, err)
		setRetryAfter(ctx, err)
		return
	}
	defer release()
	if r.Batcher != nil {
		g.restBatched(ctx, r, version, deadline)
		return
	}
	// The pass-through needs only the deadline; a context (two allocations
	// and a timer) is made only when the request is translated.
	err = r.Pool.Do(context.Background(), func(cl runtimes.Client) error {
		t0 := time.Now()
		var err error
		if rc, ok := cl.(*runtimes.RESTClient); ok {
			err = rc.Forward(&ctx.Request, &ctx.Response, deadline)
			code := ctx.Response.StatusCode()
			g.countUpstream(r, t0, err, code)
			if err == nil && code >= fasthttp.StatusInternalServerError {
				// The pool's breaker, ejection and retries must see a
				// runtime's 5xx; the client still gets the runtime's answer.
				return &oip.Error{Kind: oip.KindFromHTTPStatus(code), Msg: "runtime answered HTTP " + statusLabel(code), Err: errRuntimeAnswered}
			}
			return err
		}
		if decoded == nil {
			if decoded, err = decodeREST(ctx, r, version); err != nil {
				return err
			}
		}
		c, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		resp, err := cl.Infer(c, decoded)
		g.countUpstream(r, t0, err, 0)
		if err != nil {
			return err
		}
		rest.WriteInferResponse(ctx, resp, decoded.BinaryOutput)
		return nil
	})
	if err != nil && !errors.Is(err, errRuntimeAnswered) {
		ctx.Response.Reset()
		rest.WriteError(ctx, err)
		return
	}
	ctx.Response.Header.Del("Connection")
}

// errRuntimeAnswered marks an error made from a runtime's own error answer,
// which is passed to the client as the runtime wrote it.
var errRuntimeAnswered = errors.New("runtime answered with an error status")

// countUpstream records one upstream call: by HTTP status when the call got
// an answer, by error kind when it did not.
func (g *Gateway) countUpstream(r *route, t0 time.Time, err error, status int) {
	r.upstream.Observe(time.Since(t0).Seconds())
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
func (g *Gateway) restBatched(ctx *fasthttp.RequestCtx, r *route, version []byte, deadline time.Time) {
	req, err := decodeREST(ctx, r, version)
	defer putRequest(req)
	if err != nil {
		rest.WriteError(ctx, err)
		return
	}
	c, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	resp, err := r.Batcher.Submit(c, req)
	if err != nil {
		rest.WriteError(ctx, err)
		return
	}
	rest.WriteInferResponse(ctx, resp, req.BinaryOutput)
}

// decodeREST decodes ctx's body into a pooled request for r's model; the
// caller returns it with putRequest, error or not.
func decodeREST(ctx *fasthttp.RequestCtx, r *route, version []byte) (*oip.InferRequest, error) {
	req := requestPool.Get().(*oip.InferRequest)
	if err := rest.DecodeInferRequest(ctx, req); err != nil {
		return req, err
	}
	req.ModelName, req.ModelVersion = r.Model, string(version)
	return req, nil
}

// putRequest returns a request from decodeREST to the pool (nil is fine).
func putRequest(req *oip.InferRequest) {
	if req != nil {
		req.Reset()
		requestPool.Put(req)
	}
}
