package training

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestEvaluateSamples evaluates the shipped sample models on the shipped
// data sets through the runtime. The figures are what make_models.py
// reported when it trained them on these rows.
func TestEvaluateSamples(t *testing.T) {
	for _, tc := range []struct {
		name        string
		model, data string
		rows        int
		confusion0  []int // the first row of the confusion matrix
		minAccuracy float64
	}{
		{"iris", irisSample, irisCSV, 150, []int{50, 0, 0}, 0.97},
		{"digits", digitsSample, digitsCSV, 1797, []int{178, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0.99},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Evaluate(context.Background(), EvalOptions{Model: tc.model, Data: tc.data})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: accuracy %.4f, macro F1 %.4f, latency p50 %v p99 %v mean %v",
				tc.name, m.Accuracy, m.MacroF1, m.LatencyP50, m.LatencyP99, m.LatencyMean)
			if m.Rows != tc.rows || m.Classes != len(tc.confusion0) {
				t.Errorf("%d rows and %d classes, want %d and %d", m.Rows, m.Classes, tc.rows, len(tc.confusion0))
			}
			if m.Accuracy < tc.minAccuracy {
				t.Errorf("accuracy %.4f, want at least %.2f", m.Accuracy, tc.minAccuracy)
			}
			if diff := cmp.Diff(tc.confusion0, m.Confusion[0]); diff != "" {
				t.Errorf("confusion[0] (-want +got):\n%s", diff)
			}
			support := 0
			for c, cm := range m.PerClass {
				support += cm.Support
				if cm.F1 <= 0 || cm.F1 > 1 {
					t.Errorf("class %d: F1 %g", c, cm.F1)
				}
			}
			if support != m.Rows {
				t.Errorf("supports add up to %d, want %d", support, m.Rows)
			}
			if !(0 < m.LatencyP50 && m.LatencyP50 <= m.LatencyP99) {
				t.Errorf("latency p50 %v, p99 %v", m.LatencyP50, m.LatencyP99)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	// Class 0: 3 rows, 2 right, 1 taken for class 1; class 1: 1 row,
	// right; class 2: no rows and never predicted, so it counts for
	// nothing in the macro F1.
	confusion := [][]int{
		{2, 1, 0},
		{0, 1, 0},
		{0, 0, 0},
	}
	lat := []time.Duration{4, 1, 3, 2}
	got := summarize(confusion, lat)
	want := EvalMetrics{
		Accuracy: 0.75,
		Rows:     4,
		Classes:  3,
		MacroF1:  (0.8 + 2.0/3) / 2,
		PerClass: map[int]ClassMetrics{
			0: {Precision: 1, Recall: 2.0 / 3, F1: 0.8, Support: 3},
			1: {Precision: 0.5, Recall: 1, F1: 2.0 / 3, Support: 1},
			2: {},
		},
		Confusion:   confusion,
		LatencyP50:  2,
		LatencyP99:  4,
		LatencyMean: 2, // 10/4, truncated
	}
	approx := cmp.Comparer(func(a, b float64) bool { return a-b < 1e-12 && b-a < 1e-12 })
	if diff := cmp.Diff(want, got, approx); diff != "" {
		t.Errorf("summarize (-want +got):\n%s", diff)
	}
}

func TestPercentile(t *testing.T) {
	sorted := make([]time.Duration, 100)
	for i := range sorted {
		sorted[i] = time.Duration(i + 1)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0, 1}} {
		if got := percentile(sorted, tc.q); got != tc.want {
			t.Errorf("percentile(1..100, %g) = %d, want %d", tc.q, got, tc.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile(nil) = %d", got)
	}
	if got := percentile([]time.Duration{7}, 0.99); got != 7 {
		t.Errorf("percentile([7], 0.99) = %d", got)
	}
}

func TestEvaluateInvalid(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   EvalOptions
		target error
		want   []string
	}{
		{"no model", EvalOptions{Data: irisCSV}, ErrInvalidOptions, []string{"EvalOptions.Model"}},
		{"no data", EvalOptions{Model: irisSample}, ErrInvalidOptions, []string{"EvalOptions.Data"}},
		{"missing model", EvalOptions{Model: "testdata-none/model.onnx", Data: irisCSV}, fs.ErrNotExist, []string{"testdata-none/model.onnx"}},
		{"missing data", EvalOptions{Model: irisSample, Data: "testdata-none/data.csv"}, fs.ErrNotExist, []string{"testdata-none/data.csv"}},
		{"not ONNX", EvalOptions{Model: writeFile(t, "m.onnx", []byte("not a model")), Data: irisCSV}, ErrInvalidModel, nil},
		{"features do not fit the input", EvalOptions{Model: irisSample, Data: writeCSV(t, "1,2,3,0")}, ErrInvalidData, []string{"3 feature columns"}},
		{"label out of range", EvalOptions{Model: irisSample, Data: writeCSV(t, "1,2,3,4,0", "1,2,3,4,5")}, ErrInvalidData, []string{"line 2", "label 5 is out of range"}},
		{"wrong column count", EvalOptions{Model: irisSample, Data: writeCSV(t, "1,2,3,4,0", "1,2,3,4,5,6")}, ErrInvalidData, []string{"line 2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Evaluate(context.Background(), tc.opts)
			if !errors.Is(err, tc.target) {
				t.Fatalf("err = %v, want %v", err, tc.target)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestEvaluateCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Evaluate(ctx, EvalOptions{Model: irisSample, Data: irisCSV})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
