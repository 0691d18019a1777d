// Package runtimes owns the model-server side of the request path: clients
// that speak OIP over REST (fasthttp) and gRPC to a runtime replica, and the
// pool of replicas behind one model with its readiness probing and replica
// choice. Starting and watching local runtime processes is
// runtimes/supervisor's (with the process start itself, process.go); the
// built-in model server lives in runtimes/modelserver and its ONNX engine in
// runtimes/onnx; the hashing of sticky keys, shared with the router, in
// internal/keyhash.
//
// A pool keeps calls off sick replicas (per-replica circuit breaker,
// outlier ejection) only while a healthy one is left: when none of its
// ready replicas is healthy it routes to them all the same (panic routing,
// panic.go), so that the runtimes' own answers reach the caller. A
// runtime's client-error answers (HTTP 4xx, gRPC codes that blame the
// request) never count against a replica.
//
// The clients' errors may reach the gateway's clients: they name a replica
// by the client's Name, never by its address, and keep the transport's own
// words (which name addresses) for Detail, which is for logs.
//
// ModelInferRaw, the gRPC pass-through, uses the gateway's own unary
// HTTP/2 client (oip/grpcwire/client: one allocation per call); the other
// gRPC calls use grpc-go's.
//
// runtimes never decides which revision a request goes to (router) nor when
// it may go (activator), and it never imports client-go.
//
// Metrics (registered by the gateway on its injected registerer, labelled
// per model): infergate_runtime_upstream_requests_total and
// infergate_runtime_upstream_duration_seconds; and from Pool.Stats, read at
// scrape time, retries, ejections, breakers and the calls sent in panic
// (infergate_runtime_panic_routed_total).
package runtimes
