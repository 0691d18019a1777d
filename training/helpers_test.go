package training

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Paths of the shipped data sets and models, from this package.
const (
	irisCSV        = "../examples/datasets/iris.csv"
	digitsCSV      = "../examples/datasets/digits.csv"
	untrainedDir   = "../examples/models"
	irisSample     = "../examples/models/iris/1/model.onnx"
	digitsSample   = "../examples/models/digits/1/model.onnx"
	irisUntrained  = "../examples/models/iris-untrained/model.onnx"
	digitsUntrain  = "../examples/models/digits-untrained/model.onnx"
	weightsAsInput = "../runtimes/onnx/testdata/iris_weights_as_inputs.onnx" // IR version 3: weights listed as graph inputs
)

// untrainedModels are the untrained MLPs shipped in examples/models, by
// directory name; TestUntrainedModels checks (or, with -update, writes)
// them.
var untrainedModels = map[string]MLPOptions{
	"iris-untrained":   {Inputs: 4, Hidden: []int{16}, Classes: 3, Seed: 1},
	"digits-untrained": {Inputs: 64, Hidden: []int{32}, Classes: 10, Seed: 1},
}

// writeMLP writes NewMLP(opts) to a temporary file and returns its path.
func writeMLP(t testing.TB, opts MLPOptions) string {
	t.Helper()
	b, err := NewMLP(opts)
	if err != nil {
		t.Fatalf("NewMLP(%+v): %v", opts, err)
	}
	return writeFile(t, "model.onnx", b)
}

// writeFile writes b to a new temporary directory under name and returns
// the path.
func writeFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeCSV writes lines (joined with newlines) as a CSV file.
func writeCSV(t testing.TB, lines ...string) string {
	t.Helper()
	return writeFile(t, "data.csv", []byte(strings.Join(lines, "\n")+"\n"))
}
