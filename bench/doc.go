// Package bench measures OIP servers from the outside: a bounded
// closed-loop load generator for OIP REST and gRPC, a log-linear latency
// histogram, CPU accounting of other processes from /proc, and a trivial
// OIP runtime to put behind a proxy under test.
//
// The load generator is a client and nothing more. It never imports the
// gateway's insides (only oip and runtimes, by the import rule): a gateway
// under test runs as its own process, so that what the generator costs is
// not counted against what it measures.
//
// A run is always bounded: by a measured duration and by a request count,
// after an unrecorded warm-up. Each worker keeps at most one request in
// flight (a closed loop), records latencies into its own Histogram without
// allocating, and the histograms are merged when the run ends.
//
// Targets are the extension point: anything with Do(ctx) error can be
// driven. RESTTarget (fasthttp, keep-alive, a fixed body) and GRPCTarget (a
// fixed ModelInferRequest, encoded once) are the two provided.
//
// bench exports no metrics; it reports Results.
package bench
