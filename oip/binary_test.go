package oip

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// fuzzSeedsJSON are all-JSON request bodies for the fuzzers' corpora.
var fuzzSeedsJSON = []string{
	`{"id":"1","parameters":{"a":1,"b":true,"c":"s","d":1.5,"e":18446744073709551615},"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,"NaN"]]}],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}`,
	`{"inputs":[{"name":"b","shape":[2],"datatype":"BOOL","data":[true,false]},{"name":"s","shape":[2],"datatype":"BYTES","data":["a\u00e9\n",""]}]}`,
	`{"inputs":[{"name":"i","shape":[3],"datatype":"INT8","data":[-128,0,127]},{"name":"u","shape":[1],"datatype":"UINT64","data":[18446744073709551615]}]}`,
	`{"inputs":[{"name":"h","shape":[2],"datatype":"FP16","data":[0.1,-65504]},{"name":"g","shape":[2],"datatype":"BF16","data":[1e-40,"-Infinity"]}]}`,
	`{"inputs":[{"data":[[[1e308]],[[-5e-324]]],"datatype":"FP64","shape":[2,1,1],"name":"d"}],"x":{"y":[null,1,"z"]}}`,
	`{"inputs":[{"name":"e","shape":[0,3],"datatype":"INT32","data":[]}]}`,
	`{"inputs":[]}`,
}

func fuzzSeedsBinary() []struct {
	body      []byte
	headerLen int
} {
	h := `{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}},` +
		`{"name":"b","shape":[1],"datatype":"INT8","data":[1]},` +
		`{"name":"c","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":9}},` +
		`{"name":"d","shape":[3],"datatype":"BOOL","parameters":{"binary_data_size":3}}]}`
	tail := append(codecLE([]float32{1, float32(math.NaN())}), codecBytes("\xff", "")...)
	tail = append(tail, 1, 0, 1)
	return []struct {
		body      []byte
		headerLen int
	}{
		{append([]byte(h), tail...), len(h)},
		{append([]byte(h), tail[:10]...), len(h)},
		{[]byte(fuzzSeedsJSON[0]), len(fuzzSeedsJSON[0])},
		{[]byte(fuzzSeedsJSON[1]), -1},
		{[]byte("abc"), 0},
	}
}

func FuzzDecodeInferRequestJSON(f *testing.F) {
	for _, s := range fuzzSeedsJSON {
		f.Add([]byte(s))
	}
	for _, gc := range goldenCases() {
		if gc.req != nil && !gc.bin {
			body, _, err := AppendInferRequest(nil, gc.req, false)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(body)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req InferRequest
		if err := DecodeInferRequest(body, -1, &req); err != nil {
			checkFuzzError(t, err)
			return
		}
		// Decoded JSON is valid UTF-8 throughout, so both forms round-trip
		// exactly (NaN payloads aside).
		checkRoundTrip(t, &req, false, false)
		checkRoundTrip(t, &req, true, false)
	})
}

func FuzzDecodeInferRequestBinary(f *testing.F) {
	for _, s := range fuzzSeedsBinary() {
		f.Add(s.body, s.headerLen)
	}
	for _, gc := range goldenCases() {
		if gc.req != nil {
			body, jsonLen, err := AppendInferRequest(nil, gc.req, true)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(body, jsonLen)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte, headerLen int) {
		var req InferRequest
		if err := DecodeInferRequest(body, headerLen, &req); err != nil {
			checkFuzzError(t, err)
			return
		}
		checkRoundTrip(t, &req, true, false)
		// Binary BYTES may hold invalid UTF-8, which JSON replaces.
		checkRoundTrip(t, &req, false, true)
	})
}

func checkFuzzError(t *testing.T, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindInvalidArgument {
		t.Fatalf("error %v (%T) is not an *Error of KindInvalidArgument", err, err)
	}
}

// checkRoundTrip encodes req, decodes the result and compares it with req.
// NaNs compare equal whatever their payload; with lossyText, BYTES
// elements compare after invalid UTF-8 is replaced as JSON encoding does.
func checkRoundTrip(t *testing.T, req *InferRequest, binary, lossyText bool) {
	t.Helper()
	body, jsonLen, err := AppendInferRequest(nil, req, binary)
	if err != nil {
		t.Fatalf("a decoded request does not encode (binary=%v): %v", binary, err)
	}
	var again InferRequest
	if err := DecodeInferRequest(body, jsonLen, &again); err != nil {
		t.Fatalf("re-decoding (binary=%v) %q: %v", binary, body, err)
	}
	want := normalizeForCompare(req, lossyText)
	got := normalizeForCompare(&again, lossyText)
	if diff := cmp.Diff(want, got, codecDiffOpts); diff != "" {
		t.Fatalf("round trip (binary=%v) mismatch (-want +got):\n%s\nbody: %q", binary, diff, body)
	}
}

// normalizeForCompare returns a copy of req with every NaN element made
// canonical and, with lossyText, BYTES elements made valid UTF-8.
func normalizeForCompare(req *InferRequest, lossyText bool) *InferRequest {
	out := *req
	out.Inputs = make([]Tensor, len(req.Inputs))
	le := binary.LittleEndian
	for i, t := range req.Inputs {
		data := append([]byte(nil), t.Data...)
		switch t.Datatype {
		case FP32:
			for j := 0; j+4 <= len(data); j += 4 {
				if f := math.Float32frombits(le.Uint32(data[j:])); f != f {
					le.PutUint32(data[j:], 0x7fc00000)
				}
			}
		case FP64:
			for j := 0; j+8 <= len(data); j += 8 {
				if f := math.Float64frombits(le.Uint64(data[j:])); f != f {
					le.PutUint64(data[j:], 0x7ff8000000000001)
				}
			}
		case FP16, BF16:
			exp, frac := uint16(0x7c00), uint16(0x3ff)
			if t.Datatype == BF16 {
				exp, frac = 0x7f80, 0x7f
			}
			for j := 0; j+2 <= len(data); j += 2 {
				if h := le.Uint16(data[j:]); h&exp == exp && h&frac != 0 {
					le.PutUint16(data[j:], 0x7fff)
				}
			}
		case BYTES:
			if lossyText {
				var fixed []byte
				for off := 0; off+4 <= len(data); {
					l := int(le.Uint32(data[off:]))
					s := data[off+4 : off+4+l]
					off += 4 + l
					var v []byte
					for len(s) > 0 {
						r, size := utf8.DecodeRune(s)
						v = utf8.AppendRune(v, r) // RuneError for each bad byte
						s = s[size:]
					}
					fixed = le.AppendUint32(fixed, uint32(len(v)))
					fixed = append(fixed, v...)
				}
				data = fixed
			}
		}
		t.Data = data
		out.Inputs[i] = t
	}
	return &out
}
