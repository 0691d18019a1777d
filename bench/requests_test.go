package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/infergate/infergate/oip"
	"github.com/infergate/infergate/oip/rest"
)

// everyType is a model with an input of every datatype.
func everyType() *oip.ModelMetadata {
	md := &oip.ModelMetadata{Name: "all", Outputs: []oip.TensorMetadata{{Name: "out", Datatype: oip.FP32, Shape: []int64{-1, 1}}}}
	for dt := oip.BOOL; dt <= oip.BF16; dt++ {
		md.Inputs = append(md.Inputs, oip.TensorMetadata{Name: strings.ToLower(dt.String()), Datatype: dt, Shape: []int64{-1, 3}})
	}
	return md
}

func TestGenerateRequests(t *testing.T) {
	md := everyType()
	reqs, err := GenerateRequests(md, RequestOptions{Batch: 2, Distinct: 4, Seed: 9, StringLength: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want 4", len(reqs))
	}
	for _, r := range reqs {
		if err := oip.ValidateRequest(r, md); err != nil {
			t.Fatal(err)
		}
		for _, in := range r.Inputs {
			if in.Shape[0] != 2 || in.Shape[1] != 3 {
				t.Errorf("%s: shape %v, want [2,3]", in.Name, in.Shape)
			}
			switch in.Datatype {
			case oip.BYTES:
				if len(in.Data) != 6*(4+5) || binary.LittleEndian.Uint32(in.Data) != 5 {
					t.Errorf("BYTES data %q", in.Data)
				}
			case oip.BOOL:
				for _, b := range in.Data {
					if b > 1 {
						t.Errorf("BOOL element %d", b)
					}
				}
			case oip.INT64:
				for i := 0; i < len(in.Data); i += 8 {
					if v := binary.LittleEndian.Uint64(in.Data[i:]); v >= randomIntRange {
						t.Errorf("INT64 element %d out of [0,16)", v)
					}
				}
			}
		}
	}
	if bytes.Equal(reqs[0].Inputs[10].Data, reqs[1].Inputs[10].Data) {
		t.Error("two distinct requests hold the same FP32 data")
	}
	again, _ := GenerateRequests(md, RequestOptions{Batch: 2, Distinct: 4, Seed: 9, StringLength: 5})
	other, _ := GenerateRequests(md, RequestOptions{Batch: 2, Distinct: 4, Seed: 10, StringLength: 5})
	if !bytes.Equal(again[3].Inputs[10].Data, reqs[3].Inputs[10].Data) || bytes.Equal(other[3].Inputs[10].Data, reqs[3].Inputs[10].Data) {
		t.Error("the data does not follow the seed")
	}
}

func TestResolveShapes(t *testing.T) {
	img := &oip.ModelMetadata{Name: "img", Inputs: []oip.TensorMetadata{
		{Name: "pixels", Datatype: oip.FP32, Shape: []int64{-1, -1, 3}},
		{Name: "scale", Datatype: oip.FP32, Shape: []int64{1}},
	}}
	fixed := &oip.ModelMetadata{Name: "fixed", Inputs: []oip.TensorMetadata{{Name: "x", Datatype: oip.FP32, Shape: []int64{1, 4}}}}
	tests := []struct {
		name    string
		md      *oip.ModelMetadata
		opts    RequestOptions
		want    string // shapes, or the error's words
		wantErr bool
	}{
		{"a variable inner dimension needs a shape", img, RequestOptions{}, "variable dimension 1", true},
		{"given shape", img, RequestOptions{Shapes: map[string][]int64{"pixels": {2, 16, 3}}}, "[[2 16 3] [1]]", false},
		{"given shape of the wrong rank", img, RequestOptions{Shapes: map[string][]int64{"pixels": {16, 3}}}, "has 2 dimensions", true},
		{"given shape against a fixed dimension", img, RequestOptions{Shapes: map[string][]int64{"pixels": {1, 16, 4}}}, "does not fit", true},
		{"shape of an unknown input", img, RequestOptions{Shapes: map[string][]int64{"nope": {1}}}, `no such input (inputs: "pixels", "scale")`, true},
		{"batch of a fixed model", fixed, RequestOptions{Batch: 4}, "does not batch", true},
		{"batch 1 of a fixed model", fixed, RequestOptions{Batch: 1}, "[[1 4]]", false},
		{"batched model", everyType(), RequestOptions{Batch: 8}, "[8 3]", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolveShapes(tc.md, tc.opts)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want one containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := fmtShapes(got); !strings.Contains(s, tc.want) {
				t.Errorf("shapes %s, want %s", s, tc.want)
			}
		})
	}
	if _, err := ResolveShapes(img, RequestOptions{}); !errors.Is(err, ErrShapeNeeded) {
		t.Errorf("want ErrShapeNeeded, got %v", err)
	}
}

func fmtShapes(ss [][]int64) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		d := make([]string, len(s))
		for j, v := range s {
			d[j] = strconv.FormatInt(v, 10)
		}
		parts[i] = "[" + strings.Join(d, " ") + "]"
	}
	return "[" + strings.Join(parts, " ") + "]"
}

var irisMD = &oip.ModelMetadata{
	Name:    "iris",
	Inputs:  []oip.TensorMetadata{{Name: "input", Datatype: oip.FP32, Shape: []int64{-1, 4}}},
	Outputs: []oip.TensorMetadata{{Name: "probabilities", Datatype: oip.FP32, Shape: []int64{-1, 3}}},
}

func TestLoadRequests(t *testing.T) {
	one := `{"id":"a","inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}`
	two := `{"inputs":[{"name":"input","datatype":"FP32","shape":[2,4],"data":[[1,2,3,4],[5,6,7,8]]}]}`
	tests := []struct {
		name   string
		doc    string
		want   int
		batch0 int64
	}{
		{"one OIP request", one, 1, 1},
		{"an array of them", "[" + one + "," + two + "]", 2, 1},
		{"perf_analyzer, flat arrays", `{"data":[{"input":[1,2,3,4]},{"input":[5,6,7,8]}]}`, 2, 1},
		{"perf_analyzer, content and shape", `{"data":[{"input":{"content":[1,2,3,4,5,6,7,8],"shape":[2,4]}}]}`, 1, 2},
		{"perf_analyzer, b64", `{"data":[{"input":{"b64":"AACAPwAAAEAAAEBAAACAQA=="}}]}`, 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reqs, err := LoadRequests([]byte(tc.doc), irisMD)
			if err != nil {
				t.Fatal(err)
			}
			if len(reqs) != tc.want || reqs[0].Inputs[0].Shape[0] != tc.batch0 || reqs[0].ModelName != "iris" {
				t.Errorf("%d requests, first shape %v, model %q", len(reqs), reqs[0].Inputs[0].Shape, reqs[0].ModelName)
			}
		})
	}
}

func TestLoadRequestsRejects(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"empty", "  ", "empty"},
		{"not JSON", "hello", "not a JSON object or array"},
		{"wrong datatype", `{"inputs":[{"name":"input","datatype":"INT64","shape":[1,4],"data":[1,2,3,4]}]}`, `request 1 does not fit model "iris" (inputs input FP32 [-1,4]): input "input": datatype INT64, model expects FP32`},
		{"wrong shape, second request", `[{"inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]},{"inputs":[{"name":"input","datatype":"FP32","shape":[1,3],"data":[1,2,3]}]}]`, `request 2 does not fit`},
		{"unknown input", `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}`, `unknown input "x"`},
		{"malformed request", `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[1,2]}]}`, "request 1"},
		{"perf_analyzer entry missing an input", `{"data":[{"other":[1]}]}`, `data entry 1 has no input "input"`},
		{"empty array", `[]`, "no request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadRequests([]byte(tc.doc), irisMD)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("the error is not one line: %q", err)
			}
		})
	}
}

func TestRESTRequestsRoundTrip(t *testing.T) {
	md := everyType()
	reqs, err := GenerateRequests(md, RequestOptions{Batch: 2, Distinct: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, binaryForm := range []bool{false, true} {
		bodies, err := RESTRequests(reqs, binaryForm)
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range bodies {
			headerLen := -1
			if binaryForm {
				if b.ContentType != rest.ContentTypeBinary || len(b.Header) != 1 || b.Header[0][0] != rest.HeaderInferenceHeaderContentLength {
					t.Fatalf("binary body %d: content type %q, header %v", i, b.ContentType, b.Header)
				}
				headerLen, _ = strconv.Atoi(b.Header[0][1])
			}
			var got oip.InferRequest
			if err := oip.DecodeInferRequest(b.Body, headerLen, &got); err != nil {
				t.Fatalf("binary=%v body %d: %v", binaryForm, i, err)
			}
			for j := range got.Inputs {
				dt := got.Inputs[j].Datatype
				if dt == oip.FP16 || dt == oip.BF16 {
					continue // JSON carries them as rounded decimals
				}
				if !bytes.Equal(got.Inputs[j].Data, reqs[i].Inputs[j].Data) {
					t.Errorf("binary=%v body %d input %s: data changed", binaryForm, i, got.Inputs[j].Name)
				}
			}
			if v, ok := got.Parameters.Bool(oip.ParamBinaryDataOutput); ok != binaryForm || (ok && !v) {
				t.Errorf("binary=%v: binary_data_output = %v, %v", binaryForm, v, ok)
			}
		}
	}
	if len(reqs[0].Parameters) != 0 || len(reqs[0].Inputs[0].Parameters) != 0 {
		t.Error("RESTRequests modified its requests")
	}
}

func TestGRPCRequestsRoundTrip(t *testing.T) {
	md := everyType()
	reqs, err := GenerateRequests(md, RequestOptions{Distinct: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GRPCRequests(reqs, "all", "", false); err == nil || !strings.Contains(err.Error(), "raw_input_contents") {
		t.Errorf("typed contents of an FP16 input: %v, want an error saying to send it raw", err)
	}
	noHalf := &oip.ModelMetadata{Name: "all", Outputs: md.Outputs}
	for _, in := range md.Inputs {
		if in.Datatype != oip.FP16 && in.Datatype != oip.BF16 {
			noHalf.Inputs = append(noHalf.Inputs, in)
		}
	}
	reqs, err = GenerateRequests(noHalf, RequestOptions{Distinct: 1, Batch: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range []bool{false, true} {
		msgs, err := GRPCRequests(reqs, "all", "2", raw)
		if err != nil {
			t.Fatal(err)
		}
		m := msgs[0]
		if m.GetModelName() != "all" || m.GetModelVersion() != "2" || (len(m.GetRawInputContents()) > 0) != raw {
			t.Errorf("raw=%v: model %q version %q, %d raw entries", raw, m.GetModelName(), m.GetModelVersion(), len(m.GetRawInputContents()))
		}
		var got oip.InferRequest
		if err := oip.RequestFromProto(m, &got); err != nil {
			t.Fatalf("raw=%v: %v", raw, err)
		}
		for j := range got.Inputs {
			if !bytes.Equal(got.Inputs[j].Data, reqs[0].Inputs[j].Data) {
				t.Errorf("raw=%v input %s: data changed", raw, got.Inputs[j].Name)
			}
		}
	}
}
