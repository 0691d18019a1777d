package onnx

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"weak"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/google/go-cmp/cmp"

	"github.com/infergate/infergate/oip"
)

const tol = 1e-4

func TestMetadata(t *testing.T) {
	tests := []struct {
		model string
		opts  Options
		want  oip.ModelMetadata
	}{
		{
			model: "iris",
			opts:  Options{Name: "iris", Version: "1"},
			want: oip.ModelMetadata{
				Name: "iris", Versions: []string{"1"}, Platform: "onnx_onnxv1",
				Inputs:  []oip.TensorMetadata{{Name: "input", Datatype: oip.FP32, Shape: []int64{-1, 4}}},
				Outputs: []oip.TensorMetadata{{Name: "probabilities", Datatype: oip.FP32, Shape: []int64{-1, 3}}},
			},
		},
		{
			model: "digits",
			opts:  Options{Name: "digits", Platform: "onnxruntime_onnx"},
			want: oip.ModelMetadata{
				Name: "digits", Platform: "onnxruntime_onnx",
				Inputs:  []oip.TensorMetadata{{Name: "image", Datatype: oip.FP32, Shape: []int64{-1, 1, 8, 8}}},
				Outputs: []oip.TensorMetadata{{Name: "logits", Datatype: oip.FP32, Shape: []int64{-1, 10}}},
			},
		},
		{
			model: "textclass",
			opts:  Options{Name: "sentiment"},
			want: oip.ModelMetadata{
				Name: "sentiment", Platform: "onnx_onnxv1",
				Inputs:  []oip.TensorMetadata{{Name: "tokens", Datatype: oip.INT64, Shape: []int64{-1, 16}}},
				Outputs: []oip.TensorMetadata{{Name: "probabilities", Datatype: oip.FP32, Shape: []int64{-1, 2}}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.model, func(t *testing.T) {
			m := loadSample(t, tc.model, tc.opts)
			if diff := cmp.Diff(tc.want, m.Metadata()); diff != "" {
				t.Errorf("Metadata() (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReference runs the batches recorded by make_models.py and compares
// with what torch computed.
func TestReference(t *testing.T) {
	for _, model := range sampleModels {
		t.Run(model, func(t *testing.T) {
			m := loadSample(t, model, Options{})
			for _, c := range sampleCases(t, model) {
				t.Run(c.Name, func(t *testing.T) {
					checkCase(t, m, c)
				})
			}
		})
	}
}

func checkCase(t *testing.T, m *Model, c refCase) {
	t.Helper()
	got, err := m.Run(context.Background(), toTensors(t, c.Inputs))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := toTensors(t, c.Outputs)
	if len(got) != len(want) {
		t.Fatalf("Run returned %d outputs, want %d", len(got), len(want))
	}
	for i := range want {
		if d := diffTensors(want[i], got[i], tol); d != "" {
			t.Error(d)
		}
	}
}

// TestFixtures runs models exported differently from the samples: other
// opsets, weights listed as inputs, a dynamic sequence dimension, an output
// that does not follow the batch.
func TestFixtures(t *testing.T) {
	for name, cases := range fixtureCases(t) {
		t.Run(name, func(t *testing.T) {
			m, err := Load(filepath.Join("testdata", name+".onnx"), Options{Name: name})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			defer m.Close()
			for _, c := range cases {
				t.Run(c.Name, func(t *testing.T) { checkCase(t, m, c) })
			}
		})
	}
}

func TestWeightsAsInputsAreHidden(t *testing.T) {
	m, err := Load(filepath.Join("testdata", "iris_weights_as_inputs.onnx"), Options{Name: "iris"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want := []oip.TensorMetadata{{Name: "input", Datatype: oip.FP32, Shape: []int64{-1, 4}}}
	if diff := cmp.Diff(want, m.Metadata().Inputs); diff != "" {
		t.Errorf("inputs (-want +got):\n%s", diff)
	}
}

func TestUnbatchedModel(t *testing.T) {
	m, err := Load(filepath.Join("testdata", "batchmean.onnx"), Options{Name: "batchmean"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.buckets != nil {
		t.Fatalf("batchmean is bucketed with %v; its output colmean does not follow the batch", m.buckets)
	}
	want := []oip.TensorMetadata{
		{Name: "rowmean", Datatype: oip.FP32, Shape: []int64{-1}},
		{Name: "colmean", Datatype: oip.FP32, Shape: []int64{4}},
	}
	if diff := cmp.Diff(want, m.Metadata().Outputs); diff != "" {
		t.Errorf("outputs (-want +got):\n%s", diff)
	}
}

// TestBucketPadding checks that batches padded up to a bucket, or split
// into chunks, give each row what a batch of one gives.
// TestShapeGraphsBounded runs more distinct shapes through a model that is
// not bucketed (seqmean's sequence dimension is dynamic) than it keeps
// graphs for, and checks that evicted graphs are freed.
func TestShapeGraphsBounded(t *testing.T) {
	defer func(n int) { maxShapeGraphs = n }(maxShapeGraphs)
	maxShapeGraphs = 4
	m, err := Load(filepath.Join("testdata", "seqmean.onnx"), Options{Name: "seqmean"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.buckets != nil {
		t.Fatalf("seqmean is bucketed with %v", m.buckets)
	}
	var first weak.Pointer[graph.Graph]
	var want []float32
	for i, n := range []int{1, 2, 3, 4, 5, 6, 1, 7, 2} {
		// A sequence of one repeated token averages to that token's
		// embedding, whatever its length.
		x := oip.Tensor{Name: "tokens", Datatype: oip.INT64, Shape: []int64{1, int64(n)}}
		for range n {
			x.Data = binary.LittleEndian.AppendUint64(x.Data, 3)
		}
		out, err := m.Run(context.Background(), []oip.Tensor{x})
		if err != nil {
			t.Fatalf("seq %d: %v", n, err)
		}
		got := float32s(out[0].Data)
		if want == nil {
			want = got
		}
		for j := range want {
			if math.Abs(float64(got[j]-want[j])) > 1e-6 {
				t.Fatalf("seq %d: mean %v, want %v", n, got, want)
			}
		}
		m.mu.Lock()
		kept := len(m.graphs)
		if i == 0 {
			first = weak.Make(m.graphs[graphKey{shape: "1x1"}].g)
		}
		m.mu.Unlock()
		if kept > maxShapeGraphs {
			t.Fatalf("after seq %d: %d graphs kept, bound is %d", n, kept, maxShapeGraphs)
		}
	}
	// The first graph was evicted by the fifth shape; nothing may keep it
	// alive, the weights' variables included.
	for range 3 {
		runtime.GC()
	}
	if first.Value() != nil {
		t.Error("an evicted graph is still reachable")
	}
}

func TestUnsupportedOp(t *testing.T) {
	path := filepath.Join("testdata", "unsupported_op.onnx")
	_, err := Load(path, Options{Name: "rowsum"})
	if err == nil {
		t.Fatal("Load succeeded on a model with ReduceSum, which onnx-gomlx v0.3.4 lacks; update the fixture")
	}
	for _, want := range []string{path, "ReduceSum"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Load error %q does not mention %q", err, want)
		}
	}
}

func TestBucketPadding(t *testing.T) {
	for _, model := range sampleModels {
		t.Run(model, func(t *testing.T) {
			m := loadSample(t, model, Options{})
			cases := sampleCases(t, model)
			src := toTensors(t, cases[len(cases)-1].Inputs)
			for _, n := range []int{3, 5, 33, 70} {
				in := rows(src, n)
				got, err := m.Run(context.Background(), in)
				if err != nil {
					t.Fatalf("batch %d: %v", n, err)
				}
				for r := range n {
					want, err := m.Run(context.Background(), row(in, r))
					if err != nil {
						t.Fatalf("batch 1: %v", err)
					}
					for i := range want {
						if d := diffTensors(want[i], row(got, r)[i], 1e-5); d != "" {
							t.Fatalf("batch %d row %d: %s", n, r, d)
						}
					}
				}
			}
		})
	}
}

func TestBatchZero(t *testing.T) {
	m := loadSample(t, "iris", Options{})
	got, err := m.Run(context.Background(), []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{0, 4}}})
	if err != nil {
		t.Fatal(err)
	}
	want := []oip.Tensor{{Name: "probabilities", Datatype: oip.FP32, Shape: []int64{0, 3}, Data: []byte{}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Run (-want +got):\n%s", diff)
	}
}

func TestOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		buckets []int
		wantErr string
	}{
		{name: "default", opts: Options{Name: "m"}, buckets: []int{1, 2, 4, 8, 16, 32, 64}},
		{name: "sorted deduped", opts: Options{Name: "m", BatchBuckets: []int{16, 4, 4, 1}}, buckets: []int{1, 4, 16}},
		{name: "max drops buckets", opts: Options{Name: "m", MaxBatchSize: 10}, buckets: []int{1, 2, 4, 8}},
		{name: "max below buckets", opts: Options{Name: "m", BatchBuckets: []int{16}, MaxBatchSize: 10}, buckets: []int{10}},
		{name: "no name", opts: Options{}, wantErr: "Options.Name is required"},
		{name: "bad bucket", opts: Options{Name: "m", BatchBuckets: []int{0}}, wantErr: "bucket 0 is not positive"},
		{name: "empty buckets", opts: Options{Name: "m", BatchBuckets: []int{}}, wantErr: "Options.BatchBuckets is empty"},
		{name: "negative max", opts: Options{Name: "m", MaxBatchSize: -1}, wantErr: "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Load(samplePath("iris"), tc.opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Load error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if diff := cmp.Diff(tc.buckets, m.buckets); diff != "" {
				t.Errorf("buckets (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInvalidInputs(t *testing.T) {
	m := loadSample(t, "iris", Options{MaxBatchSize: 8})
	good := toTensors(t, sampleCases(t, "iris")[1].Inputs)[0] // batch 3
	tests := []struct {
		name   string
		inputs []oip.Tensor
	}{
		{name: "none", inputs: nil},
		{name: "two", inputs: []oip.Tensor{good, good}},
		{name: "wrong name", inputs: []oip.Tensor{{Name: "x", Datatype: good.Datatype, Shape: good.Shape, Data: good.Data}}},
		{name: "wrong datatype", inputs: []oip.Tensor{{Name: good.Name, Datatype: oip.INT32, Shape: good.Shape, Data: good.Data}}},
		{name: "wrong rank", inputs: []oip.Tensor{{Name: good.Name, Datatype: good.Datatype, Shape: []int64{12}, Data: good.Data}}},
		{name: "wrong dim", inputs: []oip.Tensor{{Name: good.Name, Datatype: good.Datatype, Shape: []int64{4, 3}, Data: good.Data}}},
		{name: "short data", inputs: []oip.Tensor{{Name: good.Name, Datatype: good.Datatype, Shape: good.Shape, Data: good.Data[:20]}}},
		{name: "negative dim", inputs: []oip.Tensor{{Name: good.Name, Datatype: good.Datatype, Shape: []int64{-3, 4}, Data: good.Data}}},
		{name: "over max batch", inputs: rows([]oip.Tensor{good}, 9)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Run(context.Background(), tc.inputs)
			if k := oip.KindOf(err); err == nil || k != oip.KindInvalidArgument {
				t.Fatalf("Run error = %v (kind %v), want invalid argument", err, k)
			}
		})
	}
}

func TestRunAfterClose(t *testing.T) {
	m := loadSample(t, "iris", Options{})
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err := m.Run(context.Background(), toTensors(t, sampleCases(t, "iris")[0].Inputs))
	if k := oip.KindOf(err); err == nil || k != oip.KindUnavailable {
		t.Fatalf("Run after Close error = %v (kind %v), want unavailable", err, k)
	}
}

func TestCanceledContext(t *testing.T) {
	m := loadSample(t, "iris", Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := m.Run(ctx, toTensors(t, sampleCases(t, "iris")[0].Inputs))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run error = %v, want context.Canceled", err)
	}
}

// TestCorruptFiles checks that bad files fail Load with an error naming the
// file, and never panic.
func TestCorruptFiles(t *testing.T) {
	good, err := os.ReadFile(samplePath("digits"))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rng.UintN(256))
	}
	flipped := append([]byte(nil), good...)
	for i := 0; i < len(flipped); i += 97 {
		flipped[i] ^= 0x5a
	}
	tests := []struct {
		name     string
		contents []byte
	}{
		{name: "empty", contents: nil},
		{name: "no graph", contents: []byte{0x08, 0x07}}, // ir_version: 7 and nothing else
		{name: "random", contents: random},
		{name: "text", contents: []byte("this is not an onnx model\n")},
		{name: "truncated half", contents: good[:len(good)/2]},
		{name: "truncated tail", contents: good[:len(good)-3]},
		{name: "truncated head", contents: good[:40]},
		{name: "bytes flipped", contents: flipped},
	}
	dir := t.TempDir()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".onnx")
			if err := os.WriteFile(path, tc.contents, 0o644); err != nil {
				t.Fatal(err)
			}
			m, err := Load(path, Options{Name: "bad"})
			if err == nil {
				// A damaged file may still parse into some graph; then it
				// must at least run without crashing.
				defer m.Close()
				t.Logf("Load accepted the file; metadata %+v", m.Metadata())
				return
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("Load error %q does not name the file", err)
			}
			t.Logf("Load: %v", err)
		})
	}
	t.Run("missing", func(t *testing.T) {
		path := filepath.Join(dir, "missing.onnx")
		if _, err := Load(path, Options{Name: "bad"}); err == nil || !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Load error = %v, want os.ErrNotExist", err)
		}
	})
}

// TestConcurrentRun runs batches of several sizes from 8 goroutines and
// checks each against a sequential run.
func TestConcurrentRun(t *testing.T) {
	for _, model := range sampleModels {
		t.Run(model, func(t *testing.T) {
			m := loadSample(t, model, Options{})
			cases := sampleCases(t, model)
			src := toTensors(t, cases[len(cases)-1].Inputs)
			sizes := []int{1, 3, 8, 17, 32, 40}
			want := make([][]oip.Tensor, len(sizes))
			for i, n := range sizes {
				var err error
				if want[i], err = m.Run(context.Background(), rows(src, n)); err != nil {
					t.Fatal(err)
				}
			}
			var wg sync.WaitGroup
			errs := make(chan string, 8)
			for g := range 8 {
				wg.Go(func() {
					for it := range 20 {
						i := (g + it) % len(sizes)
						got, err := m.Run(context.Background(), rows(src, sizes[i]))
						if err != nil {
							errs <- err.Error()
							return
						}
						for k := range got {
							if d := diffTensors(want[i][k], got[k], 1e-5); d != "" {
								errs <- d
								return
							}
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Error(e)
			}
		})
	}
}

// TestConcurrentFirstUse sends batches that need a bucket not compiled at
// Load from 8 goroutines at once: one compiles it, all get right answers.
func TestConcurrentFirstUse(t *testing.T) {
	m := loadSample(t, "iris", Options{})
	if _, ok := m.graphs[graphKey{batch: 4}]; ok {
		t.Fatal("bucket 4 compiled at Load; the test needs a lazy bucket")
	}
	src := toTensors(t, sampleCases(t, "iris")[2].Inputs)
	in := rows(src, 3)
	want := make([][]oip.Tensor, 3)
	for r := range 3 {
		var err error
		if want[r], err = m.Run(context.Background(), row(in, r)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	start := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			<-start
			got, err := m.Run(context.Background(), in)
			if err != nil {
				errs <- err.Error()
				return
			}
			for r := range 3 {
				if d := diffTensors(want[r][0], row(got, r)[0], 1e-5); d != "" {
					errs <- d
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
