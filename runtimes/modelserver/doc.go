// Package modelserver is infergate's built-in runtime: an OIP server over
// REST (fasthttp) and gRPC for a model repository laid out like Triton's and
// KServe's (DIR/<model>/<version>/model.onnx with an optional
// DIR/<model>/config.json), running models through a small Model interface
// whose default implementations are the pure-Go ONNX engine in
// runtimes/onnx and, for benchmarks, the simulated model in runtimes/sim
// (config.json "simulate").
//
// Each model serves the versions its version policy selects (the highest
// one by default; config.json "version_policy" can ask for the latest N,
// all, or specific ones), side by side under /v2/models/{m}/versions/{v};
// a request without a version goes to the highest ready one. Triton's model
// repository extension (POST /v2/repository/index,
// /v2/repository/models/{m}/load and /unload, and the gRPC RPCs of the same
// names) loads, reloads and unloads models while the server runs: a reload
// builds the new versions beside the serving ones and swaps them in only
// once all are ready, and unloaded versions are closed after their requests
// in flight. A model that is loading, unloaded or failed answers 503 /
// UNAVAILABLE at once with a message saying which, never a hang.
//
// A model that fails to load stays listed and not ready, with the reason in
// the index, its errors and the log; the other models keep serving. The
// server validates every request against the model's metadata before
// running it, and honours requested outputs and the binary tensor
// extension.
//
// Server.Run, which the host process runs beside its listeners, returns
// the memory a burst of large requests grew the heap by to the operating
// system once the server has been idle for a few seconds (see memory.go);
// without it the Go runtime takes minutes.
//
// modelserver never proxies, batches or routes: it is a leaf. It has no
// metrics of its own yet; its host process logs loads and unloads.
package modelserver
