package jsonhttp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
)

// ActorHeader names who makes a change (the CLI sends the OS user); a
// request without it is made by the client's address (Actor).
const ActorHeader = "X-Infergate-Actor"

// HandlerFunc is a route's handler: it answers success itself and returns
// an error, having written no status, for ErrorWriter.Handle to answer.
// Headers it set (Allow, say) are kept in the error's answer.
type HandlerFunc func(http.ResponseWriter, *http.Request) error

// ErrorWriter answers the errors of one API's routes: the one place that
// API writes them. The zero value is not usable: Status is required.
type ErrorWriter struct {
	// Status maps an error to its HTTP status and code name: the API's
	// one mapping, which should start with StatusOf so that an *Error
	// keeps its own. A code of "" writes a body without one.
	Status func(error) (status int, code string)
	// Logger gets the errors answered with a 5xx status. nil discards
	// them.
	Logger *slog.Logger
	// API names the API in those log lines ("registry API").
	API string
}

// Handle adapts f to net/http: the error f returns is answered by Write.
func (ew ErrorWriter) Handle(f HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			ew.Write(w, err)
		}
	}
}

// Write answers err with the status and code Status gives it, as
// {"error": err.Error(), "code": code}, logging it when the status is a
// 5xx. Nothing must have been written to w before.
func (ew ErrorWriter) Write(w http.ResponseWriter, err error) {
	status, code := ew.Status(err)
	if status >= 500 && ew.Logger != nil {
		ew.Logger.Warn(ew.API+": request failed", "status", status, "code", code, "err", err)
	}
	WriteJSON(w, status, ErrorBody{Error: err.Error(), Code: code})
}

// ErrorBody is every error answer: the message names what is wrong, the
// code (NOT_FOUND, INVALID_ARGUMENT...) is what a program tests. An API
// without codes leaves Code empty, and the body has only "error".
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

// WriteJSON answers v as indented JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Error is an error of the request itself that the API's domain never
// sees (a wrong path, method or media type, a body over its bound), with
// the status and code it is answered with. Code may be "" for an API
// without codes.
type Error struct {
	Status int
	Code   string
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// StatusOf returns the status and code of err when it is, or wraps, an
// *Error; ok is false otherwise.
func StatusOf(err error) (status int, code string, ok bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Status, e.Code, true
	}
	return 0, "", false
}

// NotFound is the 404 of a request that no route of an API takes: "no
// <api> API at <METHOD> <path>; see <see>", see naming the API's paths.
func NotFound(r *http.Request, api, see string) *Error {
	return &Error{Status: http.StatusNotFound, Code: "NOT_FOUND",
		Msg: fmt.Sprintf("no %s API at %s %s; see %s", api, r.Method, r.URL.Path, see)}
}

// probeMethods are the methods NoRoute tries, in the order Allow names
// them.
var probeMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// NoRoute returns the handler to register on mux at each of patterns (the
// patterns an API is mounted at, which catch every path under it that no
// route takes): a path that routes of mux take with other methods is
// answered 405 METHOD_NOT_ALLOWED with Allow naming them, any other
// NotFound(r, api, see).
func NoRoute(mux *http.ServeMux, patterns []string, api, see string) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var allow []string
		probe := r.Clone(r.Context())
		for _, method := range probeMethods {
			probe.Method = method
			if _, pattern := mux.Handler(probe); !slices.Contains(patterns, pattern) {
				allow = append(allow, method)
			}
		}
		if len(allow) == 0 {
			return NotFound(r, api, see)
		}
		methods := strings.Join(allow, ", ")
		// Set before the error is written, which keeps it.
		w.Header().Set("Allow", methods)
		return &Error{Status: http.StatusMethodNotAllowed, Code: "METHOD_NOT_ALLOWED",
			Msg: fmt.Sprintf("%s %s: the method is not allowed; use %s", r.Method, r.URL.Path, methods)}
	}
}

// IsJSON reports whether a Content-Type is JSON (merge-patch included, as
// PATCH clients send it).
func IsJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || mt == "application/merge-patch+json")
}

// TrailingError is data after a body's JSON value. Err is the error met
// reading it when it is not a value (malformed JSON, a read error, the
// bound hit: errors.As finds an *http.MaxBytesError through it), nil when
// it is one.
type TrailingError struct{ Err error }

func (e *TrailingError) Error() string { return "data after the request object" }

// Unwrap returns the error met reading the data, if any.
func (e *TrailingError) Unwrap() error { return e.Err }

// Decode decodes the JSON value of r's body into dst strictly: unknown
// fields are refused, and so is anything after the value; at most max
// bytes are read (http.MaxBytesReader, which also has the server close
// the connection past them). The error is the decoder's (io.EOF for an
// empty body, *json.SyntaxError, *json.UnmarshalTypeError, an unknown
// field's), one wrapping *http.MaxBytesError past max, or a
// *TrailingError; offset is where in the body decoding stopped, for the
// caller's message. Decode checks no Content-Type: see IsJSON.
func Decode(w http.ResponseWriter, r *http.Request, max int64, dst any) (offset int64, err error) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, max))
	dec.DisallowUnknownFields()
	err = dec.Decode(dst)
	if err == nil {
		// A second value would otherwise go unread.
		if _, terr := dec.Token(); terr != io.EOF {
			err = &TrailingError{Err: terr}
		}
	}
	return dec.InputOffset(), err
}

// Actor returns who makes r's change: the X-Infergate-Actor header, else
// the client's host.
func Actor(r *http.Request) string {
	actor := strings.TrimSpace(r.Header.Get(ActorHeader))
	if actor == "" {
		actor = r.RemoteAddr
		if host, _, err := net.SplitHostPort(actor); err == nil {
			actor = host
		}
	}
	return actor
}
