// Package training trains and evaluates ONNX classifiers in pure Go: it
// is what the pipelines' built-in `train` and `evaluate` steps run. It
// builds with CGO_ENABLED=0 and needs no Python, no XLA and no ONNX
// Runtime.
//
// It owns three things:
//
//   - NewMLP writes an untrained multi-layer perceptron as an ONNX model
//     (Gemm and Relu per hidden layer, a Gemm to the class scores, a
//     Softmax), with weights drawn from a seed, so that a sweep over the
//     hidden size starts from scratch without Python. The untrained
//     models in examples/models/*-untrained are its output (this
//     package's tests check that, and rewrite them with -update).
//   - Train reads an ONNX model into GoMLX with onnx-gomlx (Parse,
//     VariablesToContext, CallGraph), trains its floating-point
//     initializers on a labelled CSV with GoMLX's autodiff and its Adam
//     or SGD optimizer on the pure-Go SimpleGo backend, copies them back
//     into the ONNX graph (ContextToONNX) and writes the model: the same
//     graph, inputs and outputs, so the built-in runtime serves it as it
//     served the original. It returns a loss curve and accuracies on a
//     stratified validation split.
//   - Evaluate runs a labelled CSV, one row per request, through
//     runtimes/onnx, the engine the model server serves with, and
//     reports accuracy, per-class precision, recall and F1, the confusion
//     matrix and per-row latency: what serving would answer, not what
//     training believed.
//
// # Data
//
// A data set is a CSV file: every column a number, one of them the label
// (a class number from 0; the last column unless told otherwise), the
// others the features, which fill the model's single input row by row
// (64 features fill a [batch, 1, 8, 8] input as well as a [batch, 64]
// one). A first line that is not all numbers is a header naming the
// columns. The iris and digits sets ship in examples/datasets.
//
// # The loss
//
// Train minimizes the cross-entropy of the class scores, the model's
// first output shaped [batch, classes]. A model that ends in a Softmax
// over the classes (as exporters write classifiers that output
// probabilities) is trained on the Softmax's input, the logits, which is
// exact and numerically stable; a LogSoftmax's output and any other
// output are taken as logits. Only a Softmax over another axis leaves
// probabilities Train cannot trace back, and then the loss is the log of
// the probability of the label plus 1e-7.
//
// # Determinism
//
// Given the same options, model and data, Train writes the same bytes:
// the split and the shuffles come from a PCG generator seeded with
// TrainOptions.Seed, the initial weights are the model's own (NewMLP's
// seed), SimpleGo computes each step in a fixed order, and the model is
// marshalled deterministically.
//
// # Limits
//
// GoMLX v0.26.0's SimpleGo backend has no gradient for MaxPool
// (SelectAndScatterMax), so a model with MaxPool, such as the digits CNN
// in examples/models, cannot be trained here: Train says so before the
// first epoch. Models must fit in memory three times over (weights and
// Adam's two moments); the CSV is held in memory too (up to 1 GiB).
//
// The package does no network I/O, has no metrics of its own (the
// pipeline engine measures its steps) and starts no goroutine beyond the
// ones the GoMLX backend uses inside a step. Train and Evaluate are safe
// to call concurrently; each Train has its own backend. Panics raised by
// the converter or the backend are returned as errors.
package training
