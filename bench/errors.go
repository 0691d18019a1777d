package bench

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"syscall"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc/status"
)

// StatusError is the error of a REST answer whose status was not the one
// expected.
type StatusError struct {
	// Code is the HTTP status received.
	Code int
	// Message is the start of the server's {"error": ...} message, at most
	// MaxErrorMessage characters, or empty when the body held none.
	Message string
}

func (e *StatusError) Error() string {
	if e.Message == "" {
		return "bench: HTTP status " + strconv.Itoa(e.Code)
	}
	return "bench: HTTP status " + strconv.Itoa(e.Code) + ": " + e.Message
}

// MaxErrorMessage bounds the characters of a server's error message kept to
// tell errors apart: enough to read the cause, short enough that messages
// quoting a request's values still fall into a few kinds.
const MaxErrorMessage = 100

// statusError builds the StatusError for a non-200 answer. It runs on the
// error path only, so it may allocate.
func statusError(code int, body []byte) *StatusError {
	e := &StatusError{Code: code}
	var m struct {
		Error string `json:"error"`
	}
	if len(body) > 0 && body[0] == '{' && json.Unmarshal(body, &m) == nil {
		e.Message = truncate(m.Error, MaxErrorMessage)
	}
	return e
}

// truncate cuts s to at most n characters, on a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i, count := 0, 0
	for i < len(s) && count < n {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
		count++
	}
	if i >= len(s) {
		return s
	}
	return s[:i] + "..."
}

// ErrorKind returns the kind an error is counted under: the HTTP status and
// the start of the server's message ("HTTP 404: model \"x\" not found"), the
// gRPC code and message ("gRPC Unavailable: ..."), a timeout, or the kind of
// a connection failure ("connection refused", "connection reset",
// "connection closed"). Messages are cut to MaxErrorMessage characters.
func ErrorKind(err error) string {
	var se *StatusError
	if errors.As(err, &se) {
		if se.Message == "" {
			return "HTTP " + strconv.Itoa(se.Code)
		}
		return "HTTP " + strconv.Itoa(se.Code) + ": " + se.Message
	}
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return "no free connection"
	}
	if s, ok := status.FromError(err); ok {
		return "gRPC " + s.Code().String() + ": " + truncate(s.Message(), MaxErrorMessage)
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return "dial: " + truncate(op.Err.Error(), MaxErrorMessage)
	}
	return truncate(err.Error(), MaxErrorMessage)
}

// ErrorCount is how many requests failed with one kind of error.
type ErrorCount struct {
	Kind  string `json:"kind"`
	Count int64  `json:"count"`
}

// maxErrorKinds bounds the kinds a run tells apart; further kinds are
// counted under otherErrors.
const (
	maxErrorKinds = 32
	otherErrors   = "other errors"
)

// errorTally counts errors by kind. The map is made at the first error, so
// a run without errors never touches it.
type errorTally map[string]int64

func (t *errorTally) add(kind string, n int64) {
	if *t == nil {
		*t = make(errorTally)
	}
	if _, ok := (*t)[kind]; !ok && len(*t) >= maxErrorKinds {
		kind = otherErrors
	}
	(*t)[kind] += n
}

// sorted returns the counts, most frequent first, then by kind.
func (t errorTally) sorted() []ErrorCount {
	if len(t) == 0 {
		return nil
	}
	out := make([]ErrorCount, 0, len(t))
	for k, n := range t {
		out = append(out, ErrorCount{Kind: k, Count: n})
	}
	slices.SortFunc(out, func(a, b ErrorCount) int {
		if a.Count != b.Count {
			if a.Count > b.Count {
				return -1
			}
			return 1
		}
		if a.Kind < b.Kind {
			return -1
		}
		if a.Kind > b.Kind {
			return 1
		}
		return 0
	})
	return out
}
