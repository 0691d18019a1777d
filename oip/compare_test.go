package oip

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func respOf(outputs ...Tensor) *InferResponse { return &InferResponse{Outputs: outputs} }

func outputOf(name string, dt DataType, shape []int64, data []byte) Tensor {
	return Tensor{Name: name, Datatype: dt, Shape: shape, Data: data}
}

func leI64(vs ...int64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	return b
}

func leBF16(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint16(b, Float32ToBF16(v))
	}
	return b
}

var nan32 = float32(math.NaN())

// compareOpts compares Comparisons with NaN equal to NaN (a MaxAbsDiff is
// never NaN; this just keeps a wrong NaN from printing as a confusing diff).
var compareOpts = cmp.Options{cmpopts.EquateNaNs(), cmpopts.EquateEmpty()}

func TestCompareResponses(t *testing.T) {
	logits := []int64{3, 4}
	tests := []struct {
		name            string
		primary, mirror *InferResponse
		want            Comparison
	}{
		{
			name: "both nil",
			want: Comparison{},
		},
		{
			name:    "identical",
			primary: respOf(outputOf("p", FP32, logits, leF32(0.1, 0.2, 0.3, 0.4, 0.5, 0.4, 0.3, 0.2, 1, 0, 0, 0))),
			mirror:  respOf(outputOf("p", FP32, logits, leF32(0.1, 0.2, 0.3, 0.4, 0.5, 0.4, 0.3, 0.2, 1, 0, 0, 0))),
			want:    Comparison{Outputs: 1, Elements: 12, EqualElements: 12, ArgmaxRows: 3, ArgmaxAgree: 3},
		},
		{
			name:    "small differences, argmax kept",
			primary: respOf(outputOf("p", FP32, logits, leF32(0.1, 0.2, 0.3, 0.4, 0.5, 0.4, 0.3, 0.2, 1, 0, 0, 0))),
			mirror:  respOf(outputOf("p", FP32, logits, leF32(0.1, 0.2, 0.3, 0.375, 0.5, 0.4, 0.3, 0.2, 1, 0, 0, 0))),
			want:    Comparison{Outputs: 1, Elements: 12, EqualElements: 11, MaxAbsDiff: float64(float32(0.4)) - 0.375, ArgmaxRows: 3, ArgmaxAgree: 3},
		},
		{
			name:    "argmax disagrees in one row",
			primary: respOf(outputOf("p", FP32, logits, leF32(0.1, 0.2, 0.3, 0.4, 0.5, 0.4, 0.3, 0.2, 1, 0, 0, 0))),
			mirror:  respOf(outputOf("p", FP32, logits, leF32(0.1, 0.2, 0.5, 0.25, 0.5, 0.4, 0.3, 0.2, 1, 0, 0, 0))),
			want: Comparison{Outputs: 1, Elements: 12, EqualElements: 10,
				MaxAbsDiff: 0.5 - float64(float32(0.3)), ArgmaxRows: 3, ArgmaxAgree: 2},
		},
		{
			name:    "argmax ties take the first index",
			primary: respOf(outputOf("p", FP64, []int64{2, 3}, leF64(1, 1, 0, 0, 2, 2))),
			mirror:  respOf(outputOf("p", FP64, []int64{2, 3}, leF64(1, 1, 1, 2, 2, 0))),
			want:    Comparison{Outputs: 1, Elements: 6, EqualElements: 3, MaxAbsDiff: 2, ArgmaxRows: 2, ArgmaxAgree: 1},
		},
		{
			name:    "no argmax for a last dimension of 1, rank 0 or BOOL",
			primary: respOf(outputOf("a", FP32, []int64{3, 1}, leF32(1, 2, 3)), outputOf("b", FP32, nil, leF32(1)), outputOf("c", BOOL, []int64{1, 2}, []byte{0, 1})),
			mirror:  respOf(outputOf("a", FP32, []int64{3, 1}, leF32(1, 2, 3)), outputOf("b", FP32, nil, leF32(1)), outputOf("c", BOOL, []int64{1, 2}, []byte{0, 1})),
			want:    Comparison{Outputs: 3, Elements: 6, EqualElements: 6},
		},
		{
			name:    "rank 1 is one row",
			primary: respOf(outputOf("p", FP32, []int64{3}, leF32(1, 3, 2))),
			mirror:  respOf(outputOf("p", FP32, []int64{3}, leF32(3, 1, 2))),
			want:    Comparison{Outputs: 1, Elements: 3, EqualElements: 1, MaxAbsDiff: 2, ArgmaxRows: 1, ArgmaxAgree: 0},
		},
		{
			name: "outputs matched by name in any order",
			primary: respOf(outputOf("a", INT32, []int64{2}, leU32(1, 2)),
				outputOf("b", FP32, []int64{1}, leF32(1))),
			mirror: respOf(outputOf("b", FP32, []int64{1}, leF32(1.5)),
				outputOf("a", INT32, []int64{2}, leU32(1, 2))),
			want: Comparison{Outputs: 2, Elements: 3, EqualElements: 2, MaxAbsDiff: 0.5, ArgmaxRows: 1, ArgmaxAgree: 1},
		},
		{
			name: "datatype, shape and presence differ",
			primary: respOf(outputOf("ok", FP32, []int64{1}, leF32(1)),
				outputOf("dtype", FP32, []int64{1}, leF32(1)),
				outputOf("shape", FP32, []int64{2}, leF32(1, 2)),
				outputOf("rank", FP32, []int64{2}, leF32(1, 2)),
				outputOf("only_primary", FP32, []int64{1}, leF32(1))),
			mirror: respOf(outputOf("only_mirror", FP32, []int64{1}, leF32(1)),
				outputOf("rank", FP32, []int64{1, 2}, leF32(1, 2)),
				outputOf("shape", FP32, []int64{1}, leF32(1)),
				outputOf("dtype", FP64, []int64{1}, leF64(1)),
				outputOf("ok", FP32, []int64{1}, leF32(1))),
			want: Comparison{Outputs: 1, Elements: 1, EqualElements: 1,
				Mismatched: []string{"dtype", "only_mirror", "only_primary", "rank", "shape"}},
		},
		{
			name:    "one side nil",
			primary: respOf(outputOf("b", FP32, []int64{1}, leF32(1)), outputOf("a", FP32, []int64{1}, leF32(1))),
			want:    Comparison{Mismatched: []string{"a", "b"}},
		},
		{
			name:    "a repeated name is mismatched once",
			primary: respOf(outputOf("a", FP32, []int64{1}, leF32(1)), outputOf("a", FP32, []int64{1}, leF32(1))),
			mirror:  respOf(outputOf("a", FP32, []int64{1}, leF32(1)), outputOf("b", FP32, []int64{1}, leF32(1)), outputOf("b", FP32, []int64{1}, leF32(1))),
			want:    Comparison{Mismatched: []string{"a", "b"}},
		},
		{
			name:    "FP16",
			primary: respOf(outputOf("h", FP16, []int64{1, 3}, leU16(0x3c00, 0x4000, 0x7c00))), // 1, 2, +Inf
			mirror:  respOf(outputOf("h", FP16, []int64{1, 3}, leU16(0x3c01, 0x4000, 0x7c00))), // 1+2⁻¹⁰, 2, +Inf
			want:    Comparison{Outputs: 1, Elements: 3, EqualElements: 2, MaxAbsDiff: 0x1p-10, ArgmaxRows: 1, ArgmaxAgree: 1},
		},
		{
			name:    "FP16 subnormal",
			primary: respOf(outputOf("h", FP16, []int64{1}, leU16(0x0001))), // 2⁻²⁴
			mirror:  respOf(outputOf("h", FP16, []int64{1}, leU16(0x8000))), // -0
			want:    Comparison{Outputs: 1, Elements: 1, MaxAbsDiff: 0x1p-24},
		},
		{
			name:    "BF16",
			primary: respOf(outputOf("h", BF16, []int64{2, 2}, leBF16(1, 256, 3, 2))),
			mirror:  respOf(outputOf("h", BF16, []int64{2, 2}, leBF16(1, 258, 2, 3))),
			want:    Comparison{Outputs: 1, Elements: 4, EqualElements: 1, MaxAbsDiff: 2, ArgmaxRows: 2, ArgmaxAgree: 1},
		},
		{
			name: "small integers",
			primary: respOf(outputOf("u8", UINT8, []int64{2}, []byte{0, 255}),
				outputOf("i8", INT8, []int64{2}, []byte{0x80, 0x7f}),
				outputOf("u16", UINT16, []int64{1}, leU16(0xffff)),
				outputOf("i16", INT16, []int64{1}, leU16(0x8000)),
				outputOf("u32", UINT32, []int64{1}, leU32(math.MaxUint32)),
				outputOf("i32", INT32, []int64{1}, leU32(0x80000000))),
			mirror: respOf(outputOf("u8", UINT8, []int64{2}, []byte{255, 255}), // argmax 0 against 1
				outputOf("i8", INT8, []int64{2}, []byte{0x7f, 0x7f}), // 127 against -128
				outputOf("u16", UINT16, []int64{1}, leU16(0)),
				outputOf("i16", INT16, []int64{1}, leU16(0x7fff)),
				outputOf("u32", UINT32, []int64{1}, leU32(0)),
				outputOf("i32", INT32, []int64{1}, leU32(0x7fffffff))), // MaxInt32 against MinInt32
			want: Comparison{Outputs: 6, Elements: 8, EqualElements: 2, MaxAbsDiff: math.MaxUint32,
				ArgmaxRows: 2, ArgmaxAgree: 0},
		},
		{
			name:    "INT64 exact beyond 2^53",
			primary: respOf(outputOf("i", INT64, []int64{2}, leI64(1<<53, math.MinInt64))),
			mirror:  respOf(outputOf("i", INT64, []int64{2}, leI64(1<<53+1, math.MinInt64))),
			want:    Comparison{Outputs: 1, Elements: 2, EqualElements: 1, MaxAbsDiff: 1, ArgmaxRows: 1, ArgmaxAgree: 1},
		},
		{
			name:    "INT64 full range",
			primary: respOf(outputOf("i", INT64, []int64{1}, leI64(math.MinInt64))),
			mirror:  respOf(outputOf("i", INT64, []int64{1}, leI64(math.MaxInt64))),
			want:    Comparison{Outputs: 1, Elements: 1, MaxAbsDiff: math.MaxUint64},
		},
		{
			// In float64 both rows would be ties at index 0.
			name:    "INT64 argmax exact",
			primary: respOf(outputOf("i", INT64, []int64{2, 2}, leI64(1<<53, 1<<53+1, 5, 5))),
			mirror:  respOf(outputOf("i", INT64, []int64{2, 2}, leI64(1<<53+1, 1<<53, 5, 5))),
			want:    Comparison{Outputs: 1, Elements: 4, EqualElements: 2, MaxAbsDiff: 1, ArgmaxRows: 2, ArgmaxAgree: 1},
		},
		{
			name:    "UINT64 exact",
			primary: respOf(outputOf("u", UINT64, []int64{3}, leU64(math.MaxUint64, 1<<60+1, 7))),
			mirror:  respOf(outputOf("u", UINT64, []int64{3}, leU64(math.MaxUint64-1, 1<<60, 9))),
			want:    Comparison{Outputs: 1, Elements: 3, MaxAbsDiff: 2, ArgmaxRows: 1, ArgmaxAgree: 1},
		},
		{
			name:    "BOOL counts truth, not bytes",
			primary: respOf(outputOf("b", BOOL, []int64{4}, []byte{0, 1, 1, 0})),
			mirror:  respOf(outputOf("b", BOOL, []int64{4}, []byte{0, 2, 0, 1})),
			want:    Comparison{Outputs: 1, Elements: 4, EqualElements: 2},
		},
		{
			name:    "BYTES",
			primary: respOf(outputOf("s", BYTES, []int64{2, 2}, bytesData("cat", "", "dog", "a"))),
			mirror:  respOf(outputOf("s", BYTES, []int64{2, 2}, bytesData("cat", "", "dogs", "b"))),
			want:    Comparison{Outputs: 1, Elements: 4, EqualElements: 2},
		},
		{
			name:    "NaN",
			primary: respOf(outputOf("f", FP32, []int64{2, 3}, leF32(nan32, 1, 2, 1, 2, 3))),
			mirror:  respOf(outputOf("f", FP32, []int64{2, 3}, leF32(float32(-math.NaN()), 1, 2, 1, nan32, 3))),
			// Row 0: NaN against NaN counts equal and 0; both argmax 0.
			// Row 1: NaN against 2 counts +Inf; argmax 2 against the NaN at 1.
			want: Comparison{Outputs: 1, Elements: 6, EqualElements: 5, MaxAbsDiff: math.Inf(1), ArgmaxRows: 2, ArgmaxAgree: 1},
		},
		{
			name:    "NaN payloads in FP16 and FP64 compare equal",
			primary: respOf(outputOf("h", FP16, []int64{1}, leU16(0x7e00)), outputOf("d", FP64, []int64{1}, leU64(0x7ff8000000000001))),
			mirror:  respOf(outputOf("h", FP16, []int64{1}, leU16(0xfc01)), outputOf("d", FP64, []int64{1}, leU64(0xfff0000000000002))),
			want:    Comparison{Outputs: 2, Elements: 2, EqualElements: 2},
		},
		{
			name:    "infinities",
			primary: respOf(outputOf("f", FP64, []int64{4}, leF64(math.Inf(1), math.Inf(-1), math.Inf(1), 0))),
			mirror:  respOf(outputOf("f", FP64, []int64{4}, leF64(math.Inf(1), math.Inf(-1), math.Inf(-1), 0))),
			want:    Comparison{Outputs: 1, Elements: 4, EqualElements: 3, MaxAbsDiff: math.Inf(1), ArgmaxRows: 1, ArgmaxAgree: 1},
		},
		{
			name:    "-0 equals +0",
			primary: respOf(outputOf("f", FP32, []int64{1}, leF32(float32(math.Copysign(0, -1))))),
			mirror:  respOf(outputOf("f", FP32, []int64{1}, leF32(0))),
			want:    Comparison{Outputs: 1, Elements: 1, EqualElements: 1},
		},
		{
			name:    "empty tensor",
			primary: respOf(outputOf("f", FP32, []int64{0, 10}, nil)),
			mirror:  respOf(outputOf("f", FP32, []int64{0, 10}, []byte{})),
			want:    Comparison{Outputs: 1},
		},
		{
			name: "malformed data is mismatched and counts nothing",
			primary: respOf(outputOf("ok", UINT8, []int64{2}, []byte{1, 2}),
				outputOf("short", FP32, []int64{2}, leF32(1, 2)),
				outputOf("long", FP32, []int64{2}, leF32(1, 2)),
				outputOf("ragged", FP32, []int64{2}, leF32(1, 2)),
				outputOf("short_both", INT64, []int64{2}, leI64(1)),
				outputOf("bool_short", BOOL, []int64{3}, []byte{1, 0, 1}),
				outputOf("bytes_prefix", BYTES, []int64{2}, bytesData("a", "b")),
				outputOf("bytes_body", BYTES, []int64{2}, bytesData("a", "b")),
				outputOf("bytes_count", BYTES, []int64{2}, bytesData("a", "b")),
				outputOf("invalid", Invalid, []int64{1}, []byte{1}),
				outputOf("unknown", DataType(200), []int64{1}, []byte{1}),
				outputOf("negative", FP32, []int64{-1}, nil),
				outputOf("overflow", UINT8, []int64{1 << 40, 1 << 40}, nil)),
			mirror: respOf(outputOf("ok", UINT8, []int64{2}, []byte{1, 3}),
				outputOf("short", FP32, []int64{2}, leF32(1, 2)[:7]),
				outputOf("long", FP32, []int64{2}, leF32(1, 2, 3)),
				outputOf("ragged", FP32, []int64{2}, append(leF32(1, 2), 0)),
				outputOf("short_both", INT64, []int64{2}, leI64(1)),
				outputOf("bool_short", BOOL, []int64{3}, []byte{1, 0}),
				outputOf("bytes_prefix", BYTES, []int64{2}, bytesData("a", "b")[:7]),
				outputOf("bytes_body", BYTES, []int64{2}, bytesData("a", "bc")[:10]),
				outputOf("bytes_count", BYTES, []int64{2}, bytesData("a", "b", "c")),
				outputOf("invalid", Invalid, []int64{1}, []byte{1}),
				outputOf("unknown", DataType(200), []int64{1}, []byte{1}),
				outputOf("negative", FP32, []int64{-1}, nil),
				outputOf("overflow", UINT8, []int64{1 << 40, 1 << 40}, nil)),
			want: Comparison{Outputs: 1, Elements: 2, EqualElements: 1, MaxAbsDiff: 1, ArgmaxRows: 1, ArgmaxAgree: 1,
				Mismatched: []string{"bool_short", "bytes_body", "bytes_count", "bytes_prefix", "invalid",
					"long", "negative", "overflow", "ragged", "short", "short_both", "unknown"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := CompareResponses(tc.primary, tc.mirror)
			if diff := cmp.Diff(tc.want, got, compareOpts); diff != "" {
				t.Errorf("CompareResponses (-want +got):\n%s", diff)
			}
			// Every figure is symmetric in the two sides.
			if diff := cmp.Diff(got, CompareResponses(tc.mirror, tc.primary), compareOpts); diff != "" {
				t.Errorf("CompareResponses is not symmetric (-primary,mirror +mirror,primary):\n%s", diff)
			}
		})
	}
}

// TestCompareResponsesChunks crosses the decode chunk boundary with rows
// that straddle it, where the argmax must carry across chunks.
func TestCompareResponsesChunks(t *testing.T) {
	const rows, cols = 7, 101 // 707 elements: chunks end mid-row
	a := make([]float32, rows*cols)
	b := make([]float32, rows*cols)
	for r := range rows {
		// Each row peaks on both sides at a column past the first chunk
		// boundary it crosses, except row 3, whose mirror peaks early.
		peak := (r*cols+cols-1)/chunk*chunk - r*cols + 1
		if peak <= 0 || peak >= cols {
			peak = cols - 1
		}
		a[r*cols+peak], b[r*cols+peak] = 10, 10
		if r == 3 {
			b[r*cols] = 11
		}
	}
	got := CompareResponses(respOf(outputOf("p", FP32, []int64{rows, cols}, leF32(a...))), respOf(outputOf("p", FP32, []int64{rows, cols}, leF32(b...))))
	want := Comparison{Outputs: 1, Elements: rows * cols, EqualElements: rows*cols - 1, MaxAbsDiff: 11, ArgmaxRows: rows, ArgmaxAgree: rows - 1}
	if diff := cmp.Diff(want, got, compareOpts); diff != "" {
		t.Errorf("CompareResponses (-want +got):\n%s", diff)
	}
}

// TestCompareResponsesManyOutputs takes the map path of name lookup.
func TestCompareResponsesManyOutputs(t *testing.T) {
	var p, m []Tensor
	for i := range 2 * outputScanMax {
		name := "o" + strconv.Itoa(i)
		p = append(p, outputOf(name, UINT8, []int64{1}, []byte{byte(i)}))
		if i != 5 {
			m = append(m, outputOf(name, UINT8, []int64{1}, []byte{byte(i)}))
		}
	}
	m = append(m, outputOf("o0", UINT8, []int64{1}, []byte{0}), outputOf("extra", UINT8, []int64{1}, []byte{0}))
	slices.Reverse(m)
	got := CompareResponses(respOf(p...), respOf(m...))
	n := 2*outputScanMax - 2
	want := Comparison{Outputs: n, Elements: n, EqualElements: n, Mismatched: []string{"extra", "o0", "o5"}}
	if diff := cmp.Diff(want, got, compareOpts); diff != "" {
		t.Errorf("CompareResponses (-want +got):\n%s", diff)
	}
}

// randomResponse returns a response of up to 8 outputs of random datatypes,
// shapes and bytes (so floats include NaNs of all payloads, infinities and
// subnormals), some malformed and some sharing a name.
func randomResponse(r *rand.Rand) *InferResponse {
	var resp InferResponse
	for range r.IntN(9) {
		dt := DataType(1 + r.IntN(int(BF16)))
		shape := make([]int64, r.IntN(4))
		for i := range shape {
			shape[i] = int64(r.IntN(13)) // up to 1728 elements: several chunks
		}
		n := int(ShapeElements(shape))
		var data []byte
		if dt == BYTES {
			for range n {
				e := make([]byte, r.IntN(4))
				for i := range e {
					e[i] = byte(r.IntN(3))
				}
				data = binary.LittleEndian.AppendUint32(data, uint32(len(e)))
				data = append(data, e...)
			}
		} else {
			data = make([]byte, n*dt.Size())
			for i := range data {
				data[i] = byte(r.Uint32())
			}
		}
		if r.IntN(10) == 0 && len(data) > 0 {
			data = data[:r.IntN(len(data))] // malformed
		}
		resp.Outputs = append(resp.Outputs, outputOf(string(rune('a'+r.IntN(10))), dt, shape, data))
	}
	return &resp
}

func TestCompareResponsesSelf(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for i := range 2000 {
		x := randomResponse(r)
		// A copy in reverse order, sharing no bytes with x.
		y := &InferResponse{}
		for _, o := range slices.Backward(x.Outputs) {
			o.Shape, o.Data = slices.Clone(o.Shape), slices.Clone(o.Data)
			y.Outputs = append(y.Outputs, o)
		}
		for _, c := range []Comparison{CompareResponses(x, x), CompareResponses(x, y)} {
			if c.MaxAbsDiff != 0 || c.EqualElements != c.Elements || c.ArgmaxAgree != c.ArgmaxRows {
				t.Fatalf("response %d: %+v compared with itself gives %+v", i, x, c)
			}
			names := map[string]bool{}
			for _, o := range x.Outputs {
				names[o.Name] = true
			}
			if c.Outputs+len(c.Mismatched) != len(names) || !slices.IsSorted(c.Mismatched) {
				t.Fatalf("response %d: %d names, but %d outputs compared and %q mismatched", i, len(names), c.Outputs, c.Mismatched)
			}
		}
	}
}

// TestCompareResponsesSymmetric checks on random pairs that neither side is
// favoured.
func TestCompareResponsesSymmetric(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	for i := range 2000 {
		x, y := randomResponse(r), randomResponse(r)
		if i%2 == 0 {
			// Same names and shapes, different values: more outputs
			// actually compared.
			y = &InferResponse{}
			for _, o := range x.Outputs {
				o.Data = slices.Clone(o.Data)
				if o.Datatype != BYTES {
					for j := range o.Data {
						if r.IntN(4) == 0 {
							o.Data[j] = byte(r.Uint32())
						}
					}
				}
				y.Outputs = append(y.Outputs, o)
			}
		}
		if diff := cmp.Diff(CompareResponses(x, y), CompareResponses(y, x), compareOpts); diff != "" {
			t.Fatalf("pair %d: not symmetric (-x,y +y,x):\n%s", i, diff)
		}
	}
}

// benchLogits returns a rows×cols FP32 output of random scores and a copy
// with small noise, as a candidate revision might return.
func benchLogits(rows, cols int) (primary, mirror *InferResponse) {
	r := rand.New(rand.NewPCG(1, 2))
	a := make([]float32, rows*cols)
	b := make([]float32, rows*cols)
	for i := range a {
		a[i] = r.Float32()
		b[i] = a[i] + (r.Float32()-0.5)*1e-3
	}
	shape := []int64{int64(rows), int64(cols)}
	return respOf(outputOf("logits", FP32, shape, leF32(a...))), respOf(outputOf("logits", FP32, shape, leF32(b...)))
}

func TestCompareResponsesAllocs(t *testing.T) {
	p, m := benchLogits(64, 1000)
	ints := respOf(outputOf("i", INT64, []int64{64, 10}, make([]byte, 64*10*8)), outputOf("s", BYTES, []int64{2}, bytesData("a", "b")))
	if n := testing.AllocsPerRun(20, func() {
		CompareResponses(p, m)
		CompareResponses(ints, ints)
	}); n != 0 {
		t.Errorf("CompareResponses allocates %v times per run, want 0", n)
	}
}

func BenchmarkCompareResponses(b *testing.B) {
	p, m := benchLogits(64, 1000)
	size := int64(len(p.Outputs[0].Data))
	b.Run("64x1000_fp32", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(size)
		for b.Loop() {
			CompareResponses(p, m)
		}
	})
	b.Run("64x1000_fp32_parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(size)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				CompareResponses(p, m)
			}
		})
	})
}
