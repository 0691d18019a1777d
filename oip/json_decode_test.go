package oip

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// codecLE returns the little-endian bytes of a slice of fixed-size numbers.
func codecLE(vs any) []byte {
	b, err := binary.Append(nil, binary.LittleEndian, vs)
	if err != nil {
		panic(err)
	}
	return b
}

// codecBytes returns the canonical BYTES form of elems.
func codecBytes(elems ...string) []byte {
	var b []byte
	for _, e := range elems {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(e)))
		b = append(b, e...)
	}
	return b
}

// codecDiffOpts treat nil and empty slices alike.
var codecDiffOpts = cmp.Options{cmpopts.EquateEmpty()}

func fp32(name string, shape []int64, vs ...float32) Tensor {
	return Tensor{Name: name, Datatype: FP32, Shape: shape, Data: codecLE(vs)}
}

func TestDecodeInferRequest(t *testing.T) {
	nan32 := math.Float32frombits(0x7fc00000)
	tests := []struct {
		name   string
		body   string
		framed bool   // send Inference-Header-Content-Length: len(body)
		tail   string // the binary part, after body
		want   InferRequest
	}{{
		name: "flat FP32",
		body: `{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1.5,-2]}]}`,
		want: InferRequest{Inputs: []Tensor{fp32("x", []int64{2}, 1.5, -2)}},
	}, {
		name: "nested data to any depth",
		body: `{"inputs":[{"name":"x","shape":[2,2,1],"datatype":"FP32","data":[[[1],[2]],[[3],[4]]]}]}`,
		want: InferRequest{Inputs: []Tensor{fp32("x", []int64{2, 2, 1}, 1, 2, 3, 4)}},
	}, {
		name: "ragged nesting counts elements only",
		body: `{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[[1],[[2],3]]}]}`,
		want: InferRequest{Inputs: []Tensor{fp32("x", []int64{3}, 1, 2, 3)}},
	}, {
		name: "empty tensors",
		body: `{"inputs":[{"name":"a","shape":[0],"datatype":"FP32","data":[]},{"name":"b","shape":[2,0],"datatype":"FP32","data":[[],[ ]]}]}`,
		want: InferRequest{Inputs: []Tensor{fp32("a", []int64{0}), fp32("b", []int64{2, 0})}},
	}, {
		name: "scalar shape has one element",
		body: `{"inputs":[{"name":"x","shape":[],"datatype":"FP32","data":[7]}]}`,
		want: InferRequest{Inputs: []Tensor{fp32("x", []int64{}, 7)}},
	}, {
		name: "every datatype at its limits",
		body: `{"inputs":[
			{"name":"bool","shape":[2],"datatype":"BOOL","data":[true,false]},
			{"name":"u8","shape":[2],"datatype":"UINT8","data":[0,255]},
			{"name":"u16","shape":[2],"datatype":"UINT16","data":[-0,65535]},
			{"name":"u32","shape":[2],"datatype":"UINT32","data":[1,4294967295]},
			{"name":"u64","shape":[2],"datatype":"UINT64","data":[2,18446744073709551615]},
			{"name":"i8","shape":[2],"datatype":"INT8","data":[-128,127]},
			{"name":"i16","shape":[2],"datatype":"INT16","data":[-32768,32767]},
			{"name":"i32","shape":[2],"datatype":"INT32","data":[-2147483648,2147483647]},
			{"name":"i64","shape":[2],"datatype":"INT64","data":[-9223372036854775808,9223372036854775807]},
			{"name":"f16","shape":[3],"datatype":"FP16","data":[0.1,-65504,5.960464477539063e-8]},
			{"name":"f32","shape":[3],"datatype":"FP32","data":[0.1,3.4028235e38,1e-45]},
			{"name":"f64","shape":[3],"datatype":"FP64","data":[0.1,1.7976931348623157e308,5e-324]},
			{"name":"bytes","shape":[2],"datatype":"BYTES","data":["","héllo"]},
			{"name":"bf16","shape":[2],"datatype":"BF16","data":[0.1,-3.3895313892515355e38]}]}`,
		want: InferRequest{Inputs: []Tensor{
			{Name: "bool", Datatype: BOOL, Shape: []int64{2}, Data: []byte{1, 0}},
			{Name: "u8", Datatype: UINT8, Shape: []int64{2}, Data: []byte{0, 255}},
			{Name: "u16", Datatype: UINT16, Shape: []int64{2}, Data: codecLE([]uint16{0, 65535})},
			{Name: "u32", Datatype: UINT32, Shape: []int64{2}, Data: codecLE([]uint32{1, math.MaxUint32})},
			{Name: "u64", Datatype: UINT64, Shape: []int64{2}, Data: codecLE([]uint64{2, math.MaxUint64})},
			{Name: "i8", Datatype: INT8, Shape: []int64{2}, Data: codecLE([]int8{-128, 127})},
			{Name: "i16", Datatype: INT16, Shape: []int64{2}, Data: codecLE([]int16{-32768, 32767})},
			{Name: "i32", Datatype: INT32, Shape: []int64{2}, Data: codecLE([]int32{math.MinInt32, math.MaxInt32})},
			{Name: "i64", Datatype: INT64, Shape: []int64{2}, Data: codecLE([]int64{math.MinInt64, math.MaxInt64})},
			{Name: "f16", Datatype: FP16, Shape: []int64{3}, Data: codecLE([]uint16{0x2e66, 0xfbff, 0x0001})},
			fp32("f32", []int64{3}, 0.1, math.MaxFloat32, math.SmallestNonzeroFloat32),
			{Name: "f64", Datatype: FP64, Shape: []int64{3}, Data: codecLE([]float64{0.1, math.MaxFloat64, math.SmallestNonzeroFloat64})},
			{Name: "bytes", Datatype: BYTES, Shape: []int64{2}, Data: codecBytes("", "héllo")},
			{Name: "bf16", Datatype: BF16, Shape: []int64{2}, Data: codecLE([]uint16{0x3dcd, 0xff7f})},
		}},
	}, {
		name: "id, parameters of every kind and requested outputs",
		body: `{"id":"req-1","parameters":{"s":"v","i":-3,"b":true,"f":false,"d":0.5,"e":1e3,"u":18446744073709551615,"neg":-18446744073709551616},
			"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"content_type":"np"},"data":[1]}],
			"outputs":[{"name":"y","parameters":{"binary_data":true,"classification":3}},{"name":"z"}]}`,
		want: InferRequest{
			ID: "req-1",
			Parameters: Parameters{
				{Key: "s", Kind: ParamString, String: "v"},
				{Key: "i", Kind: ParamInt64, Int64: -3},
				{Key: "b", Kind: ParamBool, Bool: true},
				{Key: "f", Kind: ParamBool, Bool: false},
				{Key: "d", Kind: ParamDouble, Double: 0.5},
				{Key: "e", Kind: ParamDouble, Double: 1000},
				{Key: "u", Kind: ParamUint64, Uint64: math.MaxUint64},
				{Key: "neg", Kind: ParamDouble, Double: -18446744073709551616},
			},
			Inputs: []Tensor{{Name: "x", Datatype: FP32, Shape: []int64{1},
				Parameters: Parameters{{Key: "content_type", Kind: ParamString, String: "np"}}, Data: codecLE([]float32{1})}},
			Outputs: []RequestedOutput{
				{Name: "y", Parameters: Parameters{{Key: "binary_data", Kind: ParamBool, Bool: true}, {Key: "classification", Kind: ParamInt64, Int64: 3}}},
				{Name: "z"},
			},
		},
	}, {
		name: "unknown fields are skipped and null means absent",
		body: `{"foo":{"a":[1,{"b":null}],"c":"\u0041"},"id":null,"parameters":null,"outputs":null,
			"inputs":[{"name":"x","extra":[true,false,null,-1.5e-3],"shape":[1],"datatype":"FP32","parameters":null,"data":[2]}]}`,
		want: InferRequest{Inputs: []Tensor{fp32("x", []int64{1}, 2)}},
	}, {
		name: "data before datatype and shape",
		body: `{"inputs":[{"data":[[1,2],[3,4]],"name":"x","datatype":"FP32","shape":[2,2]}]}`,
		want: InferRequest{Inputs: []Tensor{fp32("x", []int64{2, 2}, 1, 2, 3, 4)}},
	}, {
		name: "data before shape",
		body: `{"inputs":[{"datatype":"INT8","data":[1,2],"name":"x","shape":[2]}]}`,
		want: InferRequest{Inputs: []Tensor{{Name: "x", Datatype: INT8, Shape: []int64{2}, Data: []byte{1, 2}}}},
	}, {
		name: "whitespace everywhere",
		body: " \n{ \"inputs\" :\t[ { \"name\" : \"x\" , \"shape\" : [ 2 ] , \"datatype\" : \"FP32\" , \"data\" : [ [ 1 ] , [ 2 ] ] } ] } \r\n",
		want: InferRequest{Inputs: []Tensor{fp32("x", []int64{2}, 1, 2)}},
	}, {
		name: "string escapes and invalid UTF-8",
		body: `{"id":"a\"b\\c\/\b\f\n\r\t\u00e9\ud83d\ude00\ud800x","inputs":[{"name":"x\u0000","shape":[2],"datatype":"BYTES","data":["\u0041\n","` +
			"\xff\xfe" + `"]}]}`,
		want: InferRequest{ID: "a\"b\\c/\b\f\n\r\té😀\uFFFDx", Inputs: []Tensor{
			{Name: "x\x00", Datatype: BYTES, Shape: []int64{2}, Data: codecBytes("A\n", "\uFFFD\uFFFD")}}},
	}, {
		name: "non-finite floats as strings",
		body: `{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":["NaN","Infinity","-Infinity"]},{"name":"h","shape":[2],"datatype":"FP16","data":["-Infinity",-0]}]}`,
		want: InferRequest{Inputs: []Tensor{fp32("x", []int64{3}, nan32, float32(math.Inf(1)), float32(math.Inf(-1))),
			{Name: "h", Datatype: FP16, Shape: []int64{2}, Data: codecLE([]uint16{0xfc00, 0x8000})}}},
	}, {
		name:   "binary input",
		body:   `{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}`,
		framed: true,
		tail:   string(codecLE([]float32{1, 2})),
		want:   InferRequest{Inputs: []Tensor{fp32("x", []int64{2}, 1, 2)}},
	}, {
		name: "mixed JSON and binary inputs take binary data in order",
		body: `{"inputs":[{"name":"a","shape":[1],"datatype":"INT32","parameters":{"p":1,"binary_data_size":4}},` +
			`{"name":"b","shape":[1],"datatype":"INT32","data":[5]},` +
			`{"name":"c","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":11}},` +
			`{"name":"d","shape":[0],"datatype":"FP64","parameters":{"binary_data_size":0}}]}`,
		framed: true,
		tail:   string(codecLE([]int32{7})) + string(codecBytes("abc", "")),
		want: InferRequest{Inputs: []Tensor{
			{Name: "a", Datatype: INT32, Shape: []int64{1}, Parameters: Parameters{{Key: "p", Kind: ParamInt64, Int64: 1}}, Data: codecLE([]int32{7})},
			{Name: "b", Datatype: INT32, Shape: []int64{1}, Data: codecLE([]int32{5})},
			{Name: "c", Datatype: BYTES, Shape: []int64{2}, Data: codecBytes("abc", "")},
			{Name: "d", Datatype: FP64, Shape: []int64{0}},
		}},
	}, {
		name:   "binary header with no binary tensors",
		body:   `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`,
		framed: true,
		want:   InferRequest{Inputs: []Tensor{fp32("x", []int64{1}, 1)}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			headerLen := -1
			if tc.framed {
				headerLen = len(tc.body)
			}
			var got InferRequest
			if err := DecodeInferRequest([]byte(tc.body+tc.tail), headerLen, &got); err != nil {
				t.Fatalf("DecodeInferRequest: %v", err)
			}
			if diff := cmp.Diff(tc.want, got, codecDiffOpts); diff != "" {
				t.Errorf("DecodeInferRequest mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeInferResponse(t *testing.T) {
	header := `{"model_name":"m","model_version":"2","id":"r","parameters":{"sequence_end":true},"unknown":[{}],"outputs":[` +
		`{"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}},` +
		`{"name":"b","shape":[1,2],"datatype":"UINT8","data":[[1,2]]}]}`
	body := header + string(codecLE([]float32{0.5, -1}))
	want := InferResponse{
		ModelName: "m", ModelVersion: "2", ID: "r",
		Parameters: Parameters{{Key: "sequence_end", Kind: ParamBool, Bool: true}},
		Outputs: []Tensor{
			fp32("a", []int64{2}, 0.5, -1),
			{Name: "b", Datatype: UINT8, Shape: []int64{1, 2}, Data: []byte{1, 2}},
		},
	}
	var got InferResponse
	if err := DecodeInferResponse([]byte(body), len(header), &got); err != nil {
		t.Fatalf("DecodeInferResponse: %v", err)
	}
	if diff := cmp.Diff(want, got, codecDiffOpts); diff != "" {
		t.Errorf("DecodeInferResponse mismatch (-want +got):\n%s", diff)
	}
	if err := DecodeInferResponse([]byte(body), len(header)+1, &got); err == nil || !strings.Contains(err.Error(), `output "a"`) {
		t.Errorf("DecodeInferResponse with a header 1 byte long = %v, want an error naming output \"a\"", err)
	}
	// A response must have outputs, even none: without the member it is
	// no answer (a runtime that broke), not an empty one.
	if err := DecodeInferResponse([]byte(`{"model_name":"m"}`), -1, &got); err == nil || !strings.Contains(err.Error(), `no "outputs"`) {
		t.Errorf("DecodeInferResponse without outputs = %v, want an error", err)
	}
	if err := DecodeInferResponse([]byte(`{"model_name":"m","outputs":[]}`), -1, &got); err != nil {
		t.Errorf("DecodeInferResponse with no output = %v", err)
	}
}

// checkDecodeError checks that err is an *Error of KindInvalidArgument whose
// message contains want.
func checkDecodeError(t *testing.T, err error, want string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v (%T), want an *Error containing %q", err, err, want)
	}
	if e.Kind != KindInvalidArgument {
		t.Errorf("error kind = %v, want %v", e.Kind, KindInvalidArgument)
	}
	if !strings.Contains(e.Error(), want) {
		t.Errorf("error = %q, want it to contain %q", e.Error(), want)
	}
}

func TestDecodeInferRequestErrors(t *testing.T) {
	in := func(fields string) string { return `{"inputs":[{"name":"x",` + fields + `}]}` }
	bin := func(fields string, binary []byte) (string, int) {
		h := in(fields)
		return h + string(binary), len(h)
	}
	type errCase struct {
		name      string
		body      string
		headerLen int
		want      string
	}
	tests := []errCase{
		{"empty body", ``, -1, "invalid JSON at offset 0: unexpected end of input"},
		{"not an object", `[1]`, -1, "invalid JSON at offset 0: unexpected '['"},
		{"trailing garbage", `{"inputs":[]} x`, -1, "invalid JSON at offset 14: unexpected 'x' after the top-level value"},
		{"truncated", `{"inputs":[{"name":"x"`, -1, `input "x": invalid JSON at offset 22: unexpected end of input`},
		{"unterminated string", `{"id":"abc`, -1, "unterminated string"},
		{"invalid escape", `{"id":"a\x"}`, -1, `invalid escape 'x'`},
		{"short unicode escape", `{"id":"\u12"}`, -1, `invalid \u escape`},
		{"control character in string", "{\"id\":\"a\tb\"}", -1, `control character byte 0x9 in string`},
		{"id is a number", `{"id":1}`, -1, "expected string"},
		{"missing colon", `{"id" "a"}`, -1, "expected ':' after object key"},
		{"unquoted key", `{id:"a"}`, -1, "expected object key"},
		{"duplicate field", `{"id":"a","id":"b"}`, -1, `duplicate field "id"`},
		{"duplicate inputs", `{"inputs":[],"inputs":[]}`, -1, `duplicate field "inputs"`},
		{"inputs not an array", `{"inputs":{}}`, -1, "expected inputs array"},
		{"deeply nested unknown field", `{"x":` + strings.Repeat("[", 10002) + strings.Repeat("]", 10002) + `}`, -1, "nesting too deep"},
		{"bad literal in unknown field", `{"x":tru}`, -1, "expected true"},
		{"missing name", `{"inputs":[{"shape":[1],"datatype":"FP32","data":[1]}]}`, -1, `input 0: missing "name"`},
		{"missing datatype", in(`"shape":[1],"data":[1]`), -1, `input "x": missing "datatype"`},
		{"missing shape", in(`"datatype":"FP32","data":[1]`), -1, `input "x": missing "shape"`},
		{"missing data", in(`"shape":[1],"datatype":"FP32"`), -1, `input "x": missing "data" (and no binary_data_size parameter)`},
		{"unknown datatype", in(`"shape":[1],"datatype":"FP8","data":[1]`), -1, `input "x": unknown datatype "FP8"`},
		{"lowercase datatype", in(`"shape":[1],"datatype":"fp32","data":[1]`), -1, `input "x": unknown datatype "fp32"`},
		{"duplicate datatype", in(`"datatype":"FP32","shape":[1],"data":[1],"datatype":"INT8"`), -1, `input "x": duplicate field "datatype"`},
		{"negative dimension", in(`"shape":[2,-1],"datatype":"FP32","data":[1]`), -1, `input "x": negative shape dimension -1`},
		{"fractional dimension", in(`"shape":[1.5],"datatype":"FP32","data":[1]`), -1, `input "x": shape dimension 1.5 at offset 32 is not an int64`},
		{"huge dimension", in(`"shape":[9223372036854775808],"datatype":"FP32","data":[1]`), -1, `is not an int64`},
		{"too many elements", in(`"shape":[4294967296,4294967296],"datatype":"FP32","data":[1]`), -1, `input "x": shape [4294967296,4294967296] has too many elements`},
		{"too few elements", in(`"shape":[2,2],"datatype":"FP32","data":[1,2,3]`), -1, `input "x": data has 3 elements, shape [2,2] needs 4`},
		{"too many elements in data", in(`"shape":[1],"datatype":"FP32","data":[[1],[2]]`), -1, `input "x": data has 2 elements, shape [1] needs 1`},
		{"data not an array", in(`"shape":[],"datatype":"FP32","data":5`), -1, `input "x": invalid JSON at offset 59: unexpected '5', expected array for "data"`},
		{"data is an object", in(`"shape":[1],"datatype":"FP32","data":[{}]`), -1, `input "x": element 0 at offset 61: FP32 data must be numbers`},
		{"trailing comma in data", in(`"shape":[1],"datatype":"FP32","data":[1,]`), -1, `input "x": invalid JSON at offset 63: unexpected ']', expected value`},
		{"missing comma in data", in(`"shape":[2],"datatype":"FP32","data":[1 2]`), -1, `expected ',' or ']' in data`},
		{"leading zero", in(`"shape":[2],"datatype":"INT32","data":[01]`), -1, `expected ',' or ']' in data`},
		{"bare minus", in(`"shape":[1],"datatype":"FP32","data":[-]`), -1, `expected digit`},
		{"bare decimal point", in(`"shape":[1],"datatype":"FP64","data":[1.]`), -1, `expected digit after decimal point`},
		{"empty exponent", in(`"shape":[1],"datatype":"FP64","data":[1e+]`), -1, `expected digit in exponent`},
		{"unclosed data", in(`"shape":[1],"datatype":"FP32","data":[[1]`), -1, `expected ',' or ']' in data`},
		{"UINT8 overflow", in(`"shape":[2],"datatype":"UINT8","data":[1,256]`), -1, `input "x": element 1: 256 is out of range for UINT8`},
		{"UINT16 negative", in(`"shape":[1],"datatype":"UINT16","data":[-1]`), -1, `input "x": element 0: -1 is out of range for UINT16`},
		{"UINT32 overflow", in(`"shape":[1],"datatype":"UINT32","data":[4294967296]`), -1, `4294967296 is out of range for UINT32`},
		{"UINT64 overflow", in(`"shape":[1],"datatype":"UINT64","data":[18446744073709551616]`), -1, `18446744073709551616 is out of range for UINT64`},
		{"INT8 underflow", in(`"shape":[1],"datatype":"INT8","data":[-129]`), -1, `-129 is out of range for INT8`},
		{"INT16 overflow", in(`"shape":[1],"datatype":"INT16","data":[32768]`), -1, `32768 is out of range for INT16`},
		{"INT32 underflow", in(`"shape":[1],"datatype":"INT32","data":[-2147483649]`), -1, `-2147483649 is out of range for INT32`},
		{"INT64 overflow", in(`"shape":[1],"datatype":"INT64","data":[9223372036854775808]`), -1, `9223372036854775808 is out of range for INT64`},
		{"long integer", in(`"shape":[1],"datatype":"INT64","data":[123456789012345678901234567890]`), -1, `is out of range for INT64`},
		{"fraction for an integer type", in(`"shape":[1],"datatype":"INT32","data":[1.5]`), -1, `input "x": element 0: 1.5 is not an integer, as INT32 needs`},
		{"exponent for an integer type", in(`"shape":[1],"datatype":"INT32","data":[1e2]`), -1, `1e2 is not an integer`},
		{"string for an integer type", in(`"shape":[1],"datatype":"INT32","data":["1"]`), -1, `input "x": element 0 at offset 62: INT32 data must be numbers`},
		{"FP32 overflow", in(`"shape":[1],"datatype":"FP32","data":[1e39]`), -1, `input "x": element 0: 1e39 is out of range for FP32`},
		{"FP64 overflow", in(`"shape":[1],"datatype":"FP64","data":[-1e309]`), -1, `-1e309 is out of range for FP64`},
		{"FP16 overflow", in(`"shape":[1],"datatype":"FP16","data":[65520]`), -1, `input "x": element 0: 65520 is out of range for FP16`},
		{"BF16 overflow", in(`"shape":[1],"datatype":"BF16","data":[3.4e38]`), -1, `is out of range for BF16`},
		{"string for a float type", in(`"shape":[1],"datatype":"FP32","data":["1.5"]`), -1, `input "x": element 0: string "1.5" is not a number`},
		{"lowercase nan", in(`"shape":[1],"datatype":"FP64","data":["nan"]`), -1, `string "nan" is not a number`},
		{"bool for a float type", in(`"shape":[1],"datatype":"FP32","data":[true]`), -1, `FP32 data must be numbers`},
		{"number for BOOL", in(`"shape":[1],"datatype":"BOOL","data":[1]`), -1, `input "x": element 0 at offset 61: BOOL data must be true or false`},
		{"misspelt BOOL", in(`"shape":[1],"datatype":"BOOL","data":[fals]`), -1, `expected false`},
		{"number for BYTES", in(`"shape":[1],"datatype":"BYTES","data":[1]`), -1, `input "x": element 0 at offset 62: BYTES data must be strings`},
		{"parameters not an object", in(`"shape":[1],"datatype":"FP32","data":[1],"parameters":[]`), -1, `input "x": invalid JSON`},
		{"parameter value is an object", `{"parameters":{"a":{}},"inputs":[]}`, -1, `parameter "a" at offset 19: value must be a string, number or boolean`},
		{"parameter value is null", `{"parameters":{"a":null},"inputs":[]}`, -1, `parameter "a" at offset 19: value must be a string, number or boolean`},
		{"parameter number overflows", `{"parameters":{"a":1e400},"inputs":[]}`, -1, `parameter "a": number 1e400 at offset 19 is out of range`},
		{"requested output without name", `{"inputs":[],"outputs":[{"parameters":{}}]}`, -1, `requested output 0: missing "name"`},
		{"requested output bad parameters", `{"inputs":[],"outputs":[{"name":"y","parameters":{"binary_data":[]}}]}`, -1, `requested output "y": parameter "binary_data"`},
		{"raw binary request", `abc`, 0, "Inference-Header-Content-Length 0 (a raw binary request) is not supported here"},
		{"header longer than body", `{}`, 3, "Inference-Header-Content-Length 3 exceeds the body length 2"},
		{"negative header length", `{}`, -2, "invalid Inference-Header-Content-Length -2"},
		{"binary without header length", in(`"shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}`), -1,
			`input "x": binary_data_size 4 but the body has no binary part (no Inference-Header-Content-Length)`},
		{"binary with data too", in(`"shape":[1],"datatype":"FP32","data":[1],"parameters":{"binary_data_size":4}`), -1, `input "x": has both "data" and a binary_data_size parameter`},
		{"binary size not an integer", in(`"shape":[1],"datatype":"FP32","parameters":{"binary_data_size":"4"}`), -1, `input "x": binary_data_size must be a non-negative integer`},
		{"binary size negative", in(`"shape":[1],"datatype":"FP32","parameters":{"binary_data_size":-4}`), -1, `input "x": binary_data_size must be a non-negative integer`},
		{"missing requested data", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":null}]}`, -1, `input "x": missing "data"`},
	}
	for _, b := range []struct {
		name, fields string
		binary       []byte
		want         string
	}{
		{"binary size beyond the body", `"shape":[3],"datatype":"FP32","parameters":{"binary_data_size":12}`, make([]byte, 8),
			`input "x": binary_data_size 12 exceeds the 8 bytes left in the body`},
		{"binary size does not fit shape", `"shape":[2],"datatype":"FP32","parameters":{"binary_data_size":4}`, make([]byte, 4),
			`input "x": binary_data_size 4: data is 4 bytes, shape [2] of FP32 needs 8`},
		{"binary data left over", `"shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}`, make([]byte, 6),
			`2 bytes of binary data follow the JSON header but no tensor claims them with binary_data_size`},
		{"binary BOOL not 0 or 1", `"shape":[2],"datatype":"BOOL","parameters":{"binary_data_size":2}`, []byte{1, 2},
			`input "x": BOOL element 1 is 2, want 0 or 1`},
		{"binary BYTES length overruns", `"shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":6}`, []byte{5, 0, 0, 0, 'a', 'b'},
			`input "x": binary_data_size 6: BYTES element 0: length 5 exceeds the 2 bytes left`},
		{"binary BYTES truncated prefix", `"shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":6}`, []byte{1, 0, 0, 0, 'a', 0},
			`BYTES element 1: 1 bytes left, too few for its 4-byte length`},
		{"binary BYTES count mismatch", `"shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":5}`, []byte{1, 0, 0, 0, 'a'},
			`data has 1 BYTES elements, shape needs 2`},
	} {
		body, n := bin(b.fields, b.binary)
		tests = append(tests, errCase{b.name, body, n, b.want})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var req InferRequest
			err := DecodeInferRequest([]byte(tc.body), tc.headerLen, &req)
			checkDecodeError(t, err, tc.want)
		})
	}
}

// TestDecodeReusesRequest decodes different requests into one InferRequest
// and checks that nothing of the earlier ones shows through.
func TestDecodeReusesRequest(t *testing.T) {
	bodies := []string{
		`{"id":"1","parameters":{"a":1,"b":2},"inputs":[{"name":"x","shape":[3],"datatype":"FP32","parameters":{"p":"q"},"data":[1,2,3]},{"name":"y","shape":[1],"datatype":"INT8","data":[1]}],"outputs":[{"name":"o","parameters":{"binary_data":true}}]}`,
		`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[4]}]}`,
		`{"inputs":[{"name":"z","shape":[2],"datatype":"INT8","data":[5,6]},{"name":"y","shape":[1],"datatype":"INT8","data":[7]}],"outputs":[{"name":"o"}]}`,
	}
	var req InferRequest
	for i, body := range bodies {
		if err := DecodeInferRequest([]byte(body), -1, &req); err != nil {
			t.Fatalf("body %d: %v", i, err)
		}
		var fresh InferRequest
		if err := DecodeInferRequest([]byte(body), -1, &fresh); err != nil {
			t.Fatalf("body %d: %v", i, err)
		}
		if diff := cmp.Diff(fresh, req, codecDiffOpts); diff != "" {
			t.Errorf("body %d decoded into a reused request differs (-fresh +reused):\n%s", i, diff)
		}
	}
}

// TestDecodeManyParameters checks that duplicate keys keep the last value
// in the first key's place, and that many keys are not quadratic.
func TestDecodeManyParameters(t *testing.T) {
	const n = 200000
	var b strings.Builder
	b.WriteString(`{"inputs":[],"parameters":{`)
	for i := range n {
		fmt.Fprintf(&b, `"k%d":%d,`, i, i)
	}
	b.WriteString(`"k0":"last","k199999":true}}`)
	var req InferRequest
	if err := DecodeInferRequest([]byte(b.String()), -1, &req); err != nil {
		t.Fatal(err)
	}
	if len(req.Parameters) != n {
		t.Fatalf("got %d parameters, want %d", len(req.Parameters), n)
	}
	want := []Parameter{
		{Key: "k0", Kind: ParamString, String: "last"},
		{Key: "k1", Kind: ParamInt64, Int64: 1},
		{Key: "k199999", Kind: ParamBool, Bool: true},
	}
	got := []Parameter{req.Parameters[0], req.Parameters[1], req.Parameters[n-1]}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parameters mismatch (-want +got):\n%s", diff)
	}
	small := `{"inputs":[],"parameters":{"a":1,"b":2,"a":3}}`
	if err := DecodeInferRequest([]byte(small), -1, &req); err != nil {
		t.Fatal(err)
	}
	wantSmall := Parameters{{Key: "a", Kind: ParamInt64, Int64: 3}, {Key: "b", Kind: ParamInt64, Int64: 2}}
	if diff := cmp.Diff(wantSmall, req.Parameters); diff != "" {
		t.Errorf("parameters mismatch (-want +got):\n%s", diff)
	}
}

func TestDecodeAllocs(t *testing.T) {
	req := InferRequest{Inputs: []Tensor{benchTensor(1)}, Outputs: []RequestedOutput{{Name: "out"}}}
	body, _, err := AppendInferRequest(nil, &req, false)
	if err != nil {
		t.Fatal(err)
	}
	binBody, jsonLen, err := AppendInferRequest(nil, &req, true)
	if err != nil {
		t.Fatal(err)
	}
	var got InferRequest
	for _, tc := range []struct {
		name      string
		body      []byte
		headerLen int
	}{{"json", body, -1}, {"binary", binBody, jsonLen}} {
		t.Run(tc.name, func(t *testing.T) {
			allocs := testing.AllocsPerRun(100, func() {
				if err := DecodeInferRequest(tc.body, tc.headerLen, &got); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("decoding into a reused request: %v allocations, want 0", allocs)
			}
		})
	}
}

// randomDecimal returns a JSON number with varied digit counts, decimal
// points and exponents, weighted towards the hard cases of float parsing.
func randomDecimal(r *rand.Rand) string {
	var b []byte
	if r.IntN(2) == 0 {
		b = append(b, '-')
	}
	nd := 1 + r.IntN(25)
	if r.IntN(3) == 0 {
		nd = 1 + r.IntN(9)
	}
	point := r.IntN(nd + 2)
	if r.IntN(4) == 0 {
		b = append(b, "0."...)
		for range r.IntN(8) {
			b = append(b, '0')
		}
		point = -1
	}
	for i := range nd {
		c := byte('0' + r.IntN(10))
		if i == 0 && point != 0 && point != -1 && c == '0' {
			c = '1'
		}
		if i == point && i > 0 {
			b = append(b, '.')
		}
		if r.IntN(8) == 0 && i > 0 { // runs of 9s and 0s stress rounding
			c = "09"[r.IntN(2)]
		}
		b = append(b, c)
	}
	if len(b) > 0 && (b[len(b)-1] == '-' || b[0] == '0' && len(b) > 1 && b[1] != '.') {
		b = append(b[:0], '7')
	}
	if r.IntN(3) == 0 {
		b = append(b, "eE"[r.IntN(2)])
		b = append(b, []string{"", "+", "-"}[r.IntN(3)]...)
		b = strconv.AppendInt(b, int64(r.IntN(60)), 10)
	}
	return string(b)
}

func TestFloatParsingMatchesStrconv(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	inputs := []string{"0", "-0", "0.0", "1", "0.1", "1e23", "8.589973e9", "1.00000017881393432617187499", "1.000000178813934326171875",
		"3.4028235e38", "3.4028236e38", "1.17549435e-38", "1e-45", "7e-46", "9007199254740993", "0.000000000000000000001",
		"4.8726570057e288", "123456789012345678901234567890e-30", "2.2250738585072011e-308", "1e22", "1e23", "9999999999999999999e3"}
	for range 300000 {
		inputs = append(inputs, randomDecimal(r))
		inputs = append(inputs, strconv.FormatFloat(float64(math.Float32frombits(r.Uint32())), 'g', -1, 32))
		inputs = append(inputs, strconv.FormatFloat(math.Float64frombits(r.Uint64()), 'e', -1, 64))
	}
	for _, s := range inputs {
		if !json.Valid([]byte(s)) {
			continue // NaN, Inf or a generator slip
		}
		for _, size := range []int{32, 64} {
			d := decoder{buf: []byte(s)}
			got, err := d.float(size, FP32, 0)
			want, werr := strconv.ParseFloat(s, size)
			if (err != nil) != (werr != nil) {
				t.Errorf("float(%q, %d) error = %v, strconv error = %v", s, size, err, werr)
				continue
			}
			if err == nil && math.Float64bits(got) != math.Float64bits(want) {
				t.Errorf("float(%q, %d) = %v, strconv = %v", s, size, got, want)
			}
			if d.pos != len(s) {
				t.Errorf("float(%q, %d) consumed %d bytes", s, size, d.pos)
			}
		}
	}
}

func ExampleDecodeInferRequest() {
	body := []byte(`{"id":"42","inputs":[{"name":"x","shape":[2,2],"datatype":"INT32","data":[[1,2],[3,4]]}]}`)
	var req InferRequest
	if err := DecodeInferRequest(body, -1, &req); err != nil {
		fmt.Println(err)
		return
	}
	x := req.Input("x")
	fmt.Println(req.ID, x.Datatype, x.Shape, len(x.Data))

	err := DecodeInferRequest([]byte(`{"inputs":[{"name":"x","shape":[2,2],"datatype":"INT32","data":[1,2,3]}]}`), -1, &req)
	fmt.Println(err)
	// Output:
	// 42 INT32 [2 2] 16
	// input "x": data has 3 elements, shape [2,2] needs 4
}

// The encoding/json baseline: the structs a user would naturally write.
type benchJSONTensor struct {
	Name     string    `json:"name"`
	Shape    []int64   `json:"shape"`
	Datatype string    `json:"datatype"`
	Data     []float32 `json:"data"`
}

type benchJSONRequest struct {
	ID      string            `json:"id,omitempty"`
	Inputs  []benchJSONTensor `json:"inputs"`
	Outputs []struct {
		Name string `json:"name"`
	} `json:"outputs,omitempty"`
}

type benchJSONResponse struct {
	ModelName    string            `json:"model_name"`
	ModelVersion string            `json:"model_version,omitempty"`
	ID           string            `json:"id,omitempty"`
	Outputs      []benchJSONTensor `json:"outputs"`
}

var benchShapes = []struct {
	name string
	rows int
}{{"1x784", 1}, {"64x784", 64}}

// benchTensor returns a rows×784 FP32 tensor of uniform random values in
// [0,1): their shortest forms take 8 or 9 significant digits, the costly
// case for both parsing and formatting.
func benchTensor(rows int) Tensor {
	r := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 0, rows*784*4)
	for range rows * 784 {
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(r.Float32()))
	}
	return Tensor{Name: "input_0", Datatype: FP32, Shape: []int64{int64(rows), 784}, Data: data}
}

func BenchmarkDecodeRequest(b *testing.B) {
	for _, s := range benchShapes {
		req := InferRequest{ID: "req-42", Inputs: []Tensor{benchTensor(s.rows)}}
		body, _, err := AppendInferRequest(nil, &req, false)
		if err != nil {
			b.Fatal(err)
		}
		binBody, jsonLen, err := AppendInferRequest(nil, &req, true)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(s.name+"/oip", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			var got InferRequest
			for b.Loop() {
				if err := DecodeInferRequest(body, -1, &got); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"/oip_parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			b.RunParallel(func(pb *testing.PB) {
				var got InferRequest
				for pb.Next() {
					if err := DecodeInferRequest(body, -1, &got); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		b.Run(s.name+"/oip_binary", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(binBody)))
			var got InferRequest
			for b.Loop() {
				if err := DecodeInferRequest(binBody, jsonLen, &got); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"/encoding_json", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				var got benchJSONRequest
				if err := json.Unmarshal(body, &got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
