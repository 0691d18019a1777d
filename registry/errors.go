package registry

import (
	"context"
	"errors"
	"fmt"
)

// Code classifies a registry error for the API layer, which maps each code
// to one HTTP status (and gRPC code) in one place. The intended HTTP status
// is given with each code.
type Code uint8

// The error codes.
const (
	// CodeInternal: a bug or an unexpected store or file-system failure (500).
	CodeInternal Code = iota
	// CodeInvalidArgument: the request is malformed: a name that breaks the
	// naming rule, a bad reference, a digest that does not match the bytes,
	// an upload cut off half way (400).
	CodeInvalidArgument
	// CodeNotFound: a named model, version, artifact or alias does not exist (404).
	CodeNotFound
	// CodeAlreadyExists: a model of that name exists already (409).
	CodeAlreadyExists
	// CodeConflict: the request conflicts with the target's state: archiving a
	// version in use, adding artifacts to a version that is no longer
	// PENDING, resolving a version that is not READY or is archived (409).
	CodeConflict
	// CodeFailedPrecondition: an If-Match etag is stale (412).
	CodeFailedPrecondition
	// CodeTooLarge: an artifact exceeds Options.MaxArtifactBytes (413).
	CodeTooLarge
	// CodeUnavailable: the store is locked by another process past the busy
	// timeout, unreachable, or the caller's context ended (503).
	CodeUnavailable
	// CodeInsufficientStorage: the disk holding the store or the artifacts
	// is full (507).
	CodeInsufficientStorage
	// CodeDataLoss: a stored artifact no longer matches its digest, or the
	// store file is corrupt (500).
	CodeDataLoss
)

var codeNames = [...]string{
	CodeInternal:            "Internal",
	CodeInvalidArgument:     "InvalidArgument",
	CodeNotFound:            "NotFound",
	CodeAlreadyExists:       "AlreadyExists",
	CodeConflict:            "Conflict",
	CodeFailedPrecondition:  "FailedPrecondition",
	CodeTooLarge:            "TooLarge",
	CodeUnavailable:         "Unavailable",
	CodeInsufficientStorage: "InsufficientStorage",
	CodeDataLoss:            "DataLoss",
}

// String returns the code's name, as the API puts it in {"code": ...}.
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("Code(%d)", uint8(c))
}

// Error is the one error type of package registry. Msg names the entity, the
// field and the value at fault and is fit to show to a client; Err, when
// set, is the cause (errors.Unwrap reaches it).
//
// errors.Is(err, ErrNotFound) (and the other Err* sentinels) matches any
// *Error of that code.
type Error struct {
	Code Code
	Msg  string
	Err  error

	// msgHasCause is set by errorf, whose Msg already holds Err's text.
	msgHasCause bool
}

// Error returns Msg, followed by the cause when there is one.
func (e *Error) Error() string {
	if e.Err == nil || e.msgHasCause {
		return e.Msg
	}
	if e.Msg == "" {
		return e.Err.Error()
	}
	return e.Msg + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is a sentinel *Error (no message) of the same
// code, so that errors.Is(err, registry.ErrNotFound) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Msg == "" && t.Err == nil && t.Code == e.Code
}

// Sentinels for errors.Is; they match every *Error of their code.
var (
	ErrInvalidArgument     = &Error{Code: CodeInvalidArgument}
	ErrNotFound            = &Error{Code: CodeNotFound}
	ErrAlreadyExists       = &Error{Code: CodeAlreadyExists}
	ErrConflict            = &Error{Code: CodeConflict}
	ErrFailedPrecondition  = &Error{Code: CodeFailedPrecondition}
	ErrTooLarge            = &Error{Code: CodeTooLarge}
	ErrUnavailable         = &Error{Code: CodeUnavailable}
	ErrInsufficientStorage = &Error{Code: CodeInsufficientStorage}
	ErrDataLoss            = &Error{Code: CodeDataLoss}
)

// CodeOf returns the code of the first *Error in err's chain. A context's
// error (cancelled or past its deadline) is CodeUnavailable; any other error
// is CodeInternal, and nil is CodeInternal too (callers check nil first).
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return CodeUnavailable
	}
	return CodeInternal
}

// errorf returns an *Error of code c with a formatted message; a %w verb
// keeps the cause reachable (its text is then part of Msg already).
func errorf(c Code, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	cause := errors.Unwrap(err)
	return &Error{Code: c, Msg: err.Error(), Err: cause, msgHasCause: cause != nil}
}
