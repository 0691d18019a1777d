package oip

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

func TestAppendFloat32MatchesStrconv(t *testing.T) {
	// Values go one at a time through appendFloat32 and in batches
	// through appendFloat32s, the inlined hot path.
	var batch []float32
	var batchData []byte
	var batchWant []byte
	flush := func() bool {
		got := appendFloat32s(nil, batchData)
		ok := bytes.Equal(got, batchWant)
		if !ok {
			gs, ws := strings.Split(string(got), ","), strings.Split(string(batchWant), ",")
			for i := range min(len(gs), len(ws)) {
				if gs[i] != ws[i] {
					t.Errorf("appendFloat32s: element %#08x = %s, want %s", math.Float32bits(batch[i]), gs[i], ws[i])
					break
				}
			}
		}
		batch, batchData, batchWant = batch[:0], batchData[:0], batchWant[:0]
		return ok
	}
	check := func(f float32) bool {
		got := appendFloat32(nil, f)
		var want []byte
		switch {
		case math.IsNaN(float64(f)):
			want = []byte(`"NaN"`)
		case math.IsInf(float64(f), 1):
			want = []byte(`"Infinity"`)
		case math.IsInf(float64(f), -1):
			want = []byte(`"-Infinity"`)
		default:
			want = strconv.AppendFloat(nil, float64(f), 'g', -1, 32)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("appendFloat32(%#08x) = %s, want %s", math.Float32bits(f), got, want)
			return false
		}
		if len(batch) > 0 {
			batchWant = append(batchWant, ',')
		}
		batch = append(batch, f)
		batchData = binary.LittleEndian.AppendUint32(batchData, math.Float32bits(f))
		batchWant = append(batchWant, want...)
		if len(batch) == 1024 {
			return flush()
		}
		return true
	}
	defer flush()
	// Every power of two (the irregular case), its neighbours, every
	// subnormal below 2^-140 and every small integer.
	for e := range uint32(256) {
		for _, m := range []uint32{0, 1, 2, 3, 0x400000, 0x7ffffe, 0x7fffff} {
			check(math.Float32frombits(e<<23 | m))
			check(-math.Float32frombits(e<<23 | m))
		}
	}
	for b := range uint32(1 << 16) {
		check(math.Float32frombits(b))
		check(float32(b))
	}
	r := rand.New(rand.NewPCG(7, 8))
	for range 1000000 {
		if !check(math.Float32frombits(r.Uint32())) {
			break
		}
	}
	if os.Getenv("OIP_EXHAUSTIVE_FLOAT32") == "" {
		return
	}
	// All 2^31 non-negative patterns (the sign is only a prefix): about
	// three minutes.
	for b := uint64(0); b < 1<<31; b++ {
		if !check(math.Float32frombits(uint32(b))) {
			break
		}
	}
}

// TestSchubfachTable recomputes schubfachG32 and the logarithm
// approximations schubfach32 relies on, exactly.
func TestSchubfachTable(t *testing.T) {
	log10 := func(x *big.Rat) int { // floor(log10(x)) for x > 0
		k := 0
		ten := big.NewRat(10, 1)
		one := big.NewRat(1, 1)
		x = new(big.Rat).Set(x)
		for x.Cmp(ten) >= 0 {
			x.Quo(x, ten)
			k++
		}
		for x.Cmp(one) < 0 {
			x.Mul(x, ten)
			k--
		}
		return k
	}
	pow2 := func(e int) *big.Rat {
		if e >= 0 {
			return new(big.Rat).SetInt(new(big.Int).Lsh(big.NewInt(1), uint(e)))
		}
		return new(big.Rat).SetFrac(big.NewInt(1), new(big.Int).Lsh(big.NewInt(1), uint(-e)))
	}
	for q := -149; q <= 104; q++ {
		if got, want := int(int64(q)*661971961083>>41), log10(pow2(q)); got != want {
			t.Errorf("floor(log10(2^%d)) = %d, want %d", q, got, want)
		}
		x := new(big.Rat).Mul(pow2(q), big.NewRat(3, 4))
		if got, want := int((int64(q)*661971961083-274743187321)>>41), log10(x); got != want {
			t.Errorf("floor(log10(3/4 2^%d)) = %d, want %d", q, got, want)
		}
	}
	// The shifts in schubfach32 are masked to 63 bits, which is exact
	// only if h stays well inside [1, 63) for every q, irregular or not.
	for q := -149; q <= 104; q++ {
		for _, k := range []int{int(int64(q) * 661971961083 >> 41), int((int64(q)*661971961083 - 274743187321) >> 41)} {
			if h := q + int(int64(-k)*913124641741>>38) + 33; h < 2 || h > 61 {
				t.Errorf("q=%d, k=%d: h=%d is outside [2, 61]", q, k, h)
			}
		}
		if e := schubfachQ32[q+149]; e.g != schubfachG32[int(e.k)+45]+1 || int(e.k) != int(int64(q)*661971961083>>41) {
			t.Errorf("schubfachQ32[q=%d] = %+v is inconsistent", q, e)
		}
	}
	for k := -45; k <= 31; k++ {
		p10 := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(max(-k, k))), nil))
		if k > 0 {
			p10.Inv(p10)
		}
		e := int(int64(-k) * 913124641741 >> 38) // floor(log2(10^-k))
		if p10.Cmp(pow2(e)) < 0 || p10.Cmp(pow2(e+1)) >= 0 {
			t.Errorf("floor(log2(10^%d)) = %d is wrong", -k, e)
			continue
		}
		beta := new(big.Rat).Mul(p10, pow2(125-e))
		g := new(big.Int).Quo(beta.Num(), beta.Denom())
		g.Add(g, big.NewInt(1))
		g.Rsh(g, 63)
		if got := schubfachG32[k+45]; got != g.Uint64() {
			t.Errorf("schubfachG32[k=%d] = %#x, want %#x", k, got, g.Uint64())
		}
	}
}

func TestAppendInferRequest(t *testing.T) {
	tests := []struct {
		name     string
		req      InferRequest
		binary   bool
		wantJSON string
		wantBin  []byte
	}{{
		name:     "empty",
		wantJSON: `{"inputs":[]}`,
	}, {
		name: "id, parameters of every kind and outputs",
		req: InferRequest{
			ModelName: "not encoded", ModelVersion: "nor this",
			ID: "r\"1",
			Parameters: Parameters{
				{Key: "s", Kind: ParamString, String: "v"},
				{Key: "i", Kind: ParamInt64, Int64: -3},
				{Key: "b", Kind: ParamBool, Bool: true},
				{Key: "d", Kind: ParamDouble, Double: 1},
				{Key: "e", Kind: ParamDouble, Double: 2.5e-10},
				{Key: "u", Kind: ParamUint64, Uint64: math.MaxUint64},
				{Key: "nan", Kind: ParamDouble, Double: math.NaN()},
				{Key: "binary_data_size", Kind: ParamInt64, Int64: 1},
			},
			Inputs:  []Tensor{fp32("x", []int64{1, 2}, 1.5, float32(math.Copysign(0, -1)))},
			Outputs: []RequestedOutput{{Name: "y", Parameters: Parameters{{Key: "binary_data", Kind: ParamBool, Bool: true}}}, {Name: "z"}},
		},
		wantJSON: `{"id":"r\"1","parameters":{"s":"v","i":-3,"b":true,"d":1.0,"e":2.5e-10,"u":18446744073709551615,"nan":"NaN","binary_data_size":1},` +
			`"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1.5,-0]}],` +
			`"outputs":[{"name":"y","parameters":{"binary_data":true}},{"name":"z"}]}`,
	}, {
		name: "JSON drops a stale binary_data_size",
		req: InferRequest{Inputs: []Tensor{{Name: "x", Datatype: INT8, Shape: []int64{2}, Data: []byte{1, 0xff},
			Parameters: Parameters{{Key: ParamBinaryDataSize, Kind: ParamInt64, Int64: 9}}}}},
		wantJSON: `{"inputs":[{"name":"x","shape":[2],"datatype":"INT8","data":[1,-1]}]}`,
	}, {
		name: "binary replaces a stale binary_data_size and keeps the other parameters",
		req: InferRequest{Inputs: []Tensor{
			{Name: "x", Datatype: INT8, Shape: []int64{2}, Data: []byte{1, 0xff},
				Parameters: Parameters{{Key: ParamBinaryDataSize, Kind: ParamInt64, Int64: 9}, {Key: "p", Kind: ParamString, String: "q"}}},
			{Name: "s", Datatype: BYTES, Shape: []int64{1}, Data: codecBytes("\xff")},
		}},
		binary: true,
		wantJSON: `{"inputs":[{"name":"x","shape":[2],"datatype":"INT8","parameters":{"p":"q","binary_data_size":2}},` +
			`{"name":"s","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":5}}]}`,
		wantBin: append([]byte{1, 0xff}, codecBytes("\xff")...),
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("prefix")
			out, jsonLen, err := AppendInferRequest(prefix, &tc.req, tc.binary)
			if err != nil {
				t.Fatalf("AppendInferRequest: %v", err)
			}
			if !bytes.HasPrefix(out, prefix) {
				t.Fatalf("AppendInferRequest lost the prefix of dst: %q", out)
			}
			out = out[len(prefix):]
			wantLen := -1
			if tc.binary {
				wantLen = len(tc.wantJSON)
			}
			if jsonLen != wantLen {
				t.Errorf("jsonLen = %d, want %d", jsonLen, wantLen)
			}
			if diff := cmp.Diff(tc.wantJSON+string(tc.wantBin), string(out)); diff != "" {
				t.Errorf("AppendInferRequest mismatch (-want +got):\n%s", diff)
			}
			if !json.Valid([]byte(tc.wantJSON)) {
				t.Errorf("want is not valid JSON")
			}
		})
	}
}

func TestAppendInferResponse(t *testing.T) {
	resp := InferResponse{
		ModelName: "m", ID: "7",
		Outputs: []Tensor{
			fp32("a", []int64{1}, 0.25),
			{Name: "b", Datatype: BOOL, Shape: []int64{2}, Data: []byte{1, 0}},
		},
	}
	tests := []struct {
		name         string
		binaryOutput func(string) bool
		want         string
		wantJSONLen  int
	}{
		{"all JSON", nil,
			`{"model_name":"m","id":"7","outputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[0.25]},{"name":"b","shape":[2],"datatype":"BOOL","data":[true,false]}]}`, -1},
		{"binary_data false for all", func(string) bool { return false },
			`{"model_name":"m","id":"7","outputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[0.25]},{"name":"b","shape":[2],"datatype":"BOOL","data":[true,false]}]}`, -1},
		{"one binary output", func(n string) bool { return n == "b" },
			`{"model_name":"m","id":"7","outputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[0.25]},{"name":"b","shape":[2],"datatype":"BOOL","parameters":{"binary_data_size":2}}]}` + "\x01\x00", 175},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, jsonLen, err := AppendInferResponse(nil, &resp, tc.binaryOutput)
			if err != nil {
				t.Fatalf("AppendInferResponse: %v", err)
			}
			if diff := cmp.Diff(tc.want, string(out)); diff != "" {
				t.Errorf("AppendInferResponse mismatch (-want +got):\n%s", diff)
			}
			if jsonLen != tc.wantJSONLen {
				t.Errorf("jsonLen = %d, want %d", jsonLen, tc.wantJSONLen)
			}
		})
	}
}

func TestAppendErrors(t *testing.T) {
	tests := []struct {
		name   string
		tensor Tensor
		want   string
	}{
		{"data too short", Tensor{Name: "x", Datatype: FP32, Shape: []int64{2}, Data: make([]byte, 4)}, `"x": data is 4 bytes, shape [2] of FP32 needs 8`},
		{"data too long", Tensor{Name: "x", Datatype: INT16, Shape: []int64{}, Data: make([]byte, 3)}, `"x": data is 3 bytes, shape [] of INT16 needs 2`},
		{"invalid datatype", Tensor{Name: "x", Shape: []int64{1}, Data: make([]byte, 4)}, `"x": invalid datatype INVALID`},
		{"negative dimension", Tensor{Name: "x", Datatype: FP32, Shape: []int64{-1}}, `"x": invalid shape [-1]`},
		{"malformed BYTES", Tensor{Name: "x", Datatype: BYTES, Shape: []int64{1}, Data: []byte{9, 0, 0, 0, 'a'}}, `"x": BYTES element 0: length 9 exceeds the 1 bytes left`},
		{"BYTES count", Tensor{Name: "x", Datatype: BYTES, Shape: []int64{2}, Data: codecBytes("a")}, `"x": data has 1 BYTES elements, shape needs 2`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte("keep")
			for _, c := range []struct {
				what string
				kind Kind
				run  func() ([]byte, int, error)
			}{
				{"input", KindInvalidArgument, func() ([]byte, int, error) {
					return AppendInferRequest(dst, &InferRequest{Inputs: []Tensor{tc.tensor}}, false)
				}},
				{"output", KindInternal, func() ([]byte, int, error) {
					return AppendInferResponse(dst, &InferResponse{Outputs: []Tensor{tc.tensor}}, nil)
				}},
			} {
				out, jsonLen, err := c.run()
				var e *Error
				if !errors.As(err, &e) || e.Kind != c.kind || !strings.Contains(e.Msg, c.what+" "+tc.want) {
					t.Errorf("%s: error = %v, want a %v *Error containing %q", c.what, err, c.kind, c.what+" "+tc.want)
				}
				if string(out) != "keep" || jsonLen != -1 {
					t.Errorf("%s: on error got (%q, %d), want dst unextended and -1", c.what, out, jsonLen)
				}
			}
		})
	}
}

// roundTripTensors returns one tensor of each datatype holding its
// boundary values, in shape [2,3].
func roundTripTensors() []Tensor {
	shape := []int64{2, 3}
	return []Tensor{
		{Name: "bool", Datatype: BOOL, Shape: shape, Data: []byte{0, 1, 1, 0, 1, 0}},
		{Name: "u8", Datatype: UINT8, Shape: shape, Data: []byte{0, 1, 127, 128, 254, 255}},
		{Name: "u16", Datatype: UINT16, Shape: shape, Data: codecLE([]uint16{0, 1, 255, 256, 65534, 65535})},
		{Name: "u32", Datatype: UINT32, Shape: shape, Data: codecLE([]uint32{0, 1, 65536, 1 << 31, math.MaxUint32 - 1, math.MaxUint32})},
		{Name: "u64", Datatype: UINT64, Shape: shape, Data: codecLE([]uint64{0, 1, 1 << 32, 1 << 63, math.MaxUint64 - 1, math.MaxUint64})},
		{Name: "i8", Datatype: INT8, Shape: shape, Data: codecLE([]int8{0, -1, 1, -128, 127, -127})},
		{Name: "i16", Datatype: INT16, Shape: shape, Data: codecLE([]int16{0, -1, 1, math.MinInt16, math.MaxInt16, -256})},
		{Name: "i32", Datatype: INT32, Shape: shape, Data: codecLE([]int32{0, -1, 1, math.MinInt32, math.MaxInt32, -65536})},
		{Name: "i64", Datatype: INT64, Shape: shape, Data: codecLE([]int64{0, -1, 1, math.MinInt64, math.MaxInt64, -1 << 40})},
		{Name: "fp16", Datatype: FP16, Shape: shape, Data: codecLE([]uint16{0x0000, 0x8000, 0x0001, 0x7bff, 0x3c00, 0x2e66})},
		{Name: "fp32", Datatype: FP32, Shape: shape, Data: codecLE([]float32{0, float32(math.Copysign(0, -1)), 0.1, math.MaxFloat32, math.SmallestNonzeroFloat32, -1.17549435e-38})},
		{Name: "fp64", Datatype: FP64, Shape: shape, Data: codecLE([]float64{0, math.Copysign(0, -1), 0.1, math.MaxFloat64, math.SmallestNonzeroFloat64, -2.2250738585072014e-308})},
		{Name: "bytes", Datatype: BYTES, Shape: shape, Data: codecBytes("", "a", "héllo", "\x00\n\"\\\u2028", "😀", strings.Repeat("x", 300))},
		{Name: "bf16", Datatype: BF16, Shape: shape, Data: codecLE([]uint16{0x0000, 0x8000, 0x0001, 0x7f7f, 0x3f80, 0x3dcd})},
	}
}

func TestRoundTripEveryDatatype(t *testing.T) {
	for _, tensor := range roundTripTensors() {
		for _, binary := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/binary=%v", tensor.Datatype, binary), func(t *testing.T) {
				req := InferRequest{ID: "rt", Inputs: []Tensor{tensor}}
				body, jsonLen, err := AppendInferRequest(nil, &req, binary)
				if err != nil {
					t.Fatalf("AppendInferRequest: %v", err)
				}
				var gotReq InferRequest
				if err := DecodeInferRequest(body, jsonLen, &gotReq); err != nil {
					t.Fatalf("DecodeInferRequest(%q): %v", body, err)
				}
				if diff := cmp.Diff(req, gotReq, codecDiffOpts); diff != "" {
					t.Errorf("request round trip mismatch (-want +got):\n%s", diff)
				}

				resp := InferResponse{ModelName: "m", ModelVersion: "1", ID: "rt", Outputs: []Tensor{tensor}}
				body, jsonLen, err = AppendInferResponse(nil, &resp, func(string) bool { return binary })
				if err != nil {
					t.Fatalf("AppendInferResponse: %v", err)
				}
				var gotResp InferResponse
				if err := DecodeInferResponse(body, jsonLen, &gotResp); err != nil {
					t.Fatalf("DecodeInferResponse(%q): %v", body, err)
				}
				if diff := cmp.Diff(resp, gotResp, codecDiffOpts); diff != "" {
					t.Errorf("response round trip mismatch (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// TestRoundTripRandomFloats sends random bit patterns of every float type
// through JSON and back: the shortest formatting and the parsing must
// agree on every value (NaNs aside, which come back canonical).
func TestRoundTripRandomFloats(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	const n = 200000
	for _, dt := range []DataType{FP16, FP32, FP64, BF16} {
		t.Run(dt.String(), func(t *testing.T) {
			data := make([]byte, 0, n*dt.Size())
			for len(data) < cap(data) {
				v := r.Uint64()
				switch dt {
				case FP32:
					if f := math.Float32frombits(uint32(v)); f == f && !math.IsInf(float64(f), 0) {
						data = binary.LittleEndian.AppendUint32(data, uint32(v))
					}
				case FP64:
					if f := math.Float64frombits(v); f == f && !math.IsInf(f, 0) {
						data = binary.LittleEndian.AppendUint64(data, v)
					}
				case FP16:
					if uint16(v)&0x7c00 != 0x7c00 {
						data = binary.LittleEndian.AppendUint16(data, uint16(v))
					}
				case BF16:
					if uint16(v)&0x7f80 != 0x7f80 {
						data = binary.LittleEndian.AppendUint16(data, uint16(v))
					}
				}
			}
			resp := InferResponse{Outputs: []Tensor{{Name: "x", Datatype: dt, Shape: []int64{n}, Data: data}}}
			body, _, err := AppendInferResponse(nil, &resp, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got InferResponse
			if err := DecodeInferResponse(body, -1, &got); err != nil {
				t.Fatal(err)
			}
			if g := got.Outputs[0].Data; !bytes.Equal(g, data) {
				for i := 0; i < len(data); i += dt.Size() {
					if !bytes.Equal(g[i:i+dt.Size()], data[i:i+dt.Size()]) {
						t.Fatalf("element %d: sent % x, got back % x", i/dt.Size(), data[i:i+dt.Size()], g[i:i+dt.Size()])
					}
				}
			}
		})
	}
}

func TestAppendAllocs(t *testing.T) {
	req := InferRequest{ID: "1", Inputs: []Tensor{benchTensor(1)}}
	special := fp32("special", []int64{4}, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 1e-45)
	resp := InferResponse{ModelName: "m", ID: "1", Outputs: []Tensor{benchTensor(1), special,
		{Name: "f64", Datatype: FP64, Shape: []int64{2}, Data: codecLE([]float64{math.NaN(), 0.1})},
		{Name: "bytes", Datatype: BYTES, Shape: []int64{2}, Data: codecBytes("a\"b", "\xff")}}}
	buf := make([]byte, 0, 1<<16)
	for _, tc := range []struct {
		name string
		run  func()
	}{
		{"request/json", func() { buf, _, _ = AppendInferRequest(buf[:0], &req, false) }},
		{"request/binary", func() { buf, _, _ = AppendInferRequest(buf[:0], &req, true) }},
		{"response/json", func() { buf, _, _ = AppendInferResponse(buf[:0], &resp, nil) }},
		{"response/binary", func() { buf, _, _ = AppendInferResponse(buf[:0], &resp, func(string) bool { return true }) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if allocs := testing.AllocsPerRun(100, tc.run); allocs != 0 {
				t.Errorf("%v allocations, want 0", allocs)
			}
		})
	}
}

// goldenCases are the protocol bodies kept under testdata/golden. A
// binary case keeps its JSON header in NAME.json and its binary part in
// NAME.bin.
type goldenCase struct {
	name  string
	req   *InferRequest
	resp  *InferResponse
	bin   bool
	lossy bool // does not decode back to the same message
}

func goldenCases() []goldenCase {
	nan16 := Float64ToFP16(math.NaN())
	all := roundTripTensors()
	var outs []Tensor
	for _, t := range all {
		t.Name = "out_" + t.Name
		outs = append(outs, t)
	}
	return []goldenCase{
		{name: "request_every_datatype", req: &InferRequest{
			ID: "req-1",
			Parameters: Parameters{
				{Key: "priority", Kind: ParamInt64, Int64: 2},
				{Key: "timeout", Kind: ParamUint64, Uint64: 1 << 63},
				{Key: "binary_data_output", Kind: ParamBool, Bool: false},
				{Key: "temperature", Kind: ParamDouble, Double: 0.7},
				{Key: "tag", Kind: ParamString, String: "golden \"test\""},
			},
			Inputs:  all,
			Outputs: []RequestedOutput{{Name: "y", Parameters: Parameters{{Key: "binary_data", Kind: ParamBool, Bool: true}}}, {Name: "z"}},
		}},
		{name: "request_binary", bin: true, req: &InferRequest{
			Inputs: []Tensor{
				fp32("image", []int64{1, 2, 2}, 0.5, -1, 2, 1e-3),
				{Name: "prompt", Datatype: BYTES, Shape: []int64{1}, Data: codecBytes("hello"),
					Parameters: Parameters{{Key: "content_type", Kind: ParamString, String: "str"}}},
			},
			Outputs: []RequestedOutput{{Name: "probs", Parameters: Parameters{{Key: "binary_data", Kind: ParamBool, Bool: true}}}},
		}},
		{name: "response_every_datatype", resp: &InferResponse{
			ModelName: "golden", ModelVersion: "3", ID: "req-1",
			Parameters: Parameters{{Key: "sequence_id", Kind: ParamInt64, Int64: 42}},
			Outputs:    outs,
		}},
		{name: "response_special_values", lossy: true, resp: &InferResponse{
			ModelName: "golden",
			Outputs: []Tensor{
				fp32("f32", []int64{6}, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 1e-7, 123456789, 1e21),
				{Name: "f64", Datatype: FP64, Shape: []int64{4}, Data: codecLE([]float64{math.NaN(), math.Inf(-1), 1e21, 1e-7})},
				{Name: "f16", Datatype: FP16, Shape: []int64{3}, Data: codecLE([]uint16{nan16, 0x7c00, 0x0200})},
				{Name: "text", Datatype: BYTES, Shape: []int64{2}, Data: codecBytes("bad \xff utf-8", "tab\tnul\x00")},
			},
		}},
		{name: "response_binary_mixed", bin: true, resp: &InferResponse{
			ModelName: "golden", ID: "b",
			Outputs: []Tensor{
				fp32("probs", []int64{1, 3}, 0.125, 0.375, 0.5),
				{Name: "label", Datatype: BYTES, Shape: []int64{1}, Data: codecBytes("cat")},
			},
		}},
	}
}

func TestGolden(t *testing.T) {
	for _, gc := range goldenCases() {
		t.Run(gc.name, func(t *testing.T) {
			var body []byte
			var jsonLen int
			var err error
			if gc.req != nil {
				body, jsonLen, err = AppendInferRequest(nil, gc.req, gc.bin)
			} else {
				var binOut func(string) bool
				if gc.bin {
					binOut = func(name string) bool { return name == "probs" }
				}
				body, jsonLen, err = AppendInferResponse(nil, gc.resp, binOut)
			}
			if err != nil {
				t.Fatal(err)
			}
			header, tail := body, []byte(nil)
			if jsonLen >= 0 {
				header, tail = body[:jsonLen], body[jsonLen:]
			}
			if !json.Valid(header) {
				t.Fatalf("header is not valid JSON: %s", header)
			}
			jsonPath := filepath.Join("testdata", "golden", gc.name+".json")
			binPath := filepath.Join("testdata", "golden", gc.name+".bin")
			if *updateGolden {
				// The golden file is the exact header plus a newline, not
				// an indented form: byte-exactness is the point.
				if err := os.WriteFile(jsonPath, append(header[:len(header):len(header)], '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				if gc.bin {
					if err := os.WriteFile(binPath, tail, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			wantHeader, err := os.ReadFile(jsonPath)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(bytes.TrimSuffix(wantHeader, []byte("\n"))), string(header)); diff != "" {
				t.Errorf("%s mismatch (-want +got):\n%s", jsonPath, diff)
			}
			if gc.bin {
				wantTail, err := os.ReadFile(binPath)
				if err != nil {
					t.Fatalf("%v (run with -update to create it)", err)
				}
				if !bytes.Equal(wantTail, tail) {
					t.Errorf("%s mismatch: want % x, got % x", binPath, wantTail, tail)
				}
			}
			if gc.lossy {
				return
			}
			if gc.req != nil {
				var got InferRequest
				if err := DecodeInferRequest(body, jsonLen, &got); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(*gc.req, got, codecDiffOpts); diff != "" {
					t.Errorf("decoding the golden body (-want +got):\n%s", diff)
				}
			} else {
				var got InferResponse
				if err := DecodeInferResponse(body, jsonLen, &got); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(*gc.resp, got, codecDiffOpts); diff != "" {
					t.Errorf("decoding the golden body (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func BenchmarkEncodeResponse(b *testing.B) {
	for _, s := range benchShapes {
		tensor := benchTensor(s.rows)
		tensor.Name = "output_0"
		resp := InferResponse{ModelName: "mnist", ModelVersion: "1", ID: "req-42", Outputs: []Tensor{tensor}}
		jr := benchJSONResponse{ModelName: "mnist", ModelVersion: "1", ID: "req-42",
			Outputs: []benchJSONTensor{{Name: "output_0", Shape: tensor.Shape, Datatype: "FP32", Data: make([]float32, len(tensor.Data)/4)}}}
		for i := range jr.Outputs[0].Data {
			jr.Outputs[0].Data[i] = math.Float32frombits(binary.LittleEndian.Uint32(tensor.Data[4*i:]))
		}
		body, _, err := AppendInferResponse(nil, &resp, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(s.name+"/oip", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			var buf []byte
			for b.Loop() {
				buf, _, err = AppendInferResponse(buf[:0], &resp, nil)
				if err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"/oip_parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			b.RunParallel(func(pb *testing.PB) {
				var buf []byte
				for pb.Next() {
					buf, _, _ = AppendInferResponse(buf[:0], &resp, nil)
				}
			})
		})
		b.Run(s.name+"/encoding_json", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := json.Marshal(&jr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
