// Package onnx is infergate's built-in engine for ONNX models, in pure Go.
//
// It owns one thing: turning a model.onnx file into a Model that answers
// Metadata and runs OIP tensors through the model. It converts the ONNX graph
// with github.com/gomlx/onnx-gomlx and executes it on GoMLX's SimpleGo
// backend, so it builds with CGO_ENABLED=0 and needs no XLA, no ONNX Runtime
// and no Python.
//
// Before converting, Load rewrites the operators SimpleGo runs slowly into
// equivalent ones it runs fast (see rewrite.go): Conv becomes an im2col
// (strided Slices, a Concat and a matrix product), MaxPool the Max of strided
// Slices, and a mean of embeddings followed by a linear layer gathers rows of
// the precomputed product instead. The rewritten graph computes the same
// values, summed in a different order.
//
// Execution is compiled per input shape. A model whose only dynamic dimension
// is the leading one of every input (the batch) is compiled for a few batch
// sizes, the buckets: a request is padded with zeros up to the next bucket,
// run, and its outputs are cut back to the real batch; a batch bigger than the
// largest bucket runs as chunks of it. The common buckets are compiled at
// Load so that no request pays for a compilation; the others are compiled on
// first use, once. Padding assumes the rows of a batch are independent, which
// holds for models exported with a dynamic batch axis. A model with other
// dynamic dimensions, or with an output that does not follow the batch, is
// compiled once per distinct set of input shapes, keeping the 32 most
// recently used.
//
// Tensors cross the boundary as the canonical row-major little-endian bytes
// of oip.Tensor.Data, copied straight into and out of the engine's buffers:
// there is no per-element conversion.
//
// The package never does network I/O, never validates a request against the
// metadata beyond what it needs to stay memory-safe (the caller does that with
// oip), starts no goroutine of its own (the engine may use goroutines inside
// a Run), and has no metrics: the model server that hosts a Model measures
// it. Panics raised by the converter or the engine are recovered and returned
// as errors, so a bad model or input never takes the process down.
package onnx
