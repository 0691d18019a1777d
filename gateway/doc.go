// Package gateway owns infergate's front doors: OIP over REST on fasthttp
// and OIP over gRPC (with grpc.health.v1 and server reflection), and the
// admin handler (/metrics, /debug/pprof). Both front doors share one path to
// the runtimes: ask the router (an immutable table swapped atomically by
// SetModels) which revision takes the request, give the request a
// deadline, wait in the revision's activator if it has no ready replica,
// and hand the request to its batcher or its replica pool; mirror a copy
// when the router draws one.
//
// The fast path is pass-through: a REST request bound for a REST runtime is
// forwarded as bytes, never decoded, and a gRPC request for a gRPC runtime
// is forwarded as the message it arrived as. The gateway decodes only to
// translate between protocols, to batch, and to mirror.
//
// The front doors face floods and broken clients (see Options): every
// listener, the admin port's too (ServeAdmin), is capped and survives
// accept errors (package netlimit); silent or slow clients are timed out
// (408), oversized headers refused (431); a bound on the request bytes in
// flight (REST bodies taken from their Content-Length before they are
// read) answers 503 with Retry-After (gRPC RESOURCE_EXHAUSTED) past it;
// error answers never repeat the request; a path or name that would route
// differently once decoded ('/' or "..") is refused with 400. The drain
// at shutdown is bounded: past DrainTimeout the requests still waiting
// for a runtime are answered (503, UNAVAILABLE), and every connection
// still open is closed a second later at most. SetMemoryLimit sets the process's soft memory limit.
//
// Every inference request tells where its time went (observe.go): its
// answer carries Server-Timing (REST header, gRPC trailing metadata) with
// the stages that happened (fair queue, activator hold, batch wait,
// upstream call); with Options.Tracer its W3C trace context is continued,
// passed to the runtime and, when sampled, exported as OpenTelemetry
// spans (package tracing); with Options.Payloads the models SetPayloadLogs
// names have their payloads logged as KServe's logger does (package
// payloadlog). With neither, the REST pass-through still allocates
// nothing, Server-Timing included.
//
// gateway never loads models, reads config files or starts processes: cmd
// wires those and hands it revisions with their routes.
//
// Metrics, on the injected registerer, per model and revision:
//   - infergate_gateway_requests_total{model,revision,protocol,code}
//   - infergate_gateway_request_duration_seconds{model,revision,protocol}
//   - infergate_gateway_in_flight_requests{model,revision}
//   - infergate_runtime_upstream_requests_total{model,revision,code}
//   - infergate_runtime_upstream_duration_seconds{model,revision}
//   - infergate_runtime_{retries,retry_budget_exhausted,ejections,breaker_opens}_total,
//     infergate_runtime_{ejected_replicas,breakers_open,replicas,ready_replicas}
//     read from the replica pools at scrape time
//   - infergate_mirror_{requests_total{outcome},duration_seconds,max_abs_diff,
//     argmax_rows_total{agree},mismatched_outputs_total}
//
// And, for the whole gateway:
//   - infergate_gateway_in_flight_request_bytes,
//     infergate_gateway_in_flight_request_limit_bytes,
//     infergate_gateway_in_flight_refused_total{protocol}
//   - infergate_listener_{open_connections,max_connections,
//     accept_errors_total,full_waits_total,evicted_connections_total}{listener}
//     (see netlimit)
package gateway
