package training

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"slices"
	"time"

	"github.com/infergate/infergate/oip"
	"github.com/infergate/infergate/runtimes/onnx"
)

// EvalOptions configure Evaluate. Model and Data are required.
type EvalOptions struct {
	// Model is the ONNX model to evaluate: one input, and a first output
	// of class scores [batch, classes] (probabilities or logits).
	Model string
	// Data is a labelled CSV, as TrainOptions.Data describes.
	Data string
	// LabelColumn names the label column, as TrainOptions.LabelColumn
	// does; empty means the last.
	LabelColumn string
}

// ClassMetrics are one class's figures. Precision is 0 when the model
// never predicts the class, recall when it has no rows (Support 0).
type ClassMetrics struct {
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	F1        float64 `json:"f1"`
	Support   int     `json:"support"` // rows labelled with the class
}

// EvalMetrics describe an evaluation, for metrics.json.
type EvalMetrics struct {
	// Accuracy is the fraction of rows whose highest score is their label.
	Accuracy float64 `json:"accuracy"`
	Rows     int     `json:"rows"`
	Classes  int     `json:"classes"`
	// MacroF1 is the mean F1 of the classes that have rows.
	MacroF1 float64 `json:"macro_f1"`
	// PerClass holds each class's figures, keyed by label.
	PerClass map[int]ClassMetrics `json:"per_class"`
	// Confusion counts rows by true label (first index) and predicted
	// class (second).
	Confusion [][]int `json:"confusion"`
	// Latencies of one row run alone through the runtime (a batch of 1,
	// as an unbatched request is served), measured around the engine's
	// Run: the 50th and 99th percentiles and the mean.
	LatencyP50  time.Duration `json:"latency_p50_ns"`
	LatencyP99  time.Duration `json:"latency_p99_ns"`
	LatencyMean time.Duration `json:"latency_mean_ns"`
}

// Evaluate runs every row of opts.Data through the model at opts.Model, one
// row at a time, with the built-in ONNX runtime (runtimes/onnx, the engine
// the model server serves with), and returns accuracy, per-class figures
// and latency. The model must take the features as its only input.
//
// Errors name what is wrong and wrap ErrInvalidOptions, ErrInvalidData or
// ErrInvalidModel; a missing file wraps fs.ErrNotExist. ctx is checked
// between rows.
func Evaluate(ctx context.Context, opts EvalOptions) (EvalMetrics, error) {
	switch {
	case opts.Model == "":
		return EvalMetrics{}, fmt.Errorf(`training: EvalOptions.Model: "" is empty: the ONNX model to evaluate is required: %w`, ErrInvalidOptions)
	case opts.Data == "":
		return EvalMetrics{}, fmt.Errorf(`training: EvalOptions.Data: "" is empty: the CSV to evaluate on is required: %w`, ErrInvalidOptions)
	}
	m, err := onnx.Load(opts.Model, onnx.Options{Name: "evaluate"})
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return EvalMetrics{}, fmt.Errorf("training: %w", err)
		}
		return EvalMetrics{}, fmt.Errorf("training: %w (%w)", err, ErrInvalidModel)
	}
	defer m.Close()
	md := m.Metadata()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("training: model %s: %s: %w", opts.Model, fmt.Sprintf(format, args...), ErrInvalidModel)
	}
	if len(md.Inputs) != 1 {
		return EvalMetrics{}, bad("has %d inputs; Evaluate feeds one, from the CSV's feature columns", len(md.Inputs))
	}
	in, out := md.Inputs[0], md.Outputs[0]
	switch in.Datatype {
	case oip.FP32, oip.FP64, oip.INT32, oip.INT64:
	default:
		return EvalMetrics{}, bad("input %q is %s; Evaluate feeds FP32, FP64, INT32 or INT64", in.Name, in.Datatype)
	}
	if out.Datatype != oip.FP32 && out.Datatype != oip.FP64 {
		return EvalMetrics{}, bad("output %q is %s; class scores are FP32 or FP64", out.Name, out.Datatype)
	}
	if len(in.Shape) < 2 {
		return EvalMetrics{}, bad("input %q has shape %v; it needs a batch dimension and features", in.Name, in.Shape)
	}

	d, err := readCSV(opts.Data, opts.LabelColumn)
	if err != nil {
		return EvalMetrics{}, err
	}
	dims := make([]int, len(in.Shape)-1)
	for i, s := range in.Shape[1:] {
		dims[i] = int(s)
	}
	if dims, err = fitDims(dims, d.features); err != nil {
		return EvalMetrics{}, fmt.Errorf("training: model %s input %q: %w", opts.Model, in.Name, err)
	}
	switch in.Datatype {
	case oip.INT32:
		err = d.checkIntegral(32)
	case oip.INT64:
		err = d.checkIntegral(64)
	}
	if err != nil {
		return EvalMetrics{}, err
	}

	e := evaluator{m: m, d: d, input: oip.Tensor{Name: in.Name, Datatype: in.Datatype, Shape: []int64{1}}}
	for _, x := range dims {
		e.input.Shape = append(e.input.Shape, int64(x))
	}
	// The first row tells the number of classes, and warms the engine up.
	scores, _, err := e.run(ctx, 0)
	if err != nil {
		return EvalMetrics{}, err
	}
	if len(scores.shape) != 2 || scores.shape[0] != 1 || scores.shape[1] < 2 {
		return EvalMetrics{}, bad("output %q is shaped %v for one row; a classifier's is [batch, classes] with at least 2 classes",
			out.Name, scores.shape)
	}
	classes := int(scores.shape[1])
	if err := d.checkLabels(classes, opts.Model); err != nil {
		return EvalMetrics{}, err
	}

	confusion := make([][]int, classes)
	for i := range confusion {
		confusion[i] = make([]int, classes)
	}
	lat := make([]time.Duration, d.rows())
	for i := range d.rows() {
		s, took, err := e.run(ctx, i)
		lat[i] = took
		if err != nil {
			return EvalMetrics{}, err
		}
		confusion[d.y[i]][s.argmax()]++
	}
	return summarize(confusion, lat), nil
}

// evaluator runs rows of a data set through a loaded model.
type evaluator struct {
	m     *onnx.Model
	d     *dataset
	input oip.Tensor // Data refilled per row
}

// scores are one row's class scores.
type scores struct {
	shape  []int64
	values []float64
}

func (s scores) argmax() int {
	best := 0
	for i, v := range s.values {
		if v > s.values[best] {
			best = i
		}
	}
	return best
}

// run runs row i alone and decodes the first output. took is the time
// the engine's Run took.
func (e *evaluator) run(ctx context.Context, i int) (_ scores, took time.Duration, _ error) {
	if err := ctx.Err(); err != nil {
		return scores{}, 0, fmt.Errorf("training: evaluate: stopped at row %d of %d: %w", i, e.d.rows(), err)
	}
	b := e.input.Data[:0]
	for _, v := range e.d.row(i) {
		switch e.input.Datatype {
		case oip.FP32:
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(v)))
		case oip.FP64:
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
		case oip.INT32:
			b = binary.LittleEndian.AppendUint32(b, uint32(int32(v)))
		case oip.INT64:
			b = binary.LittleEndian.AppendUint64(b, uint64(int64(v)))
		}
	}
	e.input.Data = b
	start := time.Now()
	outs, err := e.m.Run(ctx, []oip.Tensor{e.input})
	took = time.Since(start)
	if err != nil {
		return scores{}, 0, fmt.Errorf("training: evaluate %s line %d: %w", e.d.path, e.d.lines[i], err)
	}
	o := outs[0]
	s := scores{shape: o.Shape}
	switch o.Datatype {
	case oip.FP32:
		for k := 0; k+4 <= len(o.Data); k += 4 {
			s.values = append(s.values, float64(math.Float32frombits(binary.LittleEndian.Uint32(o.Data[k:]))))
		}
	case oip.FP64:
		for k := 0; k+8 <= len(o.Data); k += 8 {
			s.values = append(s.values, math.Float64frombits(binary.LittleEndian.Uint64(o.Data[k:])))
		}
	}
	return s, took, nil
}

// summarize computes the figures from a confusion matrix and per-row
// latencies.
func summarize(confusion [][]int, lat []time.Duration) EvalMetrics {
	classes := len(confusion)
	m := EvalMetrics{Classes: classes, Rows: len(lat), PerClass: make(map[int]ClassMetrics, classes), Confusion: confusion}
	right, f1s, withRows := 0, 0.0, 0
	for c := range classes {
		tp, support, predicted := confusion[c][c], 0, 0
		for k := range classes {
			support += confusion[c][k]
			predicted += confusion[k][c]
		}
		right += tp
		cm := ClassMetrics{Support: support}
		if predicted > 0 {
			cm.Precision = float64(tp) / float64(predicted)
		}
		if support > 0 {
			cm.Recall = float64(tp) / float64(support)
			withRows++
		}
		if cm.Precision+cm.Recall > 0 {
			cm.F1 = 2 * cm.Precision * cm.Recall / (cm.Precision + cm.Recall)
		}
		if support > 0 {
			f1s += cm.F1
		}
		m.PerClass[c] = cm
	}
	if len(lat) > 0 {
		m.Accuracy = float64(right) / float64(len(lat))
	}
	if withRows > 0 {
		m.MacroF1 = f1s / float64(withRows)
	}
	sorted := slices.Clone(lat)
	slices.Sort(sorted)
	m.LatencyP50, m.LatencyP99 = percentile(sorted, 0.50), percentile(sorted, 0.99)
	var sum time.Duration
	for _, d := range sorted {
		sum += d
	}
	if len(sorted) > 0 {
		m.LatencyMean = sum / time.Duration(len(sorted))
	}
	return m
}

// percentile returns the nearest-rank q-quantile of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
