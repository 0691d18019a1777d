// Package gateway owns infergate's front doors: OIP over REST on fasthttp
// and OIP over gRPC (with grpc.health.v1 and server reflection), and the
// admin handler (/metrics, /debug/pprof). Both front doors share one path to
// the runtimes: look the model up in an immutable route table, give the
// request a deadline, and hand it to the model's runtime pool.
//
// The fast path is pass-through: a REST request bound for a REST runtime is
// forwarded as bytes, never decoded, and a gRPC request for a gRPC runtime
// is forwarded as the message it arrived as. The gateway decodes only to
// translate between protocols.
//
// gateway never loads models, reads config files or starts processes: cmd
// wires those and hands it routes.
//
// Metrics, on the injected registerer:
//   - infergate_gateway_requests_total{model,protocol,code}
//   - infergate_gateway_request_duration_seconds{model,protocol}
//   - infergate_runtime_upstream_requests_total{model,code}
//   - infergate_runtime_upstream_duration_seconds{model}
package gateway
