// Package runtimes owns the model-server side of the request path: clients
// that speak OIP over REST (fasthttp) and gRPC to a runtime replica, the pool
// of replicas behind one model with its readiness probing and replica choice,
// and the starting of local runtime processes. The built-in model server
// lives in runtimes/modelserver and its ONNX engine in runtimes/onnx.
//
// runtimes never decides which revision a request goes to (router) nor when
// it may go (activator), and it never imports client-go.
//
// Metrics (registered by the gateway on its injected registerer, labelled
// per model): infergate_runtime_upstream_requests_total and
// infergate_runtime_upstream_duration_seconds.
package runtimes
