package tracing

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"

	"go.opentelemetry.io/otel/trace"
)

// HeaderTraceParent and HeaderTraceState are the W3C Trace Context header
// names, lower case as gRPC metadata keys must be (HTTP matches them
// without regard to case).
const (
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
)

// TraceParentLen is the length of a version 00 traceparent value, the only
// version this package writes.
const TraceParentLen = 55

// Trace flags this package understands: sampled (Level 1) and random
// trace-id (Level 2). Other bits are ignored on input and written as zero.
const (
	FlagSampled = trace.FlagsSampled
	FlagRandom  = trace.FlagsRandom
)

// TraceParent is a parsed W3C traceparent: the trace, the caller's span
// (the header's parent-id) and the trace flags.
type TraceParent struct {
	TraceID trace.TraceID
	SpanID  trace.SpanID
	Flags   trace.TraceFlags
}

// ErrInvalidTraceParent is what ParseTraceParent's errors wrap: the header
// is to be ignored and the trace restarted, with the tracestate ignored
// too, as the specification says.
var ErrInvalidTraceParent = errors.New("tracing: invalid traceparent")

var (
	errShort       = fmt.Errorf("%w: shorter than 55 characters", ErrInvalidTraceParent)
	errVersion     = fmt.Errorf("%w: version is not two lower-case hex digits other than ff", ErrInvalidTraceParent)
	errV00Length   = fmt.Errorf("%w: version 00 is exactly 55 characters", ErrInvalidTraceParent)
	errFuture      = fmt.Errorf("%w: a later version's flags are not followed by the end or '-'", ErrInvalidTraceParent)
	errDelimiter   = fmt.Errorf("%w: fields are not separated by '-'", ErrInvalidTraceParent)
	errTraceID     = fmt.Errorf("%w: trace-id is not 32 lower-case hex digits", ErrInvalidTraceParent)
	errZeroTraceID = fmt.Errorf("%w: trace-id is all zeros", ErrInvalidTraceParent)
	errSpanID      = fmt.Errorf("%w: parent-id is not 16 lower-case hex digits", ErrInvalidTraceParent)
	errZeroSpanID  = fmt.Errorf("%w: parent-id is all zeros", ErrInvalidTraceParent)
	errFlags       = fmt.Errorf("%w: trace-flags is not two lower-case hex digits", ErrInvalidTraceParent)
)

// ParseTraceParent parses a traceparent header value as fasthttp hands it
// (the bytes are not retained). It follows W3C Trace Context: version 00 is
// exactly "00-<32 hex>-<16 hex>-<2 hex>" in lower-case hex with non-zero
// ids; version ff is invalid; a later version is parsed for its first four
// fields when it is at least 55 characters long and the flags are followed
// by the end or '-'. Of the flags it keeps sampled and random (only sampled
// from a later version). Leading and trailing spaces and tabs (HTTP's
// optional white space) are ignored. It does not allocate; the error wraps
// ErrInvalidTraceParent.
func ParseTraceParent(b []byte) (TraceParent, error) { return parseTraceParent(b) }

// ParseTraceParentString is ParseTraceParent for a gRPC metadata value.
func ParseTraceParentString(s string) (TraceParent, error) { return parseTraceParent(s) }

func parseTraceParent[T ~string | ~[]byte](s T) (TraceParent, error) {
	var tp TraceParent
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	if len(s) < TraceParentLen {
		return tp, errShort
	}
	version, ok := hexByte(s[0], s[1])
	if !ok || version == 0xff {
		return tp, errVersion
	}
	switch {
	case version == 0 && len(s) != TraceParentLen:
		return tp, errV00Length
	case len(s) > TraceParentLen && s[TraceParentLen] != '-':
		return tp, errFuture
	case s[2] != '-' || s[35] != '-' || s[52] != '-':
		return tp, errDelimiter
	}
	if !decodeHex(tp.TraceID[:], s[3:35]) {
		return tp, errTraceID
	}
	if !tp.TraceID.IsValid() {
		return tp, errZeroTraceID
	}
	if !decodeHex(tp.SpanID[:], s[36:52]) {
		return tp, errSpanID
	}
	if !tp.SpanID.IsValid() {
		return tp, errZeroSpanID
	}
	flags, ok := hexByte(s[53], s[54])
	if !ok {
		return tp, errFlags
	}
	known := FlagSampled | FlagRandom
	if version != 0 {
		known = FlagSampled
	}
	tp.Flags = trace.TraceFlags(flags) & known
	return tp, nil
}

// decodeHex decodes lower-case hex src (twice len(dst) bytes) into dst.
func decodeHex[T ~string | ~[]byte](dst []byte, src T) bool {
	for i := range dst {
		b, ok := hexByte(src[2*i], src[2*i+1])
		if !ok {
			return false
		}
		dst[i] = b
	}
	return true
}

// hexByte decodes two lower-case hex digits.
func hexByte(hi, lo byte) (byte, bool) {
	h, ok1 := hexDigit(hi)
	l, ok2 := hexDigit(lo)
	return h<<4 | l, ok1 && ok2
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

const hexDigits = "0123456789abcdef"

// AppendTo appends tp as a version 00 traceparent value (TraceParentLen
// bytes, flags other than sampled and random cleared) to dst. It does not
// allocate when dst has room.
func (tp TraceParent) AppendTo(dst []byte) []byte {
	dst = append(dst, '0', '0', '-')
	dst = appendHex(dst, tp.TraceID[:])
	dst = append(dst, '-')
	dst = appendHex(dst, tp.SpanID[:])
	f := byte(tp.Flags & (FlagSampled | FlagRandom))
	return append(dst, '-', hexDigits[f>>4], hexDigits[f&0xf])
}

// String returns tp as a traceparent value.
func (tp TraceParent) String() string {
	var b [TraceParentLen]byte
	return string(tp.AppendTo(b[:0]))
}

// Sampled reports whether the caller sampled the trace.
func (tp TraceParent) Sampled() bool { return tp.Flags.IsSampled() }

// Child returns the traceparent a span of tp's trace with id span sends
// on: same trace and flags, span as the parent-id.
func (tp TraceParent) Child(span trace.SpanID) TraceParent {
	tp.SpanID = span
	return tp
}

func appendHex(dst, src []byte) []byte {
	for _, b := range src {
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xf])
	}
	return dst
}

// NewSpanID returns a random non-zero span id. It does not allocate.
func NewSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		binary.LittleEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}

// NewTraceID returns a random non-zero trace id (all 128 bits random, so a
// traceparent that carries it may set FlagRandom). It does not allocate.
func NewTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		binary.LittleEndian.PutUint64(id[:8], rand.Uint64())
		binary.LittleEndian.PutUint64(id[8:], rand.Uint64())
	}
	return id
}
