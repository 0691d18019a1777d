// Package grpcwire holds what gRPC puts on HTTP/2 beside the frames
// themselves, shared by the gateway's own gRPC transport (its server, in
// grpcwire/server, and its client to runtimes, in grpcwire/client): the
// length prefix of a message, the grpc-timeout header and the
// percent-encoded grpc-message trailer, as gRPC's PROTOCOL-HTTP2 spec
// writes them.
//
// It does no I/O and allocates only what it returns.
package grpcwire

import (
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"time"
)

// PrefixLen is the length of a message's prefix: a compressed flag byte
// and a big-endian 4-byte length.
const PrefixLen = 5

// Common header values.
const (
	ContentType = "application/grpc"
	// MethodModelInfer is the :path of OIP's ModelInfer.
	MethodModelInfer = "/inference.GRPCInferenceService/ModelInfer"
)

// AppendPrefix appends the prefix of an n-byte message to dst.
func AppendPrefix(dst []byte, n int, compressed bool) []byte {
	var flag byte
	if compressed {
		flag = 1
	}
	return binary.BigEndian.AppendUint32(append(dst, flag), uint32(n))
}

// ParsePrefix reads a message prefix from the first PrefixLen bytes of b.
func ParsePrefix(b []byte) (compressed bool, n uint32, err error) {
	if len(b) < PrefixLen {
		return false, 0, errors.New("grpcwire: short message prefix")
	}
	switch b[0] {
	case 0:
	case 1:
		compressed = true
	default:
		return false, 0, errors.New("grpcwire: message prefix has an unknown flag")
	}
	return compressed, binary.BigEndian.Uint32(b[1:PrefixLen]), nil
}

// The units of grpc-timeout, largest first.
var timeoutUnits = [...]struct {
	unit byte
	d    time.Duration
}{{'H', time.Hour}, {'M', time.Minute}, {'S', time.Second}, {'m', time.Millisecond}, {'u', time.Microsecond}, {'n', time.Nanosecond}}

// maxTimeoutDigits is the spec's bound on grpc-timeout's digits.
const maxTimeoutDigits = 8

// EncodeTimeout writes d as a grpc-timeout value: at most 8 digits, in
// the finest unit that holds it, rounded up so that the peer never sees
// less time than was left. A d of zero or less is one nanosecond.
func EncodeTimeout(d time.Duration) string { return string(AppendTimeout(nil, d)) }

// AppendTimeout appends d to dst as EncodeTimeout writes it, allocating
// nothing when dst has room.
func AppendTimeout(dst []byte, d time.Duration) []byte {
	if d <= 0 {
		return append(dst, '1', 'n')
	}
	for i := len(timeoutUnits) - 1; i >= 0; i-- {
		u := timeoutUnits[i]
		if v := (d + u.d - 1) / u.d; v < 1e8 {
			return append(strconv.AppendInt(dst, int64(v), 10), u.unit)
		}
	}
	return append(dst, "99999999H"...)
}

// DecodeTimeout reads a grpc-timeout value.
func DecodeTimeout(s string) (time.Duration, error) {
	if len(s) < 2 || len(s)-1 > maxTimeoutDigits {
		return 0, errors.New("grpcwire: malformed grpc-timeout " + strconv.Quote(s))
	}
	unit := s[len(s)-1]
	var d time.Duration
	for _, u := range timeoutUnits {
		if u.unit == unit {
			d = u.d
		}
	}
	v, err := strconv.ParseUint(s[:len(s)-1], 10, 64)
	if d == 0 || err != nil {
		return 0, errors.New("grpcwire: malformed grpc-timeout " + strconv.Quote(s))
	}
	if v > uint64(math.MaxInt64/int64(d)) {
		return math.MaxInt64, nil
	}
	return time.Duration(v) * d, nil
}

// EncodeMessage percent-encodes a status message for grpc-message: bytes
// outside printable ASCII, and '%', become %XX.
func EncodeMessage(msg string) string {
	n := 0
	for i := 0; i < len(msg); i++ {
		if needsEscape(msg[i]) {
			n++
		}
	}
	if n == 0 {
		return msg
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(msg)+2*n)
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if needsEscape(c) {
			b = append(b, '%', hex[c>>4], hex[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

func needsEscape(c byte) bool { return c < ' ' || c > '~' || c == '%' }

// DecodeMessage reverses EncodeMessage. A malformed escape is kept as it
// is, as the spec asks.
func DecodeMessage(s string) string {
	i := 0
	for i < len(s) && s[i] != '%' {
		i++
	}
	if i == len(s) {
		return s
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b = append(b, byte(v))
				i += 2
				continue
			}
		}
		b = append(b, s[i])
	}
	return string(b)
}
