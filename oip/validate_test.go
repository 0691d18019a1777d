package oip

import (
	"errors"
	"testing"
)

func testMetadata() *ModelMetadata {
	return &ModelMetadata{
		Name: "m",
		Inputs: []TensorMetadata{
			{Name: "a", Datatype: FP32, Shape: []int64{-1, 4}},
			{Name: "b", Datatype: BYTES, Shape: []int64{-1, -1}},
			{Name: "c", Datatype: INT64, Shape: []int64{-1}},
		},
		Outputs: []TensorMetadata{
			{Name: "y", Datatype: FP32, Shape: []int64{-1, 2}},
			{Name: "z", Datatype: FP32, Shape: []int64{-1}},
		},
	}
}

// validRequest returns a request that passes ValidateRequest against
// testMetadata; each case breaks one thing.
func validRequest() *InferRequest {
	return &InferRequest{
		ModelName: "m",
		Inputs: []Tensor{
			{Name: "a", Datatype: FP32, Shape: []int64{2, 4}, Data: leF32(1, 2, 3, 4, 5, 6, 7, 8)},
			{Name: "b", Datatype: BYTES, Shape: []int64{2, 1}, Data: bytesData("x", "yz")},
			{Name: "c", Datatype: INT64, Shape: []int64{2}, Data: leU64(1, 2)},
		},
		Outputs: []RequestedOutput{{Name: "y"}},
	}
}

func TestValidateRequest(t *testing.T) {
	tests := []struct {
		name   string
		md     func(*ModelMetadata)
		modify func(*InferRequest)
		want   string // "" for valid
	}{
		{name: "valid", modify: func(*InferRequest) {}},
		{name: "valid without outputs", modify: func(r *InferRequest) { r.Outputs = nil }},
		{name: "valid in another order", modify: func(r *InferRequest) {
			r.Inputs[0], r.Inputs[2] = r.Inputs[2], r.Inputs[0]
			r.Outputs = []RequestedOutput{{Name: "z"}, {Name: "y"}}
		}},
		{name: "valid empty batch", modify: func(r *InferRequest) {
			r.Inputs[0].Shape, r.Inputs[0].Data = []int64{0, 4}, nil
			r.Inputs[1].Shape, r.Inputs[1].Data = []int64{0, 3}, nil
			r.Inputs[2].Shape, r.Inputs[2].Data = []int64{0}, nil
		}},
		{name: "valid empty BYTES elements", modify: func(r *InferRequest) {
			r.Inputs[1].Shape, r.Inputs[1].Data = []int64{1, 3}, bytesData("", "", "")
		}},
		{
			name:   "missing input",
			modify: func(r *InferRequest) { r.Inputs = r.Inputs[:2] },
			want:   `missing input "c"`,
		},
		{
			name:   "unknown input",
			modify: func(r *InferRequest) { r.Inputs[0].Name = "A" },
			want:   `unknown input "A"; model "m" has inputs "a", "b", "c"`,
		},
		{
			name:   "unknown input of a model with none",
			md:     func(md *ModelMetadata) { md.Inputs = nil },
			modify: func(r *InferRequest) {},
			want:   `unknown input "a"; model "m" has no inputs`,
		},
		{
			name:   "duplicate input",
			modify: func(r *InferRequest) { r.Inputs = append(r.Inputs, r.Inputs[1]) },
			want:   `duplicate input "b"`,
		},
		{
			name:   "datatype mismatch",
			modify: func(r *InferRequest) { r.Inputs[0].Datatype = INT32 },
			want:   `input "a": datatype INT32, model expects FP32`,
		},
		{
			name:   "invalid datatype",
			modify: func(r *InferRequest) { r.Inputs[0].Datatype = Invalid },
			want:   `input "a": invalid datatype INVALID`,
		},
		{
			name:   "rank mismatch",
			modify: func(r *InferRequest) { r.Inputs[0].Shape = []int64{8} },
			want:   `input "a": shape [8], model expects [-1,4]`,
		},
		{
			name:   "fixed dimension mismatch",
			modify: func(r *InferRequest) { r.Inputs[0].Shape, r.Inputs[0].Data = []int64{1, 5}, leF32(1, 2, 3, 4, 5) },
			want:   `input "a": shape [1,5], model expects [-1,4]`,
		},
		{
			name:   "negative dimension in request",
			modify: func(r *InferRequest) { r.Inputs[0].Shape = []int64{-1, 4} },
			want:   `input "a": shape [-1,4] has a negative dimension`,
		},
		{
			name:   "shape too large",
			modify: func(r *InferRequest) { r.Inputs[0].Shape = []int64{1 << 62, 4} },
			want:   `input "a": shape [4611686018427387904,4] has too many elements`,
		},
		{
			name:   "fixed-width data too short",
			modify: func(r *InferRequest) { r.Inputs[0].Data = r.Inputs[0].Data[:28] },
			want:   `input "a": data has 28 bytes, shape [2,4] of FP32 needs 32`,
		},
		{
			name:   "fixed-width data not a multiple of the width",
			modify: func(r *InferRequest) { r.Inputs[2].Data = append(r.Inputs[2].Data, 0) },
			want:   `input "c": data has 17 bytes, shape [2] of INT64 needs 16`,
		},
		{
			name:   "BYTES element count",
			modify: func(r *InferRequest) { r.Inputs[1].Shape, r.Inputs[1].Data = []int64{2, 2}, bytesData("p", "q", "r") },
			want:   `input "b": data has 3 elements, shape [2,2] needs 4`,
		},
		{
			name:   "BYTES truncated length prefix",
			modify: func(r *InferRequest) { r.Inputs[1].Data = append(bytesData("x"), 1, 0, 0) },
			want:   `input "b": BYTES element 1 at byte 5: length prefix truncated, 3 of 4 bytes`,
		},
		{
			name:   "BYTES element past the end",
			modify: func(r *InferRequest) { r.Inputs[1].Data = append(bytesData("x"), leU32(3)...) },
			want:   `input "b": BYTES element 1 at byte 5: length 3 runs past the end, 0 bytes left`,
		},
		{
			name:   "unknown output",
			modify: func(r *InferRequest) { r.Outputs = append(r.Outputs, RequestedOutput{Name: "w"}) },
			want:   `unknown output "w"; model "m" has outputs "y", "z"`,
		},
		{
			name:   "duplicate output",
			modify: func(r *InferRequest) { r.Outputs = append(r.Outputs, RequestedOutput{Name: "y"}) },
			want:   `duplicate output "y"`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			md := testMetadata()
			if tc.md != nil {
				tc.md(md)
			}
			req := validRequest()
			tc.modify(req)
			err := ValidateRequest(req, md)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ValidateRequest: %v", err)
				}
				return
			}
			checkError(t, err, KindInvalidArgument, tc.want)
		})
	}
}

func TestCountBytesElements(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		want    int64
		wantErr string
	}{
		{name: "nil", data: nil, want: 0},
		{name: "one empty element", data: leU32(0), want: 1},
		{name: "three", data: bytesData("a", "", "bcd"), want: 3},
		{name: "binary content", data: bytesData("\x00\x00\x00\x00\xff"), want: 1},
		{name: "short prefix", data: []byte{1}, want: 0, wantErr: "BYTES element 0 at byte 0: length prefix truncated, 1 of 4 bytes"},
		{name: "short element", data: append(bytesData("ab"), append(leU32(4), 'x')...), want: 1, wantErr: "BYTES element 1 at byte 6: length 4 runs past the end, 1 bytes left"},
		{name: "huge length", data: leU32(0xffffffff), want: 0, wantErr: "BYTES element 0 at byte 0: length 4294967295 runs past the end, 0 bytes left"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CountBytesElements(tc.data)
			if tc.wantErr != "" {
				checkError(t, err, KindInvalidArgument, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("CountBytesElements: %v", err)
			}
			if got != tc.want {
				t.Errorf("CountBytesElements = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestBatchSize(t *testing.T) {
	tests := []struct {
		name     string
		md       func(*ModelMetadata)
		modify   func(*InferRequest)
		want     int64
		wantKind Kind
		wantErr  string
	}{
		{name: "agreeing inputs", modify: func(*InferRequest) {}, want: 2},
		{name: "empty batch", modify: func(r *InferRequest) {
			for i := range r.Inputs {
				r.Inputs[i].Shape = append([]int64{0}, r.Inputs[i].Shape[1:]...)
			}
		}, want: 0},
		{
			name:     "inconsistent batch",
			modify:   func(r *InferRequest) { r.Inputs[2].Shape = []int64{3} },
			wantKind: KindInvalidArgument,
			wantErr:  `input "c": batch size 3, input "a" has 2`,
		},
		{
			name:     "scalar input",
			modify:   func(r *InferRequest) { r.Inputs[1].Shape = []int64{} },
			wantKind: KindInvalidArgument,
			wantErr:  `input "b": shape [] has no batch dimension`,
		},
		{
			name:     "negative batch",
			modify:   func(r *InferRequest) { r.Inputs[0].Shape = []int64{-2, 4} },
			wantKind: KindInvalidArgument,
			wantErr:  `input "a": negative batch size -2`,
		},
		{
			name:     "no inputs",
			modify:   func(r *InferRequest) { r.Inputs = nil },
			wantKind: KindInvalidArgument,
			wantErr:  `request has no inputs`,
		},
		{
			name:     "input with a fixed first dimension",
			md:       func(md *ModelMetadata) { md.Inputs[1].Shape = []int64{2, -1} },
			modify:   func(*InferRequest) {},
			wantKind: KindInternal,
			wantErr:  `model "m": input "b" has shape [2,-1] with no variable first dimension: model does not batch`,
		},
		{
			name:     "scalar output",
			md:       func(md *ModelMetadata) { md.Outputs[1].Shape = []int64{} },
			modify:   func(*InferRequest) {},
			wantKind: KindInternal,
			wantErr:  `model "m": output "z" has shape [] with no variable first dimension: model does not batch`,
		},
		{
			name:     "model without inputs",
			md:       func(md *ModelMetadata) { md.Inputs = nil },
			modify:   func(*InferRequest) {},
			wantKind: KindInternal,
			wantErr:  `model "m" has no inputs: model does not batch`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			md := testMetadata()
			if tc.md != nil {
				tc.md(md)
			}
			req := validRequest()
			tc.modify(req)
			got, err := BatchSize(req, md)
			if tc.wantErr != "" {
				checkError(t, err, tc.wantKind, tc.wantErr)
				if notBatchable := errors.Is(err, ErrNotBatchable); notBatchable != (tc.wantKind == KindInternal) {
					t.Errorf("errors.Is(err, ErrNotBatchable) = %v", notBatchable)
				}
				return
			}
			if err != nil {
				t.Fatalf("BatchSize: %v", err)
			}
			if got != tc.want {
				t.Errorf("BatchSize = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestValidateRequestAllocs(t *testing.T) {
	md, req := testMetadata(), validRequest()
	if n := testing.AllocsPerRun(100, func() { _ = ValidateRequest(req, md) }); n != 0 {
		t.Errorf("ValidateRequest of a valid request: %v allocs, want 0", n)
	}
}

func BenchmarkValidateRequest(b *testing.B) {
	md, req := testMetadata(), validRequest()
	b.ReportAllocs()
	for b.Loop() {
		if err := ValidateRequest(req, md); err != nil {
			b.Fatal(err)
		}
	}
}
