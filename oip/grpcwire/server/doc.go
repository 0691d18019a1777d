// Package server is a gRPC server transport on HTTP/2 (prior knowledge,
// on cleartext or TLS connections) for the part of *grpc.Server's API that infergate's gateway
// uses: services registered with RegisterService (generated Register
// functions, grpc's health and reflection services), Serve, GracefulStop
// and Stop, with the options the gateway passes to grpc.NewServer
// (Options). Handlers written for grpc-go run on it unchanged: unary
// methods get their generated handlers, stream methods a grpc.ServerStream,
// and grpc.SetHeader, SendHeader, SetTrailer, Method, metadata and peer
// lookups work in their contexts.
//
// It owns the HTTP/2 framing (frames read from a buffered reader and
// written by hand), HPACK (golang.org/x/net/http2/hpack), flow control
// with fixed windows, the gRPC message framing and status trailers, and
// the connections' lifetimes (handshake timeout, idle close, graceful
// two-step GOAWAY, keepalive-ping enforcement). It answers malformed
// requests as grpc-go does (HTTP 415 for a request that is not gRPC, 405
// for a method other than POST, RST_STREAM or GOAWAY for HTTP/2 errors)
// and never panics on a client's bytes (FuzzServeConn).
//
// Costs: one goroutine per connection reads and handles its frames; calls
// run on a pool of worker goroutines that keep their stacks; answers are
// written by the handlers themselves through the connection's buffer,
// whose flushes combine (see writer). A unary call through oip.Codec costs
// about 7 allocations in the transport (BenchmarkRawClient).
//
// It serves any net.Conn: for TLS, serve a tls.NewListener (with ALPN
// "h2"). A *tls.Conn's handshake is then part of the connection's start,
// within ConnectionTimeout, and handlers find the client's certificates in
// peer.FromContext's AuthInfo, a credentials.TLSInfo as grpc-go's TLS
// credentials make it.
//
// It never does HTTP/1.1 or h2c upgrade, server push, interceptors,
// stats handlers, channelz, binary logging, or compression of answers
// (gzip requests are read); it has no metrics and logs nothing.
package server
