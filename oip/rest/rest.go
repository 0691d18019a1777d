// Package rest holds the fasthttp helpers that every OIP REST server in
// infergate shares: the gateway's front door and the built-in model server.
// It reads Triton's binary-extension header and writes OIP answers and
// errors, so both servers answer in exactly the same form.
package rest

import (
	"encoding/json"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/infergate/infergate/oip"
)

// HeaderInferenceHeaderContentLength is Triton's binary extension header:
// the length of the JSON part of a body followed by binary tensors.
const HeaderInferenceHeaderContentLength = "Inference-Header-Content-Length"

// ContentTypeJSON is the content type of JSON bodies.
const ContentTypeJSON = "application/json"

// ContentTypeBinary is the content type of binary-extension bodies.
const ContentTypeBinary = "application/octet-stream"

// HeaderLength returns the value of the Inference-Header-Content-Length
// header, -1 when it is absent, or an invalid-argument error when it is not
// a non-negative number no larger than the body.
func HeaderLength(h *fasthttp.RequestHeader, bodyLen int) (int, error) {
	v := h.Peek(HeaderInferenceHeaderContentLength)
	if len(v) == 0 {
		return -1, nil
	}
	n, err := fasthttp.ParseUint(v)
	if err != nil || n > bodyLen {
		return 0, oip.Errorf(oip.KindInvalidArgument, "%s: %q is not a length within the %d-byte body", HeaderInferenceHeaderContentLength, v, bodyLen)
	}
	return n, nil
}

// WriteError answers with err's HTTP status and {"error": "..."}.
func WriteError(ctx *fasthttp.RequestCtx, err error) {
	ctx.Response.Header.SetContentType(ContentTypeJSON)
	ctx.SetStatusCode(oip.HTTPStatus(err))
	ctx.Response.SetBodyRaw(oip.AppendErrorJSON(ctx.Response.Body()[:0], err))
}

// WriteJSON answers 200 with v encoded by encoding/json; it is for the
// metadata endpoints, which are not on the hot path.
func WriteJSON(ctx *fasthttp.RequestCtx, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteError(ctx, oip.Errorf(oip.KindInternal, "encoding response: %w", err))
		return
	}
	ctx.Response.Header.SetContentType(ContentTypeJSON)
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.Response.SetBodyRaw(b)
}

// WriteInferResponse encodes resp as the body of a 200 answer; outputs for
// which binary reports true go in binary form with the extension's header.
func WriteInferResponse(ctx *fasthttp.RequestCtx, resp *oip.InferResponse, binary func(string) bool) {
	body, jsonLen, err := oip.AppendInferResponse(ctx.Response.Body()[:0], resp, binary)
	if err != nil {
		WriteError(ctx, oip.Errorf(oip.KindInternal, "encoding response: %w", err))
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	if jsonLen >= 0 {
		ctx.Response.Header.SetContentType(ContentTypeBinary)
		var buf [20]byte
		ctx.Response.Header.SetBytesV(HeaderInferenceHeaderContentLength, strconv.AppendInt(buf[:0], int64(jsonLen), 10))
	} else {
		ctx.Response.Header.SetContentType(ContentTypeJSON)
	}
	ctx.Response.SetBodyRaw(body)
}

// DecodeInferRequest decodes the request body of ctx into req, with the
// binary extension when its header is present. req aliases the body, which
// is valid only until the handler returns.
func DecodeInferRequest(ctx *fasthttp.RequestCtx, req *oip.InferRequest) error {
	body := ctx.Request.Body()
	n, err := HeaderLength(&ctx.Request.Header, len(body))
	if err != nil {
		return err
	}
	return oip.DecodeInferRequest(body, n, req)
}
