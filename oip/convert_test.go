package oip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/infergate/infergate/oip/inferencepb"
)

// Canonical little-endian encoders, written independently of convert.go.

func leU16(vs ...uint16) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint16(b, v)
	}
	return b
}

func leU32(vs ...uint32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return b
}

func leU64(vs ...uint64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

func leF32(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func leF64(vs ...float64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	return b
}

// bytesData returns the canonical BYTES form of elems.
func bytesData(elems ...string) []byte {
	var b []byte
	for _, e := range elems {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(e)))
		b = append(b, e...)
	}
	return b
}

// datatypeCase is one tensor of a datatype in both forms: canonical bytes
// and the typed contents the protocol assigns (nil for FP16 and BF16).
type datatypeCase struct {
	dt       DataType
	shape    []int64
	data     []byte
	contents *inferencepb.InferTensorContents
}

func datatypeCases() []datatypeCase {
	nan32 := float32(math.NaN())
	return []datatypeCase{
		{BOOL, []int64{2, 2}, []byte{1, 0, 0, 1},
			&inferencepb.InferTensorContents{BoolContents: []bool{true, false, false, true}}},
		{UINT8, []int64{3}, []byte{0, 127, 255},
			&inferencepb.InferTensorContents{UintContents: []uint32{0, 127, 255}}},
		{UINT16, []int64{3}, leU16(0, 0x1234, math.MaxUint16),
			&inferencepb.InferTensorContents{UintContents: []uint32{0, 0x1234, math.MaxUint16}}},
		{UINT32, []int64{1, 3}, leU32(0, 0x12345678, math.MaxUint32),
			&inferencepb.InferTensorContents{UintContents: []uint32{0, 0x12345678, math.MaxUint32}}},
		{UINT64, []int64{3}, leU64(0, 1<<63, math.MaxUint64),
			&inferencepb.InferTensorContents{Uint64Contents: []uint64{0, 1 << 63, math.MaxUint64}}},
		{INT8, []int64{4}, []byte{0x80, 0xff, 0, 0x7f},
			&inferencepb.InferTensorContents{IntContents: []int32{-128, -1, 0, 127}}},
		{INT16, []int64{3}, leU16(0x8000, 0xfffe, 0x7fff),
			&inferencepb.InferTensorContents{IntContents: []int32{-32768, -2, 32767}}},
		{INT32, []int64{3}, leU32(0x80000000, 0xfffffffd, 0x7fffffff),
			&inferencepb.InferTensorContents{IntContents: []int32{math.MinInt32, -3, math.MaxInt32}}},
		{INT64, []int64{3}, leU64(1<<63, math.MaxUint64-3, math.MaxInt64),
			&inferencepb.InferTensorContents{Int64Contents: []int64{math.MinInt64, -4, math.MaxInt64}}},
		{FP16, []int64{2}, leU16(0x3c00, 0xc000), nil},
		{FP32, []int64{2, 2}, leF32(1.5, float32(math.Copysign(0, -1)), float32(math.Inf(1)), nan32),
			&inferencepb.InferTensorContents{Fp32Contents: []float32{1.5, float32(math.Copysign(0, -1)), float32(math.Inf(1)), nan32}}},
		{FP64, []int64{3}, leF64(math.Pi, -1e300, math.Inf(-1)),
			&inferencepb.InferTensorContents{Fp64Contents: []float64{math.Pi, -1e300, math.Inf(-1)}}},
		{BYTES, []int64{3}, bytesData("", "hello", "\x00\xff"),
			&inferencepb.InferTensorContents{BytesContents: [][]byte{{}, []byte("hello"), {0, 0xff}}}},
		{BF16, []int64{1, 2}, leU16(0x3f80, 0x4000), nil},
	}
}

// cmpOpts compares our types and generated messages: nil and empty slices
// are equal (the wire does not tell them apart), and NaNs compare by bits
// because they live in Data as bytes, or in contents where protocmp equates
// them.
var cmpOpts = []cmp.Option{cmpopts.EquateEmpty(), protocmp.Transform(), cmpopts.EquateNaNs()}

// wire marshals m and unmarshals it into a new message of the same type, so
// that a test sees what a peer would: a wrong field number or a field that
// does not survive the wire shows up as a diff.
func wire[M proto.Message](t *testing.T, m M) M {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatalf("proto.Marshal: %v", err)
	}
	out := m.ProtoReflect().New().Interface().(M)
	if err := proto.Unmarshal(b, out); err != nil {
		t.Fatalf("proto.Unmarshal: %v", err)
	}
	return out
}

func allParams() Parameters {
	return Parameters{
		{Key: "a_bool", Kind: ParamBool, Bool: true},
		{Key: "b_int", Kind: ParamInt64, Int64: -7},
		{Key: "c_string", Kind: ParamString, String: "s"},
		{Key: "d_double", Kind: ParamDouble, Double: 2.5},
		{Key: "e_uint", Kind: ParamUint64, Uint64: math.MaxUint64},
	}
}

func TestRequestRoundTripRaw(t *testing.T) {
	all := &InferRequest{ModelName: "m", ModelVersion: "2", ID: "all", Parameters: allParams()}
	for _, dc := range datatypeCases() {
		all.Inputs = append(all.Inputs, Tensor{Name: "in_" + dc.dt.String(), Datatype: dc.dt, Shape: dc.shape, Data: dc.data})
		t.Run(dc.dt.String(), func(t *testing.T) {
			want := &InferRequest{
				ModelName:  "m",
				ID:         "42",
				Parameters: Parameters{{Key: ParamPriority, Kind: ParamInt64, Int64: 1}},
				Inputs: []Tensor{{
					Name: "x", Datatype: dc.dt, Shape: dc.shape, Data: dc.data,
					Parameters: Parameters{{Key: "content_type", Kind: ParamString, String: "np"}},
				}},
				Outputs: []RequestedOutput{{Name: "y", Parameters: Parameters{{Key: ParamBinaryData, Kind: ParamBool, Bool: true}}}},
			}
			m := RequestToProto(want)
			if len(m.RawInputContents) != 1 || m.Inputs[0].Contents != nil {
				t.Fatalf("RequestToProto did not use raw contents: %v", m)
			}
			var got InferRequest
			if err := RequestFromProto(wire(t, m), &got); err != nil {
				t.Fatalf("RequestFromProto: %v", err)
			}
			if diff := cmp.Diff(want, &got, cmpOpts...); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
	all.Inputs = append(all.Inputs, Tensor{Name: "empty", Datatype: FP32, Shape: []int64{0, 4}})
	all.Inputs = append(all.Inputs, Tensor{Name: "scalar", Datatype: INT32, Shape: []int64{}, Data: leU32(9)})
	t.Run("all", func(t *testing.T) {
		var got InferRequest
		if err := RequestFromProto(wire(t, RequestToProto(all)), &got); err != nil {
			t.Fatalf("RequestFromProto: %v", err)
		}
		if diff := cmp.Diff(all, &got, cmpOpts...); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	})
}

func TestRequestFromProtoTyped(t *testing.T) {
	for _, dc := range datatypeCases() {
		if dc.contents == nil {
			continue // FP16 and BF16 are raw only; see TestRequestFromProtoErrors.
		}
		t.Run(dc.dt.String(), func(t *testing.T) {
			m := &inferencepb.ModelInferRequest{
				ModelName: "m",
				Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
					{Name: "x", Datatype: dc.dt.String(), Shape: dc.shape, Contents: dc.contents},
					{Name: "empty", Datatype: dc.dt.String(), Shape: []int64{0}},
				},
			}
			want := &InferRequest{
				ModelName: "m",
				Inputs: []Tensor{
					{Name: "x", Datatype: dc.dt, Shape: dc.shape, Data: dc.data},
					{Name: "empty", Datatype: dc.dt, Shape: []int64{0}},
				},
			}
			var got InferRequest
			if err := RequestFromProto(wire(t, m), &got); err != nil {
				t.Fatalf("RequestFromProto: %v", err)
			}
			if diff := cmp.Diff(want, &got, cmpOpts...); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestResponseRoundTrip(t *testing.T) {
	for _, dc := range datatypeCases() {
		for _, raw := range []bool{true, false} {
			name := dc.dt.String() + "/typed"
			if raw {
				name = dc.dt.String() + "/raw"
			}
			t.Run(name, func(t *testing.T) {
				want := &InferResponse{
					ModelName: "m", ModelVersion: "3", ID: "42",
					Parameters: allParams(),
					Outputs: []Tensor{{
						Name: "y", Datatype: dc.dt, Shape: dc.shape, Data: dc.data,
						Parameters: Parameters{{Key: ParamBinaryDataSize, Kind: ParamInt64, Int64: int64(len(dc.data))}},
					}},
				}
				m := ResponseToProto(want, raw)
				wantRaw := raw || dc.contents == nil
				if gotRaw := len(m.RawOutputContents) > 0; gotRaw != wantRaw {
					t.Fatalf("ResponseToProto(raw=%v) for %s used raw=%v, want %v", raw, dc.dt, gotRaw, wantRaw)
				}
				if !wantRaw {
					if diff := cmp.Diff(dc.contents, m.Outputs[0].Contents, cmpOpts...); diff != "" {
						t.Errorf("typed contents (-want +got):\n%s", diff)
					}
				} else if m.Outputs[0].Contents != nil {
					t.Errorf("raw response also set contents: %v", m.Outputs[0].Contents)
				}
				var got InferResponse
				if err := ResponseFromProto(wire(t, m), &got); err != nil {
					t.Fatalf("ResponseFromProto: %v", err)
				}
				if diff := cmp.Diff(want, &got, cmpOpts...); diff != "" {
					t.Errorf("round trip (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestResponseToProtoHalfForcesRaw(t *testing.T) {
	for _, dt := range []DataType{FP16, BF16} {
		t.Run(dt.String(), func(t *testing.T) {
			resp := &InferResponse{Outputs: []Tensor{
				{Name: "a", Datatype: FP32, Shape: []int64{1}, Data: leF32(1)},
				{Name: "h", Datatype: dt, Shape: []int64{1}, Data: leU16(0x3c00)},
			}}
			m := ResponseToProto(resp, false)
			if diff := cmp.Diff([][]byte{leF32(1), leU16(0x3c00)}, m.RawOutputContents); diff != "" {
				t.Errorf("raw_output_contents (-want +got):\n%s", diff)
			}
			for _, o := range m.Outputs {
				if o.Contents != nil {
					t.Errorf("output %q set contents in a raw response", o.Name)
				}
			}
		})
	}
}

// rawReq returns a request for one input sent raw.
func rawReq(dt string, shape []int64, raw []byte) *inferencepb.ModelInferRequest {
	return &inferencepb.ModelInferRequest{
		Inputs:           []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: dt, Shape: shape}},
		RawInputContents: [][]byte{raw},
	}
}

// typedReq returns a request for one input sent in typed contents.
func typedReq(dt string, shape []int64, c *inferencepb.InferTensorContents) *inferencepb.ModelInferRequest {
	return &inferencepb.ModelInferRequest{
		Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: dt, Shape: shape, Contents: c}},
	}
}

func TestRequestFromProtoErrors(t *testing.T) {
	noValue := map[string]*inferencepb.InferParameter{"p": {}}
	tests := []struct {
		name string
		m    *inferencepb.ModelInferRequest
		want string
	}{
		{
			name: "raw and contents mixed",
			m: &inferencepb.ModelInferRequest{
				Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
					{Name: "a", Datatype: "FP32", Shape: []int64{1}},
					{Name: "b", Datatype: "FP32", Shape: []int64{1}, Contents: &inferencepb.InferTensorContents{Fp32Contents: []float32{1}}},
				},
				RawInputContents: [][]byte{leF32(1), leF32(2)},
			},
			want: `input "b": sets fp32_contents, but the message uses raw_input_contents (all or nothing)`,
		},
		{
			name: "fewer raw entries than inputs",
			m: &inferencepb.ModelInferRequest{
				Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
					{Name: "a", Datatype: "FP32", Shape: []int64{1}},
					{Name: "b", Datatype: "FP32", Shape: []int64{1}},
				},
				RawInputContents: [][]byte{leF32(1)},
			},
			want: `request has 1 raw_input_contents for 2 inputs`,
		},
		{
			name: "typed count mismatch",
			m:    typedReq("INT32", []int64{2, 2}, &inferencepb.InferTensorContents{IntContents: []int32{1, 2, 3}}),
			want: `input "x": int_contents has 3 elements, shape [2,2] needs 4`,
		},
		{
			name: "no data for a non-empty shape",
			m:    typedReq("FP32", []int64{2}, nil),
			want: `input "x": fp32_contents has 0 elements, shape [2] needs 2`,
		},
		{
			name: "raw size mismatch",
			m:    rawReq("FP32", []int64{2, 2}, leF32(1, 2, 3)),
			want: `input "x": raw_input_contents has 12 bytes, shape [2,2] of FP32 needs 16`,
		},
		{
			name: "raw size not a multiple of the width",
			m:    rawReq("INT64", []int64{1}, []byte{1, 2, 3}),
			want: `input "x": raw_input_contents has 3 bytes, shape [1] of INT64 needs 8`,
		},
		{
			name: "raw BYTES count mismatch",
			m:    rawReq("BYTES", []int64{2, 2}, bytesData("a", "b", "c")),
			want: `input "x": raw_input_contents has 3 elements, shape [2,2] needs 4`,
		},
		{
			name: "raw BYTES truncated prefix",
			m:    rawReq("BYTES", []int64{2}, append(bytesData("ab"), 1, 0)),
			want: `input "x": raw_input_contents: BYTES element 1 at byte 6: length prefix truncated, 2 of 4 bytes`,
		},
		{
			name: "raw BYTES element past the end",
			m:    rawReq("BYTES", []int64{1}, leU32(10)),
			want: `input "x": raw_input_contents: BYTES element 0 at byte 0: length 10 runs past the end, 0 bytes left`,
		},
		{
			name: "INT8 above range",
			m:    typedReq("INT8", []int64{2}, &inferencepb.InferTensorContents{IntContents: []int32{1, 300}}),
			want: `input "x": int_contents[1] = 300 is out of range for INT8`,
		},
		{
			name: "INT8 below range",
			m:    typedReq("INT8", []int64{1}, &inferencepb.InferTensorContents{IntContents: []int32{-129}}),
			want: `input "x": int_contents[0] = -129 is out of range for INT8`,
		},
		{
			name: "INT16 out of range",
			m:    typedReq("INT16", []int64{1}, &inferencepb.InferTensorContents{IntContents: []int32{40000}}),
			want: `input "x": int_contents[0] = 40000 is out of range for INT16`,
		},
		{
			name: "UINT8 out of range",
			m:    typedReq("UINT8", []int64{1}, &inferencepb.InferTensorContents{UintContents: []uint32{256}}),
			want: `input "x": uint_contents[0] = 256 is out of range for UINT8`,
		},
		{
			name: "UINT16 out of range",
			m:    typedReq("UINT16", []int64{1}, &inferencepb.InferTensorContents{UintContents: []uint32{70000}}),
			want: `input "x": uint_contents[0] = 70000 is out of range for UINT16`,
		},
		{
			name: "contents in the wrong field",
			m:    typedReq("INT32", []int64{1}, &inferencepb.InferTensorContents{Fp32Contents: []float32{1}}),
			want: `input "x": datatype INT32 takes int_contents, got fp32_contents`,
		},
		{
			name: "contents in two fields",
			m:    typedReq("INT64", []int64{1}, &inferencepb.InferTensorContents{Int64Contents: []int64{1}, IntContents: []int32{1}}),
			want: `input "x": datatype INT64 takes int64_contents, got int_contents`,
		},
		{
			name: "FP16 typed",
			m:    typedReq("FP16", []int64{1}, &inferencepb.InferTensorContents{Fp32Contents: []float32{1}}),
			want: `input "x": FP16 data must be sent in raw_input_contents`,
		},
		{
			name: "BF16 without data",
			m:    typedReq("BF16", []int64{1}, nil),
			want: `input "x": BF16 data must be sent in raw_input_contents`,
		},
		{
			name: "unknown datatype",
			m:    rawReq("FLOAT32", []int64{1}, leF32(1)),
			want: `input "x": unknown datatype "FLOAT32"`,
		},
		{
			name: "lower-case datatype",
			m:    rawReq("fp32", []int64{1}, leF32(1)),
			want: `input "x": unknown datatype "fp32"`,
		},
		{
			name: "negative dimension",
			m:    rawReq("FP32", []int64{-1, 4}, leF32(1, 2, 3, 4)),
			want: `input "x": invalid shape [-1,4]`,
		},
		{
			name: "request parameter without value",
			m:    &inferencepb.ModelInferRequest{Parameters: noValue},
			want: `parameter "p" has no value`,
		},
		{
			name: "input parameter without value",
			m: &inferencepb.ModelInferRequest{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
				{Name: "x", Datatype: "FP32", Shape: []int64{0}, Parameters: noValue},
			}},
			want: `input "x": parameter "p" has no value`,
		},
		{
			name: "output parameter without value",
			m: &inferencepb.ModelInferRequest{Outputs: []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{
				{Name: "y", Parameters: noValue},
			}},
			want: `output "y": parameter "p" has no value`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var req InferRequest
			err := RequestFromProto(wire(t, tc.m), &req)
			checkError(t, err, KindInvalidArgument, tc.want)
		})
	}
}

// checkError fails unless err is an *Error of kind k whose message is want.
func checkError(t *testing.T, err error, k Kind, want string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v (%T), want *Error %q", err, err, want)
	}
	if e.Kind != k {
		t.Errorf("kind = %v, want %v", e.Kind, k)
	}
	if got := err.Error(); got != want {
		t.Errorf("message:\n got %s\nwant %s", got, want)
	}
}

func TestRequestFromProtoAccepts(t *testing.T) {
	tests := []struct {
		name string
		m    *inferencepb.ModelInferRequest
		want *InferRequest
	}{
		{
			name: "empty contents beside raw",
			m: &inferencepb.ModelInferRequest{
				Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
					{Name: "x", Datatype: "FP32", Shape: []int64{1}, Contents: &inferencepb.InferTensorContents{}},
				},
				RawInputContents: [][]byte{leF32(1)},
			},
			want: &InferRequest{Inputs: []Tensor{{Name: "x", Datatype: FP32, Shape: []int64{1}, Data: leF32(1)}}},
		},
		{
			name: "empty FP16 without raw",
			m:    typedReq("FP16", []int64{0, 2}, nil),
			want: &InferRequest{Inputs: []Tensor{{Name: "x", Datatype: FP16, Shape: []int64{0, 2}}}},
		},
		{
			name: "parameters sorted by key",
			m: &inferencepb.ModelInferRequest{Parameters: map[string]*inferencepb.InferParameter{
				"z": {ParameterChoice: &inferencepb.InferParameter_BoolParam{BoolParam: true}},
				"a": {ParameterChoice: &inferencepb.InferParameter_Int64Param{Int64Param: 1}},
				"m": {ParameterChoice: &inferencepb.InferParameter_DoubleParam{DoubleParam: 0.5}},
				"b": {ParameterChoice: &inferencepb.InferParameter_Uint64Param{Uint64Param: 2}},
				"c": {ParameterChoice: &inferencepb.InferParameter_StringParam{StringParam: "s"}},
			}},
			want: &InferRequest{Parameters: Parameters{
				{Key: "a", Kind: ParamInt64, Int64: 1},
				{Key: "b", Kind: ParamUint64, Uint64: 2},
				{Key: "c", Kind: ParamString, String: "s"},
				{Key: "m", Kind: ParamDouble, Double: 0.5},
				{Key: "z", Kind: ParamBool, Bool: true},
			}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got InferRequest
			if err := RequestFromProto(wire(t, tc.m), &got); err != nil {
				t.Fatalf("RequestFromProto: %v", err)
			}
			if diff := cmp.Diff(tc.want, &got, cmpOpts...); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestRequestFromProtoReusesRequest(t *testing.T) {
	req := &InferRequest{
		ModelName: "old", ModelVersion: "9", ID: "old",
		Parameters: Parameters{{Key: "old", Kind: ParamBool}, {Key: "old2", Kind: ParamBool}},
		Inputs:     make([]Tensor, 3, 8),
		Outputs:    []RequestedOutput{{Name: "old"}},
	}
	inputs := &req.Inputs[0]
	m := rawReq("UINT8", []int64{2}, []byte{1, 2})
	m.ModelName = "new"
	if err := RequestFromProto(m, req); err != nil {
		t.Fatalf("RequestFromProto: %v", err)
	}
	want := &InferRequest{ModelName: "new", Inputs: []Tensor{{Name: "x", Datatype: UINT8, Shape: []int64{2}, Data: []byte{1, 2}}}}
	if diff := cmp.Diff(want, req, cmpOpts...); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if &req.Inputs[0] != inputs {
		t.Errorf("Inputs was reallocated; want its capacity reused")
	}
}

func TestRequestFromProtoAliasing(t *testing.T) {
	raw := leF32(1, 2)
	m := rawReq("FP32", []int64{1, 2}, raw)
	var req InferRequest
	if err := RequestFromProto(m, &req); err != nil {
		t.Fatalf("RequestFromProto: %v", err)
	}
	in := &req.Inputs[0]
	if &in.Data[0] != &raw[0] {
		t.Errorf("raw Data was copied; want it to reference raw_input_contents")
	}
	if cap(in.Data) != len(in.Data) {
		t.Errorf("cap(Data) = %d, want %d so that appending copies", cap(in.Data), len(in.Data))
	}
	in.Shape[0] = 7
	if m.Inputs[0].Shape[0] != 1 {
		t.Errorf("writing the converted shape changed the message's shape")
	}

	back := RequestToProto(&req)
	if &back.RawInputContents[0][0] != &raw[0] {
		t.Errorf("RequestToProto copied Data; want it referenced")
	}
}

func TestResponseFromProtoErrors(t *testing.T) {
	tests := []struct {
		name string
		m    *inferencepb.ModelInferResponse
		want string
	}{
		{
			name: "unknown datatype",
			m: &inferencepb.ModelInferResponse{
				Outputs:           []*inferencepb.ModelInferResponse_InferOutputTensor{{Name: "y", Datatype: "STRING", Shape: []int64{1}}},
				RawOutputContents: [][]byte{bytesData("a")},
			},
			want: `output "y": unknown datatype "STRING"`,
		},
		{
			name: "raw count mismatch",
			m: &inferencepb.ModelInferResponse{
				Outputs:           []*inferencepb.ModelInferResponse_InferOutputTensor{{Name: "y", Datatype: "FP32", Shape: []int64{1}}},
				RawOutputContents: [][]byte{leF32(1), leF32(2)},
			},
			want: `response has 2 raw_output_contents for 1 outputs`,
		},
		{
			name: "raw size mismatch",
			m: &inferencepb.ModelInferResponse{
				Outputs:           []*inferencepb.ModelInferResponse_InferOutputTensor{{Name: "y", Datatype: "FP64", Shape: []int64{2}}},
				RawOutputContents: [][]byte{leF64(1)},
			},
			want: `output "y": raw_output_contents has 8 bytes, shape [2] of FP64 needs 16`,
		},
		{
			name: "mixed",
			m: &inferencepb.ModelInferResponse{
				Outputs: []*inferencepb.ModelInferResponse_InferOutputTensor{{
					Name: "y", Datatype: "FP64", Shape: []int64{1},
					Contents: &inferencepb.InferTensorContents{Fp64Contents: []float64{1}},
				}},
				RawOutputContents: [][]byte{leF64(1)},
			},
			want: `output "y": sets fp64_contents, but the message uses raw_output_contents (all or nothing)`,
		},
		{
			name: "typed count mismatch",
			m: &inferencepb.ModelInferResponse{
				Outputs: []*inferencepb.ModelInferResponse_InferOutputTensor{{
					Name: "y", Datatype: "BOOL", Shape: []int64{3},
					Contents: &inferencepb.InferTensorContents{BoolContents: []bool{true}},
				}},
			},
			want: `output "y": bool_contents has 1 elements, shape [3] needs 3`,
		},
		{
			name: "typed out of range",
			m: &inferencepb.ModelInferResponse{
				Outputs: []*inferencepb.ModelInferResponse_InferOutputTensor{{
					Name: "y", Datatype: "UINT8", Shape: []int64{1},
					Contents: &inferencepb.InferTensorContents{UintContents: []uint32{1000}},
				}},
			},
			want: `output "y": uint_contents[0] = 1000 is out of range for UINT8`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var resp InferResponse
			err := ResponseFromProto(wire(t, tc.m), &resp)
			checkError(t, err, KindInternal, tc.want)
		})
	}
}

func TestParametersProto(t *testing.T) {
	t.Run("round trip", func(t *testing.T) {
		ps := allParams()
		m := wire(t, &inferencepb.ModelInferRequest{Parameters: ParametersToProto(ps)})
		got, err := ParametersFromProto(nil, m.Parameters)
		if err != nil {
			t.Fatalf("ParametersFromProto: %v", err)
		}
		if diff := cmp.Diff(ps, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("appends after dst", func(t *testing.T) {
		dst := Parameters{{Key: "z", Kind: ParamBool}}
		got, err := ParametersFromProto(dst, map[string]*inferencepb.InferParameter{
			"b": {ParameterChoice: &inferencepb.InferParameter_BoolParam{}},
			"a": {ParameterChoice: &inferencepb.InferParameter_BoolParam{}},
		})
		if err != nil {
			t.Fatalf("ParametersFromProto: %v", err)
		}
		want := Parameters{{Key: "z", Kind: ParamBool}, {Key: "a", Kind: ParamBool}, {Key: "b", Kind: ParamBool}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("nil parameter", func(t *testing.T) {
		_, err := ParametersFromProto(nil, map[string]*inferencepb.InferParameter{"k": nil})
		checkError(t, err, KindInvalidArgument, `parameter "k" has no value`)
	})
	t.Run("empty is nil", func(t *testing.T) {
		if m := ParametersToProto(nil); m != nil {
			t.Errorf("ParametersToProto(nil) = %v, want nil", m)
		}
	})
	t.Run("kindless dropped, last wins", func(t *testing.T) {
		got := ParametersToProto(Parameters{
			{Key: "none", String: "x"},
			{Key: "k", Kind: ParamInt64, Int64: 1},
			{Key: "k", Kind: ParamInt64, Int64: 2},
		})
		want := map[string]*inferencepb.InferParameter{"k": {ParameterChoice: &inferencepb.InferParameter_Int64Param{Int64Param: 2}}}
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

func TestMetadataProto(t *testing.T) {
	md := &ModelMetadata{
		Name: "m", Versions: []string{"1", "2"}, Platform: "onnx_onnxv1",
		Inputs: []TensorMetadata{
			{Name: "a", Datatype: FP32, Shape: []int64{-1, 784}},
			{Name: "s", Datatype: BYTES, Shape: []int64{}},
		},
		Outputs: []TensorMetadata{{Name: "y", Datatype: BF16, Shape: []int64{-1, 10}}},
	}
	t.Run("round trip", func(t *testing.T) {
		got, err := MetadataFromProto(wire(t, MetadataToProto(md)))
		if err != nil {
			t.Fatalf("MetadataFromProto: %v", err)
		}
		if diff := cmp.Diff(md, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("no shared memory", func(t *testing.T) {
		m := MetadataToProto(md)
		m.Inputs[0].Shape[0] = 5
		got, err := MetadataFromProto(m)
		if err != nil {
			t.Fatalf("MetadataFromProto: %v", err)
		}
		m.Inputs[0].Shape[1] = 5
		if md.Inputs[0].Shape[0] != -1 || got.Inputs[0].Shape[1] != 784 {
			t.Errorf("metadata shares shapes with the message")
		}
	})
	t.Run("absent lists are empty", func(t *testing.T) {
		got, err := MetadataFromProto(&inferencepb.ModelMetadataResponse{Name: "m"})
		if err != nil {
			t.Fatalf("MetadataFromProto: %v", err)
		}
		if got.Inputs == nil || got.Outputs == nil {
			t.Errorf("Inputs or Outputs is nil; want empty so JSON says []")
		}
	})
	t.Run("unknown datatype", func(t *testing.T) {
		m := MetadataToProto(md)
		m.Outputs[0].Datatype = "TYPE_FP32"
		_, err := MetadataFromProto(m)
		checkError(t, err, KindInternal, `model "m": output "y": unknown datatype "TYPE_FP32"`)
	})
}

func TestServerMetadataProto(t *testing.T) {
	sm := &ServerMetadata{Name: "infergate", Version: "0.1", Extensions: []string{"binary_tensor_data"}}
	got := ServerMetadataFromProto(wire(t, ServerMetadataToProto(sm)))
	if diff := cmp.Diff(sm, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := ServerMetadataFromProto(&inferencepb.ServerMetadataResponse{}); got.Extensions == nil {
		t.Errorf("Extensions is nil; want empty so JSON says []")
	}
}

// mnistRequest returns a 64x784 FP32 request as a gateway would receive it
// over gRPC.
func mnistRequest(typed bool) *inferencepb.ModelInferRequest {
	const n = 64 * 784
	m := &inferencepb.ModelInferRequest{
		ModelName: "mnist",
		Id:        "1",
		Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
			{Name: "input", Datatype: "FP32", Shape: []int64{64, 784}},
		},
		Outputs: []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{{Name: "output"}},
	}
	if typed {
		m.Inputs[0].Contents = &inferencepb.InferTensorContents{Fp32Contents: make([]float32, n)}
	} else {
		m.RawInputContents = [][]byte{make([]byte, 4*n)}
	}
	return m
}

func TestRequestFromProtoAllocs(t *testing.T) {
	m := mnistRequest(false)
	var req InferRequest
	if err := RequestFromProto(m, &req); err != nil {
		t.Fatal(err)
	}
	// One allocation: the copy of the shapes. Data is referenced.
	if n := testing.AllocsPerRun(100, func() { _ = RequestFromProto(m, &req) }); n > 1 {
		t.Errorf("RequestFromProto raw into a reused request: %v allocs, want <= 1", n)
	}
}

func BenchmarkRequestFromProto(b *testing.B) {
	for _, bc := range []struct {
		name  string
		typed bool
	}{{"64x784_raw", false}, {"64x784_typed", true}} {
		m := mnistRequest(bc.typed)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(64 * 784 * 4)
			var req InferRequest
			for b.Loop() {
				if err := RequestFromProto(m, &req); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"_parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(64 * 784 * 4)
			b.RunParallel(func(pb *testing.PB) {
				var req InferRequest
				for pb.Next() {
					if err := RequestFromProto(m, &req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func BenchmarkResponseToProto(b *testing.B) {
	resp := &InferResponse{
		ModelName: "mnist", ID: "1",
		Outputs: []Tensor{{Name: "output", Datatype: FP32, Shape: []int64{64, 10}, Data: make([]byte, 64*10*4)}},
	}
	for _, raw := range []bool{true, false} {
		name := "64x10_typed"
		if raw {
			name = "64x10_raw"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = ResponseToProto(resp, raw)
			}
		})
		b.Run(name+"_parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_ = ResponseToProto(resp, raw)
				}
			})
		})
	}
}

// FuzzRequestFromProto feeds arbitrary wire bytes through the decoder. What
// it accepts must hold exactly the elements its shapes say, and must survive
// RequestToProto and back unchanged.
func FuzzRequestFromProto(f *testing.F) {
	for _, dc := range datatypeCases() {
		req := &InferRequest{Parameters: allParams(), Inputs: []Tensor{{Name: "x", Datatype: dc.dt, Shape: dc.shape, Data: dc.data}}}
		b, err := proto.Marshal(RequestToProto(req))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		if dc.contents != nil {
			b, err := proto.Marshal(typedReq(dc.dt.String(), dc.shape, dc.contents))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m inferencepb.ModelInferRequest
		if proto.Unmarshal(b, &m) != nil {
			return
		}
		var req InferRequest
		if err := RequestFromProto(&m, &req); err != nil {
			if KindOf(err) != KindInvalidArgument {
				t.Fatalf("error of kind %v: %v", KindOf(err), err)
			}
			return
		}
		for i := range req.Inputs {
			if err := CheckData(&req.Inputs[i]); err != nil {
				t.Fatalf("accepted a tensor whose data does not match its shape: %v", err)
			}
		}
		var again InferRequest
		if err := RequestFromProto(wire(t, RequestToProto(&req)), &again); err != nil {
			t.Fatalf("RequestFromProto(RequestToProto(req)): %v", err)
		}
		if diff := cmp.Diff(&req, &again, cmpOpts...); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	})
}

// FuzzCountBytesElements checks the BYTES walker against a rebuild: a
// buffer it accepts re-encodes from its elements to the same bytes.
func FuzzCountBytesElements(f *testing.F) {
	f.Add(bytesData("a", "", "bcd"))
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := CountBytesElements(data)
		if err != nil {
			return
		}
		var c inferencepb.InferTensorContents
		fillContents(&c, BYTES, data)
		if int64(len(c.BytesContents)) != n {
			t.Fatalf("CountBytesElements = %d, fillContents found %d", n, len(c.BytesContents))
		}
		got, _ := contentsToData(&c, BYTES)
		if !bytes.Equal(got, data) {
			t.Fatalf("re-encoded %x, want %x", got, data)
		}
	})
}
