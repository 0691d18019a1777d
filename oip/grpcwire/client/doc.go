// Package client is a lean unary gRPC client over HTTP/2 (cleartext with
// prior knowledge, or TLS with ALPN h2) for one runtime address: the
// gateway's hot upstream call, ModelInfer forwarded as bytes, without
// grpc-go's per-call stream machinery.
//
// A Client multiplexes calls on HTTP/2 connections that it dials lazily.
// It opens another connection when every open one is at the peer's
// SETTINGS_MAX_CONCURRENT_STREAMS or has received GOAWAY (up to
// Options.MaxConns; beyond that a call waits for a stream), and dials
// again after a connection fails. Each connection has one read goroutine
// that dispatches frames to the calls; there is no writer goroutine and
// no goroutine per call. A call writes its own HEADERS and DATA into the
// connection's buffer under its write lock; the writer that leaves the
// lock last owes the flush, yields once so that the calls the read
// goroutine has just answered add their next requests, and then flushes
// them all in one write (the read goroutine's own frames, PING and
// SETTINGS acks and WINDOW_UPDATEs, wait for its next read that would
// block). The peer's SETTINGS, flow-control windows both ways,
// CONTINUATION, PING and GOAWAY are honoured; a write the peer does not
// take within Options.WriteTimeout fails the connection.
//
// Every error Invoke returns is a gRPC status error (google.golang.org/
// grpc/status): UNAVAILABLE for a call that could not be sent or whose
// connection failed (a stream the peer refused or left above a GOAWAY's
// last stream is UNAVAILABLE too: it was not processed); the context's
// DEADLINE_EXCEEDED or CANCELED (the stream is reset with CANCEL); the
// runtime's own grpc-status and percent-decoded grpc-message; and
// INTERNAL or RESOURCE_EXHAUSTED for answers the client cannot accept.
// Messages of UNAVAILABLE errors name the address, for logs.
//
// It does unary calls only, with uncompressed messages, over TCP, or TLS
// when Options.TLSConfig is set (the handshake is part of dialling; a
// failed one is UNAVAILABLE). It has no metrics, logs nothing, and
// allocates per call only the response message's bytes.
package client
