package modelserver

import (
	"bytes"
	"context"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/infergate/infergate/oip"
	"github.com/infergate/infergate/oip/rest"
)

var requestPool = sync.Pool{New: func() any { return new(oip.InferRequest) }}

// HandleREST is the server's fasthttp handler for the OIP REST endpoints
// and Triton's model repository extension (see handleRepository). Anything
// else is 404 with a JSON error.
func (s *Server) HandleREST(ctx *fasthttp.RequestCtx) {
	p := oip.ParseRESTPath(ctx.Path())
	if p.Endpoint == oip.EndpointUnknown {
		if bytes.HasPrefix(ctx.Path(), prefixRepository) {
			s.handleRepository(ctx)
			return
		}
		rest.WriteError(ctx, oip.Errorf(oip.KindNotFound, "no OIP endpoint at %s %q", ctx.Method(), ctx.Path()))
		return
	}
	if string(ctx.Method()) != p.Endpoint.Method() {
		ctx.Response.Header.Set("Allow", p.Endpoint.Method())
		rest.WriteError(ctx, oip.Errorf(oip.KindNotFound, "%s %q: use %s", ctx.Method(), ctx.Path(), p.Endpoint.Method()))
		ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
		return
	}
	switch p.Endpoint {
	case oip.EndpointServerLive:
		ctx.SetStatusCode(fasthttp.StatusOK)
	case oip.EndpointServerReady:
		if !s.Ready() {
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		}
	case oip.EndpointServerMeta:
		rest.WriteJSON(ctx, s.Metadata())
	case oip.EndpointModelReady:
		ok, err := s.ModelReady(string(p.Model), string(p.Version))
		switch {
		case err != nil:
			rest.WriteError(ctx, err)
		case !ok:
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		}
	case oip.EndpointModelMeta:
		md, err := s.ModelMetadata(string(p.Model), string(p.Version))
		if err != nil {
			rest.WriteError(ctx, err)
			return
		}
		rest.WriteJSON(ctx, md)
	case oip.EndpointModelInfer:
		s.handleInfer(ctx, p)
	}
}

func (s *Server) handleInfer(ctx *fasthttp.RequestCtx, p oip.RESTPath) {
	s.activity.begin()
	size := len(ctx.Request.Body())
	req := requestPool.Get().(*oip.InferRequest)
	defer func() {
		s.activity.end(size)
		// Neither the pooled request (through its tensors' data, which
		// may alias the body) nor the connection may keep a large body
		// reachable: a burst of large requests would stay in memory
		// (memory.go). Small buffers stay, for reuse.
		for i := range req.Inputs {
			if cap(req.Inputs[i].Data) > largeBodyBytes {
				req.Inputs[i].Data = nil
			}
		}
		req.Reset()
		requestPool.Put(req)
		ctx.Request.ReleaseBody(largeBodyBytes)
	}()
	if err := rest.DecodeInferRequest(ctx, req); err != nil {
		rest.WriteError(ctx, err)
		return
	}
	req.ModelName, req.ModelVersion = string(p.Model), string(p.Version)
	resp, err := s.Infer(context.Background(), req)
	if err != nil {
		rest.WriteError(ctx, err)
		return
	}
	rest.WriteInferResponse(ctx, resp, req.BinaryOutput)
}
