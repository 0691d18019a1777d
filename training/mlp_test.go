package training

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/infergate/infergate/oip"
	"github.com/infergate/infergate/runtimes/onnx"
)

var update = flag.Bool("update", false, "rewrite the untrained models in examples/models")

// TestNewMLP: the model NewMLP writes is served by the built-in runtime
// with the declared interface, outputs probabilities, and is the same
// bytes for the same seed.
func TestNewMLP(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     MLPOptions
		in, out  string
		classes  int
		softmaxd bool
	}{
		{"iris", MLPOptions{Inputs: 4, Hidden: []int{16}, Classes: 3, Seed: 1}, "input", "probabilities", 3, true},
		{"deep", MLPOptions{Inputs: 64, Hidden: []int{32, 16}, Classes: 10, Seed: 2}, "input", "probabilities", 10, true},
		{"linear", MLPOptions{Inputs: 5, Classes: 2}, "input", "probabilities", 2, true},
		{"logits", MLPOptions{Inputs: 4, Hidden: []int{8}, Classes: 3, Logits: true, InputName: "x"}, "x", "logits", 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeMLP(t, tc.opts)
			m, err := onnx.Load(path, onnx.Options{Name: tc.name})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			md := m.Metadata()
			want := oip.ModelMetadata{
				Name:     tc.name,
				Platform: onnx.DefaultPlatform,
				Inputs:   []oip.TensorMetadata{{Name: tc.in, Datatype: oip.FP32, Shape: []int64{-1, int64(tc.opts.Inputs)}}},
				Outputs:  []oip.TensorMetadata{{Name: tc.out, Datatype: oip.FP32, Shape: []int64{-1, int64(tc.classes)}}},
			}
			if d := cmp.Diff(want, md); d != "" {
				t.Errorf("metadata (-want +got):\n%s", d)
			}
			// Two rows of made-up features.
			var data []byte
			for i := range 2 * tc.opts.Inputs {
				data = binary.LittleEndian.AppendUint32(data, math.Float32bits(float32(i%7)-3))
			}
			outs, err := m.Run(context.Background(), []oip.Tensor{{Name: tc.in, Datatype: oip.FP32, Shape: []int64{2, int64(tc.opts.Inputs)}, Data: data}})
			if err != nil {
				t.Fatal(err)
			}
			vals := decodeFP32(outs[0].Data)
			if len(vals) != 2*tc.classes {
				t.Fatalf("%d output values, want %d", len(vals), 2*tc.classes)
			}
			for r := range 2 {
				sum := 0.0
				for _, v := range vals[r*tc.classes : (r+1)*tc.classes] {
					if math.IsNaN(float64(v)) {
						t.Fatalf("row %d: NaN in %v", r, vals)
					}
					sum += float64(v)
				}
				if tc.softmaxd && math.Abs(sum-1) > 1e-5 {
					t.Errorf("row %d: probabilities sum to %g", r, sum)
				}
			}

			again, err := NewMLP(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			first, _ := os.ReadFile(path)
			if !bytes.Equal(first, again) {
				t.Error("the same options wrote different bytes")
			}
			other := tc.opts
			other.Seed++
			if b, _ := NewMLP(other); bytes.Equal(first, b) {
				t.Error("another seed wrote the same bytes")
			}
		})
	}
}

func TestNewMLPInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts MLPOptions
		want string
	}{
		{"no inputs", MLPOptions{Classes: 3}, "MLPOptions.Inputs: 0"},
		{"one class", MLPOptions{Inputs: 4, Classes: 1}, "MLPOptions.Classes: 1"},
		{"empty hidden layer", MLPOptions{Inputs: 4, Hidden: []int{16, 0}, Classes: 3}, "MLPOptions.Hidden[1]: 0"},
		{"too big", MLPOptions{Inputs: 1 << 20, Hidden: []int{1 << 10}, Classes: 3}, "more than"},
		{"same names", MLPOptions{Inputs: 4, Classes: 3, InputName: "x", OutputName: "x"}, "MLPOptions.OutputName"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewMLP(tc.opts)
			if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewMLP(%+v) = %v, want an error containing %q", tc.opts, err, tc.want)
			}
		})
	}
}

// TestUntrainedModels: the untrained models shipped in examples/models
// are what NewMLP writes; go test -run TestUntrainedModels -update
// rewrites them.
func TestUntrainedModels(t *testing.T) {
	for name, opts := range untrainedModels {
		t.Run(name, func(t *testing.T) {
			want, err := NewMLP(opts)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(untrainedDir, name, "model.onnx")
			if *update {
				if err := writeFileAtomic(path, want); err != nil {
					t.Fatal(err)
				}
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test -run TestUntrainedModels -update writes it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from NewMLP(%+v); go test -run TestUntrainedModels -update rewrites it", path, opts)
			}
		})
	}
}

func decodeFP32(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}
