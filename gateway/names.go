package gateway

import (
	"bytes"

	"github.com/infergate/infergate/oip"
	"github.com/infergate/infergate/router"
)

// checkRawPath refuses a REST path, as the client sent it, that fasthttp's
// path normalisation would turn into another: one with an encoded slash
// (%2F) or a dot segment ("." or "..", plain or percent-encoded).
// fasthttp decodes the path and resolves dot segments before the handler
// sees it, so /v2/models/iris%2F..%2Fdigits/infer would reach digits while
// a proxy in front matched it against a rule for iris. The gateway routes
// on what the proxy saw, or not at all. It does not allocate.
func checkRawPath(raw []byte) error {
	if hasEncodedSlash(raw) {
		return oip.Errorf(oip.KindInvalidArgument, "the request path may not encode '/' (%%2F) in a name")
	}
	for len(raw) > 0 {
		seg := raw
		if i := bytes.IndexByte(raw, '/'); i >= 0 {
			seg, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if isDotSegment(seg) {
			return oip.Errorf(oip.KindInvalidArgument, "the request path may not have '.' or '..' segments")
		}
	}
	return nil
}

// hasEncodedSlash reports whether b holds %2F or %2f.
func hasEncodedSlash(b []byte) bool {
	for {
		i := bytes.IndexByte(b, '%')
		if i < 0 || i+2 >= len(b) {
			return false
		}
		if b[i+1] == '2' && (b[i+2] == 'F' || b[i+2] == 'f') {
			return true
		}
		b = b[i+1:]
	}
}

// isDotSegment reports whether a raw path segment decodes to "." or "..":
// one or two dots, each written "." or "%2E".
func isDotSegment(seg []byte) bool {
	dots := 0
	for len(seg) > 0 {
		switch {
		case seg[0] == '.':
			seg = seg[1:]
		case len(seg) >= 3 && seg[0] == '%' && seg[1] == '2' && (seg[2] == 'E' || seg[2] == 'e'):
			seg = seg[3:]
		default:
			return false
		}
		dots++
	}
	return dots == 1 || dots == 2
}

// checkNames refuses a model name or version (or revision pin) holding '/'
// or "..": no model has such a name, and one that reached a runtime's URL
// would name another path there. Names come decoded once (the REST path
// by fasthttp, a gRPC message as it is).
func checkNames(req router.Request) error {
	if badName(req.Model) {
		return oip.Errorf(oip.KindInvalidArgument, "model name %q may not contain '/' or '..'", req.Model)
	}
	if badName(req.Pin) {
		return oip.Errorf(oip.KindInvalidArgument, "model version or revision %q may not contain '/' or '..'", req.Pin)
	}
	return nil
}

func badName(b []byte) bool {
	return bytes.IndexByte(b, '/') >= 0 || bytes.Contains(b, []byte(".."))
}
