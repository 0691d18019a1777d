package oip

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Kind classifies an error for the protocol: each kind maps to one HTTP
// status and one gRPC code, in HTTPStatus and GRPCCode and nowhere else.
type Kind uint8

// The error kinds.
const (
	KindInternal Kind = iota
	KindInvalidArgument
	KindNotFound
	KindUnavailable
	KindDeadlineExceeded
	KindResourceExhausted
	KindTooLarge
	KindCanceled
	KindUnimplemented
	// KindUnauthenticated is a request without valid credentials: none,
	// malformed, unknown, expired or revoked.
	KindUnauthenticated
	// KindPermissionDenied is an authenticated caller asking for what it
	// was not granted.
	KindPermissionDenied
)

var kindNames = [...]string{
	KindInternal:          "internal",
	KindInvalidArgument:   "invalid argument",
	KindNotFound:          "not found",
	KindUnavailable:       "unavailable",
	KindDeadlineExceeded:  "deadline exceeded",
	KindResourceExhausted: "resource exhausted",
	KindTooLarge:          "too large",
	KindCanceled:          "canceled",
	KindUnimplemented:     "unimplemented",
	KindUnauthenticated:   "unauthenticated",
	KindPermissionDenied:  "permission denied",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Error is an error with a protocol kind. Msg is what the client reads in
// {"error": ...} or the gRPC status message; Err, when set, is the cause and
// is reachable through errors.Unwrap.
type Error struct {
	Kind Kind
	Msg  string
	Err  error

	// msgHasCause is set by Errorf, whose Msg already holds Err's text.
	msgHasCause bool
}

// Error returns Msg followed by ": " and the cause's text, when there is a
// cause that Msg does not already include.
func (e *Error) Error() string {
	switch {
	case e.Err == nil || e.msgHasCause:
		return e.Msg
	case e.Msg == "":
		return e.Err.Error()
	}
	return e.Msg + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of kind k with a formatted message. A %w verb
// wraps the cause as fmt.Errorf does.
func Errorf(k Kind, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	cause := errors.Unwrap(err)
	return &Error{Kind: k, Msg: err.Error(), Err: cause, msgHasCause: cause != nil}
}

// KindOf returns the protocol kind of err: the kind of the outermost *Error
// in its chain; context errors and gRPC statuses are classified by what they
// mean; anything else is internal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return KindDeadlineExceeded
	case errors.Is(err, context.Canceled):
		return KindCanceled
	}
	if s, ok := status.FromError(err); ok {
		return kindFromCode(s.Code())
	}
	return KindInternal
}

// Message returns the text a client should read for err. For an *Error it
// is the full message including the wrapped cause, and for a gRPC status it
// is the status message, so errors that crossed a hop are not prefixed twice.
func Message(err error) string {
	var e *Error
	if !errors.As(err, &e) {
		if s, ok := status.FromError(err); ok {
			return s.Message()
		}
	}
	return err.Error()
}

// HTTPStatus is the one mapping from an error to an HTTP status code,
// following Triton's and KServe's choices.
func HTTPStatus(err error) int {
	switch KindOf(err) {
	case KindInvalidArgument:
		return http.StatusBadRequest
	case KindNotFound:
		return http.StatusNotFound
	case KindUnavailable:
		return http.StatusServiceUnavailable
	case KindDeadlineExceeded:
		return http.StatusGatewayTimeout
	case KindResourceExhausted:
		return http.StatusTooManyRequests
	case KindTooLarge:
		return http.StatusRequestEntityTooLarge
	case KindCanceled:
		return 499 // client closed request, as nginx counts it
	case KindUnimplemented:
		return http.StatusNotImplemented
	case KindUnauthenticated:
		return http.StatusUnauthorized
	case KindPermissionDenied:
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

// KindFromHTTPStatus classifies an HTTP status received from an upstream
// runtime, so that its error keeps its meaning through the gateway. A
// runtime's 401 or 403 is internal: it refused the gateway, not the
// client, whose credentials the gateway has already accepted.
func KindFromHTTPStatus(code int) Kind {
	switch code {
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return KindInvalidArgument
	case http.StatusNotFound:
		return KindNotFound
	case http.StatusServiceUnavailable, http.StatusBadGateway:
		return KindUnavailable
	case http.StatusGatewayTimeout, http.StatusRequestTimeout:
		return KindDeadlineExceeded
	case http.StatusTooManyRequests:
		return KindResourceExhausted
	case http.StatusRequestEntityTooLarge:
		return KindTooLarge
	case http.StatusNotImplemented:
		return KindUnimplemented
	case 499:
		return KindCanceled
	}
	return KindInternal
}

// GRPCCode is the one mapping from an error to a gRPC status code.
func GRPCCode(err error) codes.Code {
	switch KindOf(err) {
	case KindInvalidArgument:
		return codes.InvalidArgument
	case KindNotFound:
		return codes.NotFound
	case KindUnavailable:
		return codes.Unavailable
	case KindDeadlineExceeded:
		return codes.DeadlineExceeded
	case KindResourceExhausted, KindTooLarge:
		return codes.ResourceExhausted
	case KindCanceled:
		return codes.Canceled
	case KindUnimplemented:
		return codes.Unimplemented
	case KindUnauthenticated:
		return codes.Unauthenticated
	case KindPermissionDenied:
		return codes.PermissionDenied
	}
	return codes.Internal
}

// GRPCStatus converts err to a gRPC status error carrying its message.
func GRPCStatus(err error) error {
	if err == nil {
		return nil
	}
	return status.Error(GRPCCode(err), Message(err))
}

// kindFromCode classifies a gRPC code received from upstream, as
// KindFromHTTPStatus does an HTTP status: UNAUTHENTICATED and
// PERMISSION_DENIED from a runtime are internal.
func kindFromCode(c codes.Code) Kind {
	switch c {
	case codes.InvalidArgument, codes.OutOfRange, codes.FailedPrecondition:
		return KindInvalidArgument
	case codes.NotFound:
		return KindNotFound
	case codes.Unavailable:
		return KindUnavailable
	case codes.DeadlineExceeded:
		return KindDeadlineExceeded
	case codes.ResourceExhausted:
		return KindResourceExhausted
	case codes.Canceled:
		return KindCanceled
	case codes.Unimplemented:
		return KindUnimplemented
	}
	return KindInternal
}

// AppendErrorJSON appends the protocol's error body {"error": "..."} for err.
func AppendErrorJSON(dst []byte, err error) []byte {
	dst = append(dst, `{"error":`...)
	dst = AppendJSONString(dst, Message(err))
	return append(dst, '}')
}
