package runtimes

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infergate/infergate/oip"
)

// Protocol is the wire protocol a runtime replica speaks.
type Protocol uint8

// The protocols a runtime replica can speak.
const (
	REST     Protocol = iota + 1 // OIP over HTTP/1.1
	GRPC                         // OIP over gRPC
	KServeV1                     // KServe v1 (instances/predictions) over HTTP/1.1
)

func (p Protocol) String() string {
	switch p {
	case REST:
		return "rest"
	case GRPC:
		return "grpc"
	case KServeV1:
		return "kserve-v1"
	}
	return fmt.Sprintf("Protocol(%d)", uint8(p))
}

// Client is a connection to one runtime replica. It is the extension point
// for runtime kinds, so it stays small; protocol-specific fast paths are
// optional one-method interfaces (Forwarder, RawInferer) that a client
// has or not.
//
// Every method honours ctx's deadline. Errors are *oip.Error values whose
// kind tells unavailable (the replica could not be reached) from errors the
// runtime returned.
type Client interface {
	// ModelReady reports whether the runtime serves the model now.
	ModelReady(ctx context.Context, model, version string) (bool, error)
	// ModelMetadata asks the runtime for the model's metadata.
	ModelMetadata(ctx context.Context, model, version string) (*oip.ModelMetadata, error)
	// Infer runs one decoded inference.
	Infer(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error)
	// Close releases the client's connections.
	Close() error
}

// Forwarder is a Client that passes a REST inference request through as
// bytes (method, path, headers and body), with the answer read into resp
// as the runtime wrote it: the gateway's REST pass-through. Errors are
// transport errors only; an HTTP error status is a normal answer.
// RESTClient is one.
type Forwarder interface {
	Forward(req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) error
}

// RawInferer is a Client that passes an encoded gRPC ModelInferRequest
// through and returns the encoded answer, decoding neither: the gateway's
// gRPC pass-through. GRPCClient is one.
type RawInferer interface {
	ModelInferRaw(ctx context.Context, req *oip.RawFrame) (*oip.RawFrame, error)
}

// resender is a Client that may have sent a call it reports unavailable
// (a pipelining RESTClient): such a call is never resent.
type resender interface {
	mayHaveSent() bool
}

// ErrUnreachable is in the chain of an error for a call that never reached
// its replica: a pool may send such a call to another replica.
var ErrUnreachable = errors.New("unreachable")

// defaultReplicaName is how a client's errors name its replica when its
// options give no Name.
const defaultReplicaName = "runtime"

// Errors and what they show. A client's errors may reach the gateway's
// clients, so their text (oip.Message) names the replica by the client's
// Name and never by its address, which is internal. A transport failure
// says what happened in a few words ("connection refused"); the
// transport's own error, which names addresses, stays in the chain for
// errors.Is and errors.As, and Detail adds its text for logs.

// unavailable wraps err, a failure to reach the replica named name, as an
// unavailable, unreachable error.
func unavailable(name string, err error) error {
	return &oip.Error{Kind: oip.KindUnavailable, Msg: name + " could not be reached",
		Err: &transportError{what: transportCause(err), err: fmt.Errorf("%w: %w", ErrUnreachable, err)}}
}

// transportError is the cause of an *oip.Error for a call that failed in
// transport: its text is what a client may read, with no address; err is
// the transport's own error.
type transportError struct {
	what string
	err  error
}

func (e *transportError) Error() string { return e.what }
func (e *transportError) Unwrap() error { return e.err }

// Detail returns err's text followed by what it leaves out of a transport
// failure: the transport's own error, which names the replica's address.
// It is for logs and the admin API, never for a client; err.Error() is
// what a client may read.
func Detail(err error) string {
	if err == nil {
		return ""
	}
	var te *transportError
	if !errors.As(err, &te) {
		return err.Error()
	}
	return err.Error() + " (" + te.err.Error() + ")"
}

// transportCause says in a few words, with no address, what err, a
// transport's error, means.
func transportCause(err error) string {
	var op *net.OpError
	if he, ok := errors.AsType[*tlsHandshakeError](err); ok {
		return he.cause()
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "connection broken"
	case errors.Is(err, fasthttp.ErrDialTimeout):
		return "connect timed out"
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return "no free connection"
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, os.ErrDeadlineExceeded):
		return "timed out"
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed before an answer"
	case errors.As(err, &op) && op.Op == "dial":
		return "connect failed"
	}
	return "transport error"
}

// answerError is the cause of an *oip.Error made from a runtime's own
// error answer: the runtime's message, and what the answer says about the
// replica's health. An answer with a client-error status (HTTP 4xx, or a
// gRPC code that blames the request) never counts against the replica,
// whatever error kind its status maps to (a 403 or a 409 is internal to
// the protocol's kinds, yet says the request, not the runtime, is at
// fault).
type answerError struct {
	msg     string
	outcome outcome
}

func (e *answerError) Error() string { return e.msg }

// answered returns the error for a runtime's answer of kind k with msg,
// which says o about the replica.
func answered(k oip.Kind, msg string, o outcome) error {
	return &oip.Error{Kind: k, Err: &answerError{msg: msg, outcome: o}}
}

// httpOutcome is what an error status code says about the replica that
// answered it.
func httpOutcome(code int) outcome {
	switch {
	case code == 408, code == 429, code == 499:
		// Too slow a client, load shed, or a client gone: nothing either
		// way.
		return outcomeNeutral
	case code >= 400 && code < 500:
		return outcomeOK
	}
	return classifyKind(oip.KindFromHTTPStatus(code))
}

// tlsHandshakeTimeout bounds a TLS handshake dialled without a deadline.
const tlsHandshakeTimeout = 10 * time.Second

// clientTLS returns the TLS configuration for dialling addr with ALPN
// proto: a copy of cfg (nil: the system's roots), with ServerName set to
// addr's host when empty.
func clientTLS(cfg *tls.Config, addr, proto string) *tls.Config {
	if cfg == nil {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	} else {
		cfg = cfg.Clone()
	}
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	cfg.NextProtos = []string{proto}
	return cfg
}

// handshakeTLS does the client's TLS handshake on conn, closing conn if it
// fails, by deadline (tlsHandshakeTimeout from now if zero).
func handshakeTLS(conn net.Conn, cfg *tls.Config, addr string, deadline time.Time) (net.Conn, error) {
	if deadline.IsZero() {
		deadline = time.Now().Add(tlsHandshakeTimeout)
	}
	tc := tls.Client(conn, cfg)
	_ = tc.SetDeadline(deadline)
	if err := tc.Handshake(); err != nil {
		_ = conn.Close()
		return nil, &tlsHandshakeError{addr: addr, err: err}
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}

// tlsHandshakeError is a TLS handshake with a runtime that failed: the
// call was not sent.
type tlsHandshakeError struct {
	addr string
	err  error
}

func (e *tlsHandshakeError) Error() string {
	return "TLS handshake with " + e.addr + ": " + e.err.Error()
}
func (e *tlsHandshakeError) Unwrap() error { return e.err }

// cause says what went wrong in a few words, naming no address or name
// from the certificate.
func (e *tlsHandshakeError) cause() string {
	var (
		ci x509.CertificateInvalidError
		op *net.OpError
	)
	switch {
	case errors.As(e.err, new(x509.UnknownAuthorityError)):
		return "TLS handshake failed: the runtime's certificate is signed by an unknown authority"
	case errors.As(e.err, new(x509.HostnameError)):
		return "TLS handshake failed: the runtime's certificate is not valid for its address"
	case errors.As(e.err, &ci) && ci.Reason == x509.Expired:
		return "TLS handshake failed: the runtime's certificate has expired or is not yet valid"
	case errors.As(e.err, &ci):
		return "TLS handshake failed: the runtime's certificate is not valid"
	case errors.As(e.err, new(tls.RecordHeaderError)):
		return "TLS handshake failed: the runtime does not speak TLS"
	case errors.Is(e.err, os.ErrDeadlineExceeded):
		return "TLS handshake timed out"
	case errors.As(e.err, &op) && op.Op == "remote error":
		return "TLS handshake refused by the runtime"
	case errors.Is(e.err, io.EOF), errors.Is(e.err, syscall.ECONNRESET):
		return "TLS handshake failed: the runtime closed the connection"
	}
	return "TLS handshake failed"
}
