package oip

import "bytes"

// Endpoint names an OIP REST endpoint.
type Endpoint uint8

// The OIP REST endpoints.
const (
	EndpointUnknown     Endpoint = iota
	EndpointServerLive           // GET /v2/health/live
	EndpointServerReady          // GET /v2/health/ready
	EndpointServerMeta           // GET /v2
	EndpointModelMeta            // GET /v2/models/{m}[/versions/{v}]
	EndpointModelReady           // GET /v2/models/{m}[/versions/{v}]/ready
	EndpointModelInfer           // POST /v2/models/{m}[/versions/{v}]/infer
)

// Method returns the HTTP method the endpoint answers.
func (e Endpoint) Method() string {
	if e == EndpointModelInfer {
		return "POST"
	}
	return "GET"
}

// RESTPath is a parsed OIP REST path. Model and Version alias the parsed
// path: copy them to keep them past the request.
type RESTPath struct {
	Endpoint Endpoint
	Model    []byte
	Version  []byte
}

var (
	prefixV2     = []byte("/v2")
	prefixModels = []byte("/v2/models/")
	segVersions  = []byte("versions")
)

// ParseRESTPath parses an OIP REST path (without query string). It
// allocates nothing. EndpointUnknown means no OIP endpoint has this path.
func ParseRESTPath(path []byte) RESTPath {
	switch {
	case string(path) == "/v2" || string(path) == "/v2/":
		return RESTPath{Endpoint: EndpointServerMeta}
	case string(path) == "/v2/health/live":
		return RESTPath{Endpoint: EndpointServerLive}
	case string(path) == "/v2/health/ready":
		return RESTPath{Endpoint: EndpointServerReady}
	case !bytes.HasPrefix(path, prefixModels):
		return RESTPath{}
	}
	rest := path[len(prefixModels):]
	var p RESTPath
	p.Model, rest = cutSegment(rest)
	if len(p.Model) == 0 {
		return RESTPath{}
	}
	seg, rest := cutSegment(rest)
	if bytes.Equal(seg, segVersions) {
		p.Version, rest = cutSegment(rest)
		if len(p.Version) == 0 {
			return RESTPath{}
		}
		seg, rest = cutSegment(rest)
	}
	if len(rest) != 0 {
		return RESTPath{}
	}
	switch string(seg) {
	case "":
		p.Endpoint = EndpointModelMeta
	case "ready":
		p.Endpoint = EndpointModelReady
	case "infer":
		p.Endpoint = EndpointModelInfer
	default:
		return RESTPath{}
	}
	return p
}

// cutSegment returns the path segment before the next '/' and what follows
// that slash.
func cutSegment(b []byte) (seg, rest []byte) {
	if i := bytes.IndexByte(b, '/'); i >= 0 {
		return b[:i], b[i+1:]
	}
	return b, nil
}
