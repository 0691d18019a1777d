package registryapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/infergate/infergate/internal/jsonhttp"
	"github.com/infergate/infergate/registry"
)

// Defaults of Options.
const (
	DefaultMaxBodyBytes       = 1 << 20
	DefaultHeartbeat          = 15 * time.Second
	DefaultEventPoll          = 2 * time.Second
	DefaultStreamWriteTimeout = 30 * time.Second
)

// ActorHeader names who makes a change; without it the client's address
// does.
const ActorHeader = jsonhttp.ActorHeader

// Options configure a Handler. Every zero value has a documented default.
type Options struct {
	// Guard wraps every handler that changes something (POST, PUT, PATCH,
	// DELETE): the admin API's change guard (controlplane.Guard: no
	// Origin, POST only as application/json, loopback unless allowed).
	// nil admits every change.
	Guard func(http.HandlerFunc) http.HandlerFunc
	// MaxUploadBytes bounds the body of one artifact upload: a larger
	// Content-Length is refused with 413 before a byte is read, and a
	// chunked body that grows past it is cut off with 413, storing
	// nothing. 0 means no bound of its own: the registry's
	// MaxArtifactBytes (4 GiB by default) applies, with the same answer.
	MaxUploadBytes int64
	// MaxBodyBytes bounds a JSON request body (413 past it). 0 means
	// DefaultMaxBodyBytes (1 MiB).
	MaxBodyBytes int64
	// Heartbeat is how often an event stream sends a comment line when
	// nothing else is sent. 0 means DefaultHeartbeat (15s).
	Heartbeat time.Duration
	// EventPoll is how often an event stream reads the log besides when
	// this process commits an event: events committed by other processes
	// sharing a PostgreSQL store arrive within it. 0 means
	// DefaultEventPoll (2s).
	EventPoll time.Duration
	// StreamWriteTimeout bounds each write to an event stream's client:
	// a client that takes no bytes for that long is disconnected (it
	// resumes with Last-Event-ID). 0 means DefaultStreamWriteTimeout
	// (30s).
	StreamWriteTimeout time.Duration
	// Done, once closed, ends every open event stream (its client may
	// reconnect with Last-Event-ID): give it the signal that starts the
	// admin port's drain, which would otherwise wait for streams. nil
	// means streams end only when their clients go.
	Done <-chan struct{}
	// Logger gets the errors answered with a 5xx status. nil discards
	// them.
	Logger *slog.Logger
}

// Handler serves the registry's API and the event log's (see the package
// doc for the routes). It is safe for concurrent use.
type Handler struct {
	reg  *registry.Registry
	opts Options
	mux  *http.ServeMux
	log  *slog.Logger
	errs jsonhttp.ErrorWriter
}

// The patterns Handler answers, as Patterns returns them.
const (
	registryPrefix = "/api/v1/registry/"
	eventsPath     = "/api/v1/events"
	eventsPrefix   = "/api/v1/events/"
)

// New returns the API of reg; it starts no goroutine.
func New(reg *registry.Registry, opts Options) (*Handler, error) {
	if reg == nil {
		return nil, errors.New("registryapi: a registry is required")
	}
	for _, f := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"Heartbeat", &opts.Heartbeat, DefaultHeartbeat},
		{"EventPoll", &opts.EventPoll, DefaultEventPoll},
		{"StreamWriteTimeout", &opts.StreamWriteTimeout, DefaultStreamWriteTimeout},
	} {
		if *f.v < 0 {
			return nil, fmt.Errorf("registryapi: Options.%s %s is negative", f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if opts.MaxUploadBytes < 0 {
		return nil, fmt.Errorf("registryapi: Options.MaxUploadBytes %d is negative", opts.MaxUploadBytes)
	}
	if opts.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("registryapi: Options.MaxBodyBytes %d is negative", opts.MaxBodyBytes)
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Guard == nil {
		opts.Guard = func(h http.HandlerFunc) http.HandlerFunc { return h }
	}
	h := &Handler{reg: reg, opts: opts, mux: http.NewServeMux(), log: opts.Logger}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.errs = jsonhttp.ErrorWriter{Status: statusOf, Logger: h.log, API: "registry API"}
	h.routes()
	return h, nil
}

// Patterns returns the ServeMux patterns to mount the Handler at on the
// admin port (controlplane.APIOptions.Extra): every path under
// /api/v1/registry/ and /api/v1/events.
func (h *Handler) Patterns() []string {
	return []string{registryPrefix, eventsPath, eventsPrefix}
}

// ServeHTTP answers the routes of the package doc; any other path under
// its patterns is a JSON 404, or 405 naming the methods the path takes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) routes() {
	const m = "/api/v1/registry/models"
	const v = m + "/{model}/versions/{n}"
	read := h.errs.Handle
	change := func(f jsonhttp.HandlerFunc) http.HandlerFunc { return h.opts.Guard(h.errs.Handle(f)) }
	for _, rt := range []struct {
		pattern string
		h       http.HandlerFunc
	}{
		{"GET " + m, read(h.listModels)},
		{"POST " + m, change(h.createModel)},
		{"GET " + m + "/{model}", read(h.getModel)},
		{"PATCH " + m + "/{model}", change(h.updateModel)},
		{"POST " + m + "/{model}/archive", change(h.archiveModel)},
		{"GET " + m + "/{model}/versions", read(h.listVersions)},
		{"POST " + m + "/{model}/versions", change(h.createVersion)},
		{"GET " + v, read(h.getVersion)},
		{"PATCH " + v, change(h.updateVersion)},
		{"POST " + v + "/ready", change(h.markReady)},
		{"POST " + v + "/failed", change(h.markFailed)},
		{"POST " + v + "/archive", change(h.archiveVersion)},
		{"GET " + v + "/artifacts", read(h.listArtifacts)},
		{"PUT " + v + "/artifacts/{path...}", change(h.upload)},
		{"GET " + v + "/artifacts/{path...}", read(h.download)},
		{"GET " + m + "/{model}/aliases", read(h.listAliases)},
		{"GET " + m + "/{model}/aliases/{alias}", read(h.getAlias)},
		{"PUT " + m + "/{model}/aliases/{alias}", change(h.setAlias)},
		{"DELETE " + m + "/{model}/aliases/{alias}", change(h.deleteAlias)},
		{"GET " + m + "/{model}/aliases/{alias}/history", read(h.aliasHistory)},
		{"GET /api/v1/registry/resolve", read(h.resolve)},
		{"GET " + eventsPath, read(h.listEvents)},
		{"GET " + eventsPrefix + "stream", read(h.stream)},
	} {
		h.mux.HandleFunc(rt.pattern, rt.h)
	}
	noRoute := jsonhttp.NoRoute(h.mux, h.Patterns(), "registry", "/api/v1/registry/models, /api/v1/registry/resolve?ref=, /api/v1/events")
	for _, p := range h.Patterns() {
		h.mux.HandleFunc(p, h.errs.Handle(noRoute))
	}
}

// invalid returns a registry error of code InvalidArgument: a request
// the API refuses before the registry sees it, answered as the registry's
// own would be.
func invalid(format string, args ...any) error {
	return &registry.Error{Code: registry.CodeInvalidArgument, Msg: fmt.Sprintf(format, args...)}
}

// codeNames are the API's names of the registry's codes, as Google APIs
// and gRPC spell them.
var codeNames = map[registry.Code]string{
	registry.CodeInternal:            "INTERNAL",
	registry.CodeInvalidArgument:     "INVALID_ARGUMENT",
	registry.CodeNotFound:            "NOT_FOUND",
	registry.CodeAlreadyExists:       "ALREADY_EXISTS",
	registry.CodeConflict:            "CONFLICT",
	registry.CodeFailedPrecondition:  "FAILED_PRECONDITION",
	registry.CodeTooLarge:            "TOO_LARGE",
	registry.CodeUnavailable:         "UNAVAILABLE",
	registry.CodeInsufficientStorage: "INSUFFICIENT_STORAGE",
	registry.CodeDataLoss:            "DATA_LOSS",
}

// statusOf maps an error to its HTTP status and code name: the one place
// the API does. An error of the request itself (*jsonhttp.Error) keeps
// its own; a body over its bound (http.MaxBytesError anywhere in the
// chain) is 413 whatever the registry called it.
func statusOf(err error) (int, string) {
	if status, code, ok := jsonhttp.StatusOf(err); ok {
		return status, code
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return http.StatusRequestEntityTooLarge, codeNames[registry.CodeTooLarge]
	}
	c := registry.CodeOf(err)
	name := codeNames[c]
	switch c {
	case registry.CodeInvalidArgument:
		return http.StatusBadRequest, name
	case registry.CodeNotFound:
		return http.StatusNotFound, name
	case registry.CodeAlreadyExists, registry.CodeConflict:
		return http.StatusConflict, name
	case registry.CodeFailedPrecondition:
		return http.StatusPreconditionFailed, name
	case registry.CodeTooLarge:
		return http.StatusRequestEntityTooLarge, name
	case registry.CodeUnavailable:
		return http.StatusServiceUnavailable, name
	case registry.CodeInsufficientStorage:
		return http.StatusInsufficientStorage, name
	case registry.CodeDataLoss:
		return http.StatusInternalServerError, name
	}
	return http.StatusInternalServerError, codeNames[registry.CodeInternal]
}

// writeTagged answers v with its ETag (quoted, as RFC 9110 wants).
func writeTagged(w http.ResponseWriter, status int, etag string, v any) {
	w.Header().Set("ETag", strconv.Quote(etag))
	jsonhttp.WriteJSON(w, status, v)
}

// actorContext returns r's context naming who acts: the X-Infergate-Actor
// header, else the client's address.
func actorContext(r *http.Request) context.Context {
	return registry.WithActor(r.Context(), jsonhttp.Actor(r))
}

// decodeBody decodes r's JSON body into dst strictly: one object, known
// fields only, nothing after it, at most MaxBodyBytes. An empty body is
// an error when required and leaves dst as it is otherwise.
func (h *Handler) decodeBody(w http.ResponseWriter, r *http.Request, dst any, required bool) error {
	ct := r.Header.Get("Content-Type")
	if (ct != "" || r.ContentLength != 0) && !jsonhttp.IsJSON(ct) {
		return &jsonhttp.Error{Status: http.StatusUnsupportedMediaType, Code: "UNSUPPORTED_MEDIA_TYPE",
			Msg: fmt.Sprintf("body: Content-Type %q: send JSON as Content-Type: application/json", ct)}
	}
	offset, err := jsonhttp.Decode(w, r, h.opts.MaxBodyBytes, dst)
	if err == io.EOF {
		if required {
			return invalid("body: empty; want a JSON object")
		}
		return nil
	}
	var trailing *jsonhttp.TrailingError
	if errors.As(err, &trailing) {
		if trailing.Err == nil {
			return invalid("body: data after the JSON object at byte %d", offset)
		}
		err = trailing.Err // what follows is not JSON: said as such below
	}
	if err == nil {
		return nil
	}
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
		tooBig *http.MaxBytesError
		regErr *registry.Error
		cutOff = errors.Is(err, io.ErrUnexpectedEOF)
	)
	switch {
	case errors.As(err, &tooBig):
		return &registry.Error{Code: registry.CodeTooLarge, Msg: fmt.Sprintf("body: larger than %d bytes", tooBig.Limit), Err: tooBig}
	case errors.As(err, &syntax):
		return invalid("body: malformed JSON at byte %d: %s", syntax.Offset, syntax.Error())
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(the body)"
		}
		return invalid("body: field %s: want %s, got JSON %s (at byte %d)", field, typ.Type, typ.Value, typ.Offset)
	case cutOff:
		return invalid("body: malformed JSON: it ends early at byte %d", offset)
	case errors.As(err, &regErr):
		return invalid("body: %s", regErr.Error())
	}
	// Unknown fields and values a type refuses (a custom property that is
	// not one of stringValue, intValue...): the message names them.
	return invalid("body: %s (at byte %d)", strings.TrimPrefix(err.Error(), "json: "), offset)
}

// query returns r's query parameters, refusing one that the route does not
// take (named, with those it does), as an unknown JSON field is.
func query(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, invalid("query: %v", err)
	}
	for k := range q {
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return nil, invalid("query parameter %q: %s %s takes none", k, r.Method, r.URL.Path)
			}
			return nil, invalid("query parameter %q is unknown here; %s %s takes %s", k, r.Method, r.URL.Path, strings.Join(allowed, ", "))
		}
	}
	return q, nil
}

// single returns the one value of parameter k ("" when absent), refusing
// it repeated.
func single(q url.Values, k string) (string, error) {
	switch vs := q[k]; len(vs) {
	case 0:
		return "", nil
	case 1:
		return vs[0], nil
	}
	return "", invalid("query parameter %q is given %d times; give it once", k, len(q[k]))
}

// intParam parses an optional integer parameter.
func intParam(q url.Values, k string) (int, error) {
	s, err := single(q, k)
	if err != nil || s == "" {
		return 0, err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, invalid("query parameter %s=%q: want a whole number", k, s)
	}
	return n, nil
}

// listParams are the parameters every list takes.
var listParams = []string{"pageSize", "pageToken", "label", "state", "order"}

// listOptions reads a list's parameters: listParams, plus name (models) or
// status (versions) when allowed.
func listOptions(r *http.Request, extra ...string) (registry.ListOptions, error) {
	var o registry.ListOptions
	q, err := query(r, append(slices.Clone(listParams), extra...)...)
	if err != nil {
		return o, err
	}
	if o.PageSize, err = intParam(q, "pageSize"); err != nil {
		return o, err
	}
	var s string
	if o.PageToken, err = single(q, "pageToken"); err != nil {
		return o, err
	}
	if o.Name, err = single(q, "name"); err != nil {
		return o, err
	}
	if s, err = single(q, "state"); err != nil {
		return o, err
	}
	o.State = registry.State(strings.ToUpper(s))
	if s, err = single(q, "status"); err != nil {
		return o, err
	}
	o.Status = registry.Status(strings.ToUpper(s))
	if s, err = single(q, "order"); err != nil {
		return o, err
	}
	o.Order = registry.Order(strings.ToLower(s))
	for _, kv := range q["label"] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return o, invalid("query parameter label=%q: want label=key=value", kv)
		}
		if o.Labels == nil {
			o.Labels = map[string]string{}
		}
		if old, dup := o.Labels[k]; dup && old != v {
			return o, invalid("query parameter label: key %q is given twice, as %q and %q; an item has one value per key", k, old, v)
		}
		o.Labels[k] = v
	}
	return o, nil
}

// versionParam parses the {n} of a version's path.
func versionParam(r *http.Request) (int64, error) {
	s := r.PathValue("n")
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return 0, invalid("version %q in the path: want a version number (1, 2, ...)", s)
	}
	return n, nil
}

// ifMatch reads If-Match as the registry's ifMatch: "" (absent, or "*":
// the target must exist, which every change checks anyway) or one
// strong ETag, quoted as sent in ETag (a bare one is taken too, for
// people typing it). A weak ETag never matches (RFC 9110 compares
// If-Match strongly): 412.
func ifMatch(r *http.Request) (string, error) {
	vals := r.Header.Values("If-Match")
	v := strings.TrimSpace(strings.Join(vals, ","))
	switch {
	case v == "" || v == "*":
		return "", nil
	case strings.Contains(v, ","):
		return "", invalid("If-Match %q: give one ETag", v)
	case strings.HasPrefix(v, "W/"):
		return "", &registry.Error{Code: registry.CodeFailedPrecondition, Msg: fmt.Sprintf("If-Match %s: a weak ETag never matches; send the ETag header's value", v)}
	}
	if strings.HasPrefix(v, `"`) {
		if len(v) < 2 || !strings.HasSuffix(v, `"`) || strings.Contains(v[1:len(v)-1], `"`) {
			return "", invalid("If-Match %s: not a quoted ETag", v)
		}
		v = v[1 : len(v)-1]
	}
	return v, nil
}
