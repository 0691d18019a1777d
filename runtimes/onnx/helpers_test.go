package onnx

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/infergate/infergate/oip"
)

// modelsDir holds the sample models, as examples/models/make_models.py
// writes them.
const modelsDir = "../../examples/models"

// sampleModels are the sample model names, each at <name>/1/model.onnx.
var sampleModels = []string{"iris", "digits", "textclass"}

// jsonTensor is a tensor in reference.json: OIP's JSON form with flat data.
type jsonTensor struct {
	Name     string        `json:"name"`
	Datatype string        `json:"datatype"`
	Shape    []int64       `json:"shape"`
	Data     []json.Number `json:"data"`
}

type refCase struct {
	Name    string       `json:"name"`
	Inputs  []jsonTensor `json:"inputs"`
	Outputs []jsonTensor `json:"outputs"`
}

// sampleCases reads <model>/reference.json.
func sampleCases(t testing.TB, model string) []refCase {
	t.Helper()
	var ref struct {
		Cases []refCase `json:"cases"`
	}
	readJSON(t, filepath.Join(modelsDir, model, "reference.json"), &ref)
	return ref.Cases
}

// fixtureCases reads testdata/reference.json, keyed by fixture name.
func fixtureCases(t testing.TB) map[string][]refCase {
	t.Helper()
	refs := map[string][]refCase{}
	readJSON(t, filepath.Join("testdata", "reference.json"), &refs)
	return refs
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func samplePath(model string) string { return filepath.Join(modelsDir, model, "1", "model.onnx") }

func loadSample(t testing.TB, model string, opts Options) *Model {
	t.Helper()
	if opts.Name == "" {
		opts.Name = model
	}
	m, err := Load(samplePath(model), opts)
	if err != nil {
		t.Fatalf("Load(%s): %v", model, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// toTensor converts a JSON tensor to canonical bytes.
func toTensor(t testing.TB, jt jsonTensor) oip.Tensor {
	t.Helper()
	dt, ok := oip.ParseDataType(jt.Datatype)
	if !ok {
		t.Fatalf("tensor %s: datatype %q", jt.Name, jt.Datatype)
	}
	data := make([]byte, 0, len(jt.Data)*dt.Size())
	for _, n := range jt.Data {
		switch dt {
		case oip.FP32:
			f, err := n.Float64()
			if err != nil {
				t.Fatal(err)
			}
			data = binary.LittleEndian.AppendUint32(data, math.Float32bits(float32(f)))
		case oip.INT64:
			i, err := n.Int64()
			if err != nil {
				t.Fatal(err)
			}
			data = binary.LittleEndian.AppendUint64(data, uint64(i))
		default:
			t.Fatalf("tensor %s: datatype %s not handled by the test", jt.Name, dt)
		}
	}
	return oip.Tensor{Name: jt.Name, Datatype: dt, Shape: jt.Shape, Data: data}
}

func toTensors(t testing.TB, jts []jsonTensor) []oip.Tensor {
	t.Helper()
	out := make([]oip.Tensor, len(jts))
	for i, jt := range jts {
		out[i] = toTensor(t, jt)
	}
	return out
}

// float32s decodes FP32 canonical bytes.
func float32s(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// diffTensors compares got with want (FP32 within tol, all else exactly)
// and describes the first difference, or returns "".
func diffTensors(want, got oip.Tensor, tol float64) string {
	if want.Name != got.Name || want.Datatype != got.Datatype || fmt.Sprint(want.Shape) != fmt.Sprint(got.Shape) {
		return fmt.Sprintf("tensor (-want +got):\n-%s %s %v\n+%s %s %v",
			want.Name, want.Datatype, want.Shape, got.Name, got.Datatype, got.Shape)
	}
	if len(want.Data) != len(got.Data) {
		return fmt.Sprintf("%s: %d bytes of data, want %d", got.Name, len(got.Data), len(want.Data))
	}
	if want.Datatype != oip.FP32 {
		for i := range want.Data {
			if want.Data[i] != got.Data[i] {
				return fmt.Sprintf("%s: byte %d is %d, want %d", got.Name, i, got.Data[i], want.Data[i])
			}
		}
		return ""
	}
	w, g := float32s(want.Data), float32s(got.Data)
	for i := range w {
		if d := math.Abs(float64(w[i]) - float64(g[i])); !(d <= tol) {
			return fmt.Sprintf("%s: element %d is %g, want %g (|diff| %g > %g)", got.Name, i, g[i], w[i], d, tol)
		}
	}
	return ""
}

// rows builds a batch of n rows of each input by cycling through the rows of
// the given tensors.
func rows(ins []oip.Tensor, n int) []oip.Tensor {
	out := make([]oip.Tensor, len(ins))
	for i, t := range ins {
		have := int(t.Shape[0])
		row := len(t.Data) / have
		data := make([]byte, 0, n*row)
		for r := range n {
			k := r % have
			data = append(data, t.Data[k*row:(k+1)*row]...)
		}
		shape := append([]int64{int64(n)}, t.Shape[1:]...)
		out[i] = oip.Tensor{Name: t.Name, Datatype: t.Datatype, Shape: shape, Data: data}
	}
	return out
}

// row returns row r of each tensor as a batch of 1.
func row(ts []oip.Tensor, r int) []oip.Tensor {
	out := make([]oip.Tensor, len(ts))
	for i, t := range ts {
		size := len(t.Data) / int(t.Shape[0])
		shape := append([]int64{1}, t.Shape[1:]...)
		out[i] = oip.Tensor{Name: t.Name, Datatype: t.Datatype, Shape: shape, Data: t.Data[r*size : (r+1)*size]}
	}
	return out
}
