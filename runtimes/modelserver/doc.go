// Package modelserver is infergate's built-in runtime: an OIP server over
// REST (fasthttp) and gRPC for a model repository laid out like Triton's and
// KServe's (DIR/<model>/<version>/model.onnx with an optional
// DIR/<model>/config.json), running models through a small Model interface
// whose default implementation is the pure-Go ONNX engine in runtimes/onnx.
//
// A model that fails to load stays listed and not ready, with the reason in
// its errors and the log; the other models keep serving. The server validates
// every request against the model's metadata before running it, and honours
// requested outputs and the binary tensor extension.
//
// modelserver never proxies, batches or routes: it is a leaf.
package modelserver
