// Package bench measures OIP servers from the outside: the engine of
// `infergate bench`. It drives any Open Inference Protocol server over REST
// or gRPC in a closed loop (fixed concurrency, RunClosedLoop) or an open
// loop (fixed arrival rate, RunOpenLoop), sweeps loads (RunSweep) until a
// StopRule says the latency passed its limit, and writes what it measured
// as a Report: a table, JSON, CSV and a self-contained HTML page with
// charts. It also holds a log-linear latency histogram, CPU accounting of
// other processes from /proc, and a trivial OIP runtime to put behind a
// proxy under test.
//
// The load generator is a client and nothing more. It never imports the
// gateway's insides (only oip and runtimes, by the import rule): a server
// under test runs as its own process, so that what the generator costs is
// not counted against what it measures.
//
// A run is always bounded: by a measured duration and by a request count,
// after an unrecorded warm-up. Workers record into shards of histograms
// (one shard per worker in a closed loop, a few shared in an open loop),
// without allocating; the shards are merged when the run ends. Requests
// are built once (GenerateRequests from the model's metadata, or
// LoadRequests from a file, both checked with oip.ValidateRequest) and
// encoded once (RESTRequests, GRPCRequests), so that the hot path only
// sends bytes.
//
// An open loop measures each request's latency from its intended send
// time, so a request held back by a stalled server or a generator that
// fell behind counts the wait: coordinated omission is corrected, and the
// latency from the actual send and the send lag are reported beside it.
//
// Targets are the extension point: anything with Do(ctx) error can be
// driven. RESTTarget (fasthttp, keep-alive, prepared bodies) and
// GRPCTarget (prepared ModelInferRequests, encoded once) are the two
// provided; both count the bytes they move on the wire.
//
// bench exports no metrics; it reports Results.
package bench
