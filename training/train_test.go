package training

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
	onnxgomlx "github.com/gomlx/onnx-gomlx/onnx"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/infergate/infergate/oip"
	"github.com/infergate/infergate/runtimes/onnx"
)

// TestTrainConverges trains the shipped untrained MLPs to a validation
// accuracy of at least 0.9, and checks that the model written keeps the
// input model's interface and scores as well under the built-in runtime.
// Iris takes about 0.3 s and digits about 1 s on 2 cores.
func TestTrainConverges(t *testing.T) {
	for _, tc := range []struct {
		name        string
		model, data string
		opts        TrainOptions
	}{
		{"iris", irisUntrained, irisCSV, TrainOptions{Epochs: 100, BatchSize: 16, Seed: 1}},
		{"digits", digitsUntrain, digitsCSV, TrainOptions{Epochs: 20, Seed: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.Model, opts.Data = tc.model, tc.data
			opts.Out = filepath.Join(t.TempDir(), "out", "model.onnx")
			var progress []float64
			opts.Progress = func(epoch int, loss, valAcc float64) {
				if epoch != len(progress)+1 {
					t.Errorf("Progress called for epoch %d after %d calls", epoch, len(progress))
				}
				progress = append(progress, loss)
			}
			m, err := Train(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: validation accuracy %.3f, training accuracy %.3f, loss %.4f -> %.4f, %.1f ms per epoch, %.2f s in all",
				tc.name, m.ValidationAccuracy, m.TrainAccuracy, m.LossCurve[0], m.Loss, 1000*m.EpochSeconds, m.TrainSeconds)
			if m.ValidationAccuracy < 0.9 {
				t.Errorf("validation accuracy %.3f, want at least 0.9", m.ValidationAccuracy)
			}
			if m.Epochs != opts.Epochs || len(m.LossCurve) != opts.Epochs || len(m.ValidationAccuracyCurve) != opts.Epochs {
				t.Errorf("%d epochs, %d losses and %d accuracies, want %d", m.Epochs, len(m.LossCurve), len(m.ValidationAccuracyCurve), opts.Epochs)
			}
			if diff := cmp.Diff(m.LossCurve, progress); diff != "" {
				t.Errorf("Progress losses differ from the loss curve (-curve +progress):\n%s", diff)
			}
			if !(m.Loss < m.LossCurve[0]/4) {
				t.Errorf("loss went from %g to %g only", m.LossCurve[0], m.Loss)
			}
			if m.TrainRows+m.ValidationRows != rowsOf(t, tc.data) || m.ValidationRows == 0 {
				t.Errorf("%d training and %d validation rows", m.TrainRows, m.ValidationRows)
			}

			// The trained model: same interface, served by the runtime.
			if diff := cmp.Diff(metadataOf(t, tc.model), metadataOf(t, opts.Out)); diff != "" {
				t.Errorf("the trained model's interface differs from the input's (-in +out):\n%s", diff)
			}
			ev, err := Evaluate(context.Background(), EvalOptions{Model: opts.Out, Data: tc.data})
			if err != nil {
				t.Fatal(err)
			}
			// The data set is the training and validation rows together.
			want := (m.TrainAccuracy*float64(m.TrainRows) + m.ValidationAccuracy*float64(m.ValidationRows)) / float64(ev.Rows)
			if math.Abs(ev.Accuracy-want) > 1e-9 {
				t.Errorf("Evaluate's accuracy under the runtime is %.6f; training measured %.6f", ev.Accuracy, want)
			}
		})
	}
}

// TestTrainServesAsTrained: the model written gives, under the built-in
// runtime, the outputs the trained GoMLX graph gives, for every row.
func TestTrainServesAsTrained(t *testing.T) {
	backend, err := newBackend()
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Finalize()
	opts := TrainOptions{Model: irisUntrained, Data: irisCSV, Out: filepath.Join(t.TempDir(), "model.onnx"), Epochs: 30, Seed: 4}
	tr, _, err := train(context.Background(), opts, backend)
	if err != nil {
		t.Fatal(err)
	}
	rows := make([]int, tr.d.rows())
	for i := range rows {
		rows[i] = i
	}
	x, _ := tr.batch(rows)
	defer x.FinalizeAll()

	// The model's own output (probabilities), computed by GoMLX with the
	// weights as training left them in the context.
	out, err := mlctx.ExecOnce(backend, tr.c.ctx, func(ctx *mlctx.Context, x *graph.Node) *graph.Node {
		return tr.c.om.CallGraph(ctx, x.Graph(), map[string]*graph.Node{tr.c.input: x})[0]
	}, x)
	if err != nil {
		t.Fatal(err)
	}
	want := tensors.MustCopyFlatData[float32](out)

	m, err := onnx.Load(opts.Out, onnx.Options{Name: "iris"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var data []byte
	for _, v := range tr.d.x {
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(float32(v)))
	}
	outs, err := m.Run(context.Background(), []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{int64(len(rows)), 4}, Data: data}})
	if err != nil {
		t.Fatal(err)
	}
	got := decodeFP32(outs[0].Data)
	if len(got) != len(want) {
		t.Fatalf("the runtime returned %d values, GoMLX %d", len(got), len(want))
	}
	for i := range want {
		if d := math.Abs(float64(got[i] - want[i])); d > 1e-6 {
			t.Fatalf("row %d class %d: the runtime says %g, GoMLX %g", i/3, i%3, got[i], want[i])
		}
	}
}

// TestTrainDeterministic: the same seed trains the same bytes and
// metrics; another seed does not.
func TestTrainDeterministic(t *testing.T) {
	run := func(seed uint64) ([]byte, Metrics) {
		t.Helper()
		out := filepath.Join(t.TempDir(), "model.onnx")
		m, err := Train(context.Background(), TrainOptions{Model: irisUntrained, Data: irisCSV, Out: out, Epochs: 20, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return b, m
	}
	b1, m1 := run(7)
	b2, m2 := run(7)
	if !bytes.Equal(b1, b2) {
		t.Error("two runs with seed 7 wrote different models")
	}
	timing := cmpopts.IgnoreFields(Metrics{}, "TrainSeconds", "EpochSeconds")
	if diff := cmp.Diff(m1, m2, timing); diff != "" {
		t.Errorf("two runs with seed 7 measured differently (-first +second):\n%s", diff)
	}
	if b3, _ := run(8); bytes.Equal(b1, b3) {
		t.Error("seeds 7 and 8 wrote the same model")
	}
	untrained, err := os.ReadFile(irisUntrained)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(b1, untrained) {
		t.Error("the trained model is the untrained one")
	}
}

// TestTrainVariants trains other shapes of model and options to the same
// bar: a model that outputs logits, SGD, a constant learning rate, weights
// listed as graph inputs (IR version 3), the label in the first column.
func TestTrainVariants(t *testing.T) {
	labelFirst := writeLabelFirst(t, irisCSV)
	for _, tc := range []struct {
		name string
		opts TrainOptions
	}{
		{"logits output", TrainOptions{Model: writeMLP(t, MLPOptions{Inputs: 4, Hidden: []int{16}, Classes: 3, Seed: 3, Logits: true})}},
		{"sgd", TrainOptions{Model: irisUntrained, Optimizer: "sgd", LearningRate: 0.01, BatchSize: 8}},
		{"constant rate", TrainOptions{Model: irisUntrained, Schedule: "constant", LearningRate: 0.005}},
		{"weights as inputs", TrainOptions{Model: weightsAsInput, Epochs: 5, LearningRate: 0.001}},
		{"label first", TrainOptions{Model: irisUntrained, Data: labelFirst, LabelColumn: "species"}},
		{"no validation", TrainOptions{Model: irisUntrained, ValidationSplit: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			if opts.Data == "" {
				opts.Data = irisCSV
			}
			opts.Out = filepath.Join(t.TempDir(), "model.onnx")
			m, err := Train(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			acc := m.ValidationAccuracy
			if opts.ValidationSplit < 0 {
				acc = m.TrainAccuracy
				if m.ValidationRows != 0 || len(m.ValidationAccuracyCurve) != 0 {
					t.Errorf("%d validation rows and %d accuracies without a split", m.ValidationRows, len(m.ValidationAccuracyCurve))
				}
			}
			if acc < 0.9 {
				t.Errorf("accuracy %.3f, want at least 0.9 (loss %v)", acc, m.LossCurve)
			}
			in, err := os.ReadFile(opts.Model)
			if err != nil {
				t.Fatal(err)
			}
			out, err := os.ReadFile(opts.Out)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(in, out) {
				t.Error("the weights written are the initial ones")
			}
		})
	}
}

// writeLabelFirst rewrites a CSV with its last column first.
func writeLabelFirst(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		i := strings.LastIndexByte(l, ',')
		lines = append(lines, l[i+1:]+","+l[:i])
	}
	return writeCSV(t, lines...)
}

func TestTrainInvalid(t *testing.T) {
	iris3 := writeCSV(t, "a,b,c,label", "1,2,3,0")
	noTrainable := writeFile(t, "model.onnx", modelWithoutInitializers(t))
	for _, tc := range []struct {
		name   string
		opts   TrainOptions
		target error
		want   []string
	}{
		{"missing model", TrainOptions{Model: "testdata-none/model.onnx"}, fs.ErrNotExist, []string{"testdata-none/model.onnx"}},
		{"missing data", TrainOptions{Data: "testdata-none/data.csv"}, fs.ErrNotExist, []string{"testdata-none/data.csv"}},
		{"empty model", TrainOptions{Model: writeFile(t, "m.onnx", nil)}, ErrInvalidModel, []string{"empty"}},
		{"not ONNX", TrainOptions{Model: writeFile(t, "m.onnx", []byte("not a model"))}, ErrInvalidModel, []string{"not a valid ONNX model"}},
		{"no trainable initializers", TrainOptions{Model: noTrainable}, ErrNoTrainableWeights, []string{"no trainable"}},
		{"wrong column count", TrainOptions{Data: writeCSV(t, "a,b,c,d,label", "1,2,3,4,0", "1,2,3,0")}, ErrInvalidData, []string{"line 3", "4 columns"}},
		{"features do not fit the input", TrainOptions{Data: iris3}, ErrInvalidData, []string{"3 feature columns", "[4]"}},
		{"label out of range", TrainOptions{Data: writeCSV(t, "1,2,3,4,0", "1,2,3,4,1", "1,2,3,4,3")}, ErrInvalidData, []string{"line 3", "label 3 is out of range", "3 classes"}},
		{"no rows to train on", TrainOptions{Data: writeCSV(t, "1,2,3,4,0", "1,2,3,4,1", "1,2,3,4,2"), ValidationSplit: 0.9}, ErrInvalidData, []string{"none to train on"}},
		{"cannot differentiate MaxPool", TrainOptions{Model: digitsSample, Data: digitsCSV, Epochs: 1}, ErrInvalidModel, []string{"cannot train it", "SelectAndScatterMax"}},
		{"no output path", TrainOptions{Out: "-"}, ErrInvalidOptions, []string{"TrainOptions.Out"}},
		{"unknown loss", TrainOptions{Loss: "mse"}, ErrInvalidOptions, []string{"TrainOptions.Loss", `"mse"`}},
		{"unknown optimizer", TrainOptions{Optimizer: "rmsprop"}, ErrInvalidOptions, []string{"TrainOptions.Optimizer", `"rmsprop"`}},
		{"unknown schedule", TrainOptions{Schedule: "step"}, ErrInvalidOptions, []string{"TrainOptions.Schedule"}},
		{"negative rate", TrainOptions{LearningRate: -0.1}, ErrInvalidOptions, []string{"TrainOptions.LearningRate", "-0.1"}},
		{"negative epochs", TrainOptions{Epochs: -1}, ErrInvalidOptions, []string{"TrainOptions.Epochs", "-1"}},
		{"negative batch", TrainOptions{BatchSize: -2}, ErrInvalidOptions, []string{"TrainOptions.BatchSize"}},
		{"split of 1", TrainOptions{ValidationSplit: 1}, ErrInvalidOptions, []string{"TrainOptions.ValidationSplit"}},
		{"diverges", TrainOptions{LearningRate: 1e30, Optimizer: "sgd", Schedule: "constant"}, ErrDiverged, []string{"loss is", "learning rate 1e+30"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			if opts.Model == "" {
				opts.Model = irisUntrained
			}
			if opts.Data == "" {
				opts.Data = irisCSV
			}
			out := filepath.Join(t.TempDir(), "model.onnx")
			switch opts.Out {
			case "":
				opts.Out = out
			case "-":
				opts.Out = ""
			}
			_, err := Train(context.Background(), opts)
			if !errors.Is(err, tc.target) {
				t.Fatalf("err = %v, want %v", err, tc.target)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q, want it to contain %q", err, w)
				}
			}
			if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a failed Train left %s: %v", out, err)
			}
		})
	}
}

// modelWithoutInitializers returns an ONNX model whose only node is a
// Softmax over its input: nothing to train.
func modelWithoutInitializers(t *testing.T) []byte {
	t.Helper()
	b, err := NewMLP(MLPOptions{Inputs: 3, Classes: 3})
	if err != nil {
		t.Fatal(err)
	}
	om, err := onnxgomlx.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	g := om.Proto.Graph
	g.Initializer = nil
	softmax := g.Node[len(g.Node)-1]
	softmax.Input = []string{g.Input[0].Name}
	g.Node = g.Node[len(g.Node)-1:]
	var buf bytes.Buffer
	if err := om.Write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestTrainCancel: a context cancelled from Progress stops Train after
// that epoch, with the metrics so far and no model written.
func TestTrainCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := filepath.Join(t.TempDir(), "model.onnx")
	m, err := Train(ctx, TrainOptions{Model: irisUntrained, Data: irisCSV, Out: out, Epochs: 50,
		Progress: func(epoch int, _, _ float64) {
			if epoch == 2 {
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "stopped after 2 of 50 epochs") {
		t.Fatalf("err = %v, want context.Canceled after 2 epochs", err)
	}
	if m.Epochs != 2 || len(m.LossCurve) != 2 || len(m.ValidationAccuracyCurve) != 2 {
		t.Errorf("metrics of a cancelled run: %+v", m)
	}
	if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a cancelled Train left %s: %v", out, err)
	}
}

// TestLoss checks both forms of cross-entropy against values computed by
// hand: on logits (a model ending in Softmax) and on probabilities.
func TestLoss(t *testing.T) {
	backend, err := newBackend()
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Finalize()
	scores := [][]float32{{2, 1, 0.5}, {0.1, 0.2, 3}}
	probs := [][]float32{{0.7, 0.2, 0.1}, {0.1, 0.1, 0.8}}
	labels := [][]int32{{0}, {1}}
	lse := func(r []float32) float64 {
		s := 0.0
		for _, v := range r {
			s += math.Exp(float64(v))
		}
		return math.Log(s)
	}
	for _, tc := range []struct {
		name  string
		probs bool
		in    [][]float32
		want  float64
	}{
		{"logits", false, scores, ((lse(scores[0]) - 2) + (lse(scores[1]) - 0.2)) / 2},
		{"probabilities", true, probs, -(math.Log(0.7+probEpsilon) + math.Log(0.1+probEpsilon)) / 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &trainer{c: &classifier{probs: tc.probs, classes: 3}}
			got, err := graph.ExecOnce(backend, tr.loss, tc.in, labels)
			if err != nil {
				t.Fatal(err)
			}
			if g := scalar(got); math.Abs(g-tc.want) > 1e-5 {
				t.Errorf("loss = %g, want %g", g, tc.want)
			}
		})
	}
}

// TestScoresOf: the loss reads the logits before a final Softmax over the
// classes, and the output itself otherwise.
func TestScoresOf(t *testing.T) {
	for _, tc := range []struct {
		name       string
		path       string
		wantOutput bool // the scores are the output itself
		wantProbs  bool
	}{
		{"softmax axis -1", irisUntrained, false, false},
		{"softmax at opset 11, default axis", "../runtimes/onnx/testdata/iris_opset11.onnx", false, false},
		{"logits", writeMLP(t, MLPOptions{Inputs: 4, Classes: 3, Logits: true}), true, false},
		{"softmax over the batch", softmaxAxis(t, 0), true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			om, err := onnxgomlx.ReadFile(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			out := om.OutputsNames[0]
			scores, probs := scoresOf(om, out)
			if (scores == out) != tc.wantOutput || probs != tc.wantProbs {
				t.Errorf("scoresOf = %q, %v; output %q", scores, probs, out)
			}
		})
	}
}

// softmaxAxis writes an iris MLP whose Softmax runs over axis.
func softmaxAxis(t *testing.T, axis int64) string {
	t.Helper()
	b, err := NewMLP(MLPOptions{Inputs: 4, Hidden: []int{4}, Classes: 3})
	if err != nil {
		t.Fatal(err)
	}
	om, err := onnxgomlx.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	om.Proto.Graph.Node[len(om.Proto.Graph.Node)-1].Attribute[0].I = axis
	var buf bytes.Buffer
	if err := om.Write(&buf); err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "model.onnx", buf.Bytes())
}

func metadataOf(t *testing.T, path string) oip.ModelMetadata {
	t.Helper()
	m, err := onnx.Load(path, onnx.Options{Name: "m"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	return m.Metadata()
}

func rowsOf(t *testing.T, path string) int {
	t.Helper()
	d, err := readCSV(path, "")
	if err != nil {
		t.Fatal(err)
	}
	return d.rows()
}

// TestTrainConcurrent: runs in parallel (a sweep's trials) do not disturb
// each other: each writes what it writes alone.
func TestTrainConcurrent(t *testing.T) {
	opts := func(seed uint64) TrainOptions {
		return TrainOptions{Model: irisUntrained, Data: irisCSV, Out: filepath.Join(t.TempDir(), "model.onnx"), Epochs: 10, Seed: seed}
	}
	alone := opts(5)
	if _, err := Train(context.Background(), alone); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(alone.Out)
	if err != nil {
		t.Fatal(err)
	}
	runs := []TrainOptions{opts(5), opts(5), opts(6)}
	errs := make(chan error, len(runs))
	for _, o := range runs {
		go func() {
			_, err := Train(context.Background(), o)
			errs <- err
		}()
	}
	for range runs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i, o := range runs[:2] {
		got, err := os.ReadFile(o.Out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("concurrent run %d wrote another model than the same run alone", i)
		}
	}
}
