package oip

import (
	"encoding/binary"
	"math"
	"math/bits"
	"slices"
	"strconv"
)

// AppendInferRequest appends req to dst as an OIP REST request body and
// returns the extended buffer.
//
// With binary false the body is all JSON and jsonLen is -1. With binary
// true every input's data follows the JSON header in Triton's binary tensor
// form, each input carrying a "binary_data_size" parameter, and jsonLen is
// the length of the header, to send as Inference-Header-Content-Length.
// ModelName and ModelVersion are not encoded: they belong in the URL. Any
// "binary_data_size" parameter already on an input is replaced by what the
// encoding needs.
//
// Floats are written as the shortest decimal that reads back to the same
// value (strconv's 'g' format with precision -1, at 32 bits for FP32, FP16
// and BF16); NaN and ±Inf, which JSON lacks, as the strings "NaN",
// "Infinity" and "-Infinity". BYTES elements are written as JSON strings
// with invalid UTF-8 replaced by U+FFFD, so only valid UTF-8 survives a
// JSON round trip; use binary for arbitrary bytes.
//
// If an input's datatype is invalid or its Data does not hold exactly the
// elements its shape needs, AppendInferRequest returns dst unextended and an
// *Error of KindInvalidArgument naming the input. It does not retain req.
func AppendInferRequest(dst []byte, req *InferRequest, binary bool) (out []byte, jsonLen int, err error) {
	start := len(dst)
	for i := range req.Inputs {
		if err := checkTensor(&req.Inputs[i], "input", KindInvalidArgument); err != nil {
			return dst, -1, err
		}
	}
	dst = slices.Grow(dst, estimateBody(req.Inputs, func(string) bool { return binary }))
	dst = append(dst, '{')
	if req.ID != "" {
		dst = append(dst, `"id":`...)
		dst = AppendJSONString(dst, req.ID)
		dst = append(dst, ',')
	}
	if len(req.Parameters) > 0 {
		dst = append(dst, `"parameters":`...)
		dst = appendJSONParams(dst, req.Parameters, false, -1)
		dst = append(dst, ',')
	}
	dst = append(dst, `"inputs":[`...)
	for i := range req.Inputs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONTensor(dst, &req.Inputs[i], binary)
	}
	dst = append(dst, ']')
	if len(req.Outputs) > 0 {
		dst = append(dst, `,"outputs":[`...)
		for i := range req.Outputs {
			o := &req.Outputs[i]
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"name":`...)
			dst = AppendJSONString(dst, o.Name)
			if len(o.Parameters) > 0 {
				dst = append(dst, `,"parameters":`...)
				dst = appendJSONParams(dst, o.Parameters, false, -1)
			}
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	dst = append(dst, '}')
	if !binary {
		return dst, -1, nil
	}
	jsonLen = len(dst) - start
	for i := range req.Inputs {
		dst = append(dst, req.Inputs[i].Data...)
	}
	return dst, jsonLen, nil
}

// AppendInferResponse appends resp to dst as an OIP REST response body and
// returns the extended buffer. binaryOutput reports which outputs go in
// binary form (pass req.BinaryOutput, or nil for all JSON); those carry a
// "binary_data_size" parameter and their data follows the JSON header in
// output order. jsonLen is the header length, or -1 when no output is
// binary. model_version and id are omitted when empty, parameters when
// there are none. Floats and BYTES are written as AppendInferRequest
// writes them.
//
// If an output's datatype is invalid or its Data does not fit its shape,
// AppendInferResponse returns dst unextended and an *Error of KindInternal
// (the response is ours or the runtime's to get right) naming the output.
func AppendInferResponse(dst []byte, resp *InferResponse, binaryOutput func(name string) bool) (out []byte, jsonLen int, err error) {
	start := len(dst)
	for i := range resp.Outputs {
		if err := checkTensor(&resp.Outputs[i], "output", KindInternal); err != nil {
			return dst, -1, err
		}
	}
	isBinary := func(name string) bool { return binaryOutput != nil && binaryOutput(name) }
	dst = slices.Grow(dst, estimateBody(resp.Outputs, isBinary))
	dst = append(dst, `{"model_name":`...)
	dst = AppendJSONString(dst, resp.ModelName)
	if resp.ModelVersion != "" {
		dst = append(dst, `,"model_version":`...)
		dst = AppendJSONString(dst, resp.ModelVersion)
	}
	if resp.ID != "" {
		dst = append(dst, `,"id":`...)
		dst = AppendJSONString(dst, resp.ID)
	}
	if len(resp.Parameters) > 0 {
		dst = append(dst, `,"parameters":`...)
		dst = appendJSONParams(dst, resp.Parameters, false, -1)
	}
	dst = append(dst, `,"outputs":[`...)
	anyBinary := false
	for i := range resp.Outputs {
		t := &resp.Outputs[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		b := isBinary(t.Name)
		anyBinary = anyBinary || b
		dst = appendJSONTensor(dst, t, b)
	}
	dst = append(dst, "]}"...)
	if !anyBinary {
		return dst, -1, nil
	}
	jsonLen = len(dst) - start
	for i := range resp.Outputs {
		if t := &resp.Outputs[i]; isBinary(t.Name) {
			dst = append(dst, t.Data...)
		}
	}
	return dst, jsonLen, nil
}

// checkTensor checks that t can be encoded: a valid datatype, a valid
// shape, and Data holding exactly the elements the shape needs.
func checkTensor(t *Tensor, what string, kind Kind) error {
	tc := tensorCtx{what: what, name: t.Name}
	if !t.Datatype.Valid() {
		return tc.wrap(Errorf(kind, "invalid datatype %s", t.Datatype))
	}
	n := ShapeElements(t.Shape)
	if n < 0 {
		return tc.wrap(Errorf(kind, "invalid shape %s", FormatShape(t.Shape)))
	}
	if err := checkCanonical(t.Datatype, t.Shape, n, t.Data); err != nil {
		return tc.wrap(&Error{Kind: kind, Msg: err.(*Error).Msg})
	}
	return nil
}

// jsonElementSize is a generous estimate of the JSON bytes per element.
var jsonElementSize = [...]int{BOOL: 6, UINT8: 4, UINT16: 6, UINT32: 11, UINT64: 21,
	INT8: 5, INT16: 7, INT32: 12, INT64: 21, FP16: 12, FP32: 16, FP64: 25, BYTES: 0, BF16: 12}

// estimateBody estimates the encoded size of ts, to grow the buffer once.
func estimateBody(ts []Tensor, binary func(string) bool) int {
	n := 256
	for i := range ts {
		t := &ts[i]
		n += 128 + len(t.Name) + 8*len(t.Shape)
		switch {
		case binary(t.Name):
			n += len(t.Data)
		case t.Datatype == BYTES:
			n += len(t.Data) + len(t.Data)/4
		default:
			n += len(t.Data) / t.Datatype.Size() * jsonElementSize[t.Datatype]
		}
	}
	return n
}

// appendJSONTensor appends t as a JSON tensor object; with binary it
// carries binary_data_size instead of data.
func appendJSONTensor(dst []byte, t *Tensor, binary bool) []byte {
	dst = append(dst, `{"name":`...)
	dst = AppendJSONString(dst, t.Name)
	dst = append(dst, `,"shape":[`...)
	for i, d := range t.Shape {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, d, 10)
	}
	dst = append(dst, `],"datatype":"`...)
	dst = append(dst, t.Datatype.String()...)
	dst = append(dst, '"')
	binarySize := int64(-1)
	if binary {
		binarySize = int64(len(t.Data))
	}
	if binary || len(t.Parameters) > 0 && !(len(t.Parameters) == 1 && t.Parameters[0].Key == ParamBinaryDataSize) {
		dst = append(dst, `,"parameters":`...)
		dst = appendJSONParams(dst, t.Parameters, true, binarySize)
	}
	if !binary {
		dst = append(dst, `,"data":[`...)
		dst = appendJSONData(dst, t.Datatype, t.Data)
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

// appendJSONParams appends ps as a JSON object. A tensor's parameters
// (tensor true) lose any binary_data_size, which describes the framing,
// and get binary_data_size binarySize last when binarySize >= 0. Doubles
// with integral values keep a ".0" so they read back as doubles;
// non-finite doubles become strings.
func appendJSONParams(dst []byte, ps Parameters, tensor bool, binarySize int64) []byte {
	dst = append(dst, '{')
	first := true
	for i := range ps {
		p := &ps[i]
		if tensor && p.Key == ParamBinaryDataSize {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = AppendJSONString(dst, p.Key)
		dst = append(dst, ':')
		switch p.Kind {
		case ParamString:
			dst = AppendJSONString(dst, p.String)
		case ParamInt64:
			dst = strconv.AppendInt(dst, p.Int64, 10)
		case ParamBool:
			dst = strconv.AppendBool(dst, p.Bool)
		case ParamDouble:
			dst = appendDouble(dst, p.Double)
		case ParamUint64:
			dst = strconv.AppendUint(dst, p.Uint64, 10)
		default:
			dst = append(dst, "null"...)
		}
	}
	if binarySize >= 0 {
		if !first {
			dst = append(dst, ',')
		}
		dst = append(dst, `"binary_data_size":`...)
		dst = strconv.AppendInt(dst, binarySize, 10)
	}
	return append(dst, '}')
}

// appendDouble appends a double parameter so that it reads back as one.
func appendDouble(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return appendNonFinite(dst, math.IsNaN(f), f < 0)
	}
	n := len(dst)
	dst = strconv.AppendFloat(dst, f, 'g', -1, 64)
	for _, c := range dst[n:] {
		if c == '.' || c == 'e' {
			return dst
		}
	}
	return append(dst, ".0"...)
}

func appendNonFinite(dst []byte, nan, neg bool) []byte {
	switch {
	case nan:
		return append(dst, `"NaN"`...)
	case neg:
		return append(dst, `"-Infinity"`...)
	}
	return append(dst, `"Infinity"`...)
}

// appendJSONData appends the elements of data, in canonical form for dt,
// as comma-separated JSON values.
func appendJSONData(dst []byte, dt DataType, data []byte) []byte {
	le := binary.LittleEndian
	switch dt {
	case FP32:
		dst = appendFloat32s(dst, data)
	case FP64:
		for i := 0; i+8 <= len(data); i += 8 {
			if i > 0 {
				dst = append(dst, ',')
			}
			f := math.Float64frombits(le.Uint64(data[i:]))
			if math.IsNaN(f) || math.IsInf(f, 0) {
				dst = appendNonFinite(dst, math.IsNaN(f), f < 0)
			} else {
				dst = strconv.AppendFloat(dst, f, 'g', -1, 64)
			}
		}
	case FP16, BF16:
		for i := 0; i+2 <= len(data); i += 2 {
			if i > 0 {
				dst = append(dst, ',')
			}
			h := le.Uint16(data[i:])
			if dt == FP16 {
				dst = appendFloat32(dst, FP16ToFloat32(h))
			} else {
				dst = appendFloat32(dst, BF16ToFloat32(h))
			}
		}
	case BOOL:
		for i, b := range data {
			if i > 0 {
				dst = append(dst, ',')
			}
			if b != 0 {
				dst = append(dst, "true"...)
			} else {
				dst = append(dst, "false"...)
			}
		}
	case BYTES:
		for off := 0; off+4 <= len(data); {
			if off > 0 {
				dst = append(dst, ',')
			}
			l := int(le.Uint32(data[off:]))
			off += 4
			dst = AppendJSONString(dst, unsafeString(data[off:off+l]))
			off += l
		}
	default:
		dst = appendJSONInts(dst, dt, data)
	}
	return dst
}

// appendJSONInts appends the elements of an integer tensor.
func appendJSONInts(dst []byte, dt DataType, data []byte) []byte {
	le := binary.LittleEndian
	size := dt.Size()
	for i := 0; i+size <= len(data); i += size {
		if i > 0 {
			dst = append(dst, ',')
		}
		switch dt {
		case UINT8:
			dst = strconv.AppendUint(dst, uint64(data[i]), 10)
		case UINT16:
			dst = strconv.AppendUint(dst, uint64(le.Uint16(data[i:])), 10)
		case UINT32:
			dst = strconv.AppendUint(dst, uint64(le.Uint32(data[i:])), 10)
		case UINT64:
			dst = strconv.AppendUint(dst, le.Uint64(data[i:]), 10)
		case INT8:
			dst = strconv.AppendInt(dst, int64(int8(data[i])), 10)
		case INT16:
			dst = strconv.AppendInt(dst, int64(int16(le.Uint16(data[i:]))), 10)
		case INT32:
			dst = strconv.AppendInt(dst, int64(int32(le.Uint32(data[i:]))), 10)
		case INT64:
			dst = strconv.AppendInt(dst, int64(le.Uint64(data[i:])), 10)
		}
	}
	return dst
}

// appendFloat32s appends the little-endian float32s of data as
// comma-separated JSON values, each as appendFloat32 would append it.
//
// This is the hot path of JSON encoding, so the common case, a normal
// float32 that is not a power of two, is handled inline: schubfach32
// without its irregular case, writing in place, comma and all. Every other
// value goes through putFloat32.
func appendFloat32s(dst, data []byte) []byte {
	if len(data) < 4 {
		return dst
	}
	le := binary.LittleEndian
	// Reserve the worst case, 16 bytes an element, once: the loop then
	// keeps only an offset into buf.
	dst = slices.Grow(dst, len(data)/4*16+float32Room)
	buf := dst[:cap(dst)]
	n := len(dst)
	for i := 0; i < len(data)-3; i += 4 {
		b := (*[float32Room]byte)(buf[n : n+float32Room])
		u := le.Uint32(data[i : i+4])
		bq := int(u>>23) & 0xff
		frac := u & (1<<23 - 1)
		var w int
		if bq == 0 || bq == 0xff || frac == 0 {
			w = putFloat32(b, math.Float32frombits(u))
		} else {
			// schubfach32 inlined, for c·2^q with c > 2^23.
			b[0] = '-'
			o := int(u>>31) & 1 // the digits start after the sign, if any
			cb := uint64(1<<23|frac) << 2
			out := uint64(frac & 1)
			e := &schubfachQ32[(bq-1)&255]
			g, k, h := e.g, int(e.k), uint(e.h)&63
			hi, lo := bits.Mul64(g, cb<<h)
			dlo, dhi := g<<((h+1)&63), g>>((63-h)&63)
			_, carry := bits.Add64(lo, dlo, 0)
			rhi, _ := bits.Add64(hi, dhi, carry)
			_, borrow := bits.Sub64(lo, dlo, 0)
			lhi, _ := bits.Sub64(hi, dhi, borrow)
			vb, vbl, vbr := rop32(hi), rop32(lhi), rop32(rhi)
			// schubfach32's choices, made without branches: for random
			// data they are coin tosses the branch predictor loses.
			s := vb >> 2
			sp := s / 10
			upin := b2u(vbl+out <= sp*40)
			wpin := b2u((sp+1)*40+out <= vbr)
			short := b2u(s >= 10) & (upin ^ wpin) // one digit fewer will do
			uin := b2u(vbl+out <= s<<2)
			win := b2u((s+1)<<2+out <= vbr)
			mid := s<<2 + 2 // vb at the midpoint of s and s+1
			closer := b2u(vb > mid) | b2u(vb == mid)&s&1
			full := s + win&(uin^1|closer)
			dec := full ^ (full^(sp+wpin))&-short
			// putDecimal inlined for the %f layouts.
			dec32, e10 := uint32(dec), k+int(short)
			top := dec32 / 1e8
			z := swar8(dec32 - top*1e8)
			t := bits.Len32(dec32) * 1233 >> 12
			nd := t + 1 - int((uint64(dec32)-uint64(pow10u32[t&15]))>>63)
			dp := nd + e10
			if dp < -3 || dp > 6 {
				w = o + putDecimal((*[32]byte)(b[o:o+32]), dec32, e10)
			} else {
				zc := z + 0x3030303030303030
				lo, hi := uint64('0'+top)|zc<<8, zc>>56
				if sh := uint(8 * (9 - nd)); sh < 64 {
					lo, hi = lo>>(sh&63)|hi<<1<<((63-sh)&63), hi>>(sh&63)
				} else {
					lo, hi = hi, 0
				}
				if z != 0 {
					nd -= bits.LeadingZeros64(z) >> 3
				} else {
					nd -= 8
				}
				switch {
				case dp <= 0: // 0.000ddd
					p := o + (2-dp)&7
					le.PutUint64(b[o:o+8], 0x3030303030302e30) // "0.000000"
					le.PutUint64(b[p:p+8], lo)
					le.PutUint64(b[p+8:p+16], hi)
					w = p + nd
				case dp >= nd: // ddd000
					le.PutUint64(b[o:o+8], lo)
					le.PutUint64(b[o+8:o+16], hi)
					p := o + nd&15
					le.PutUint64(b[p:p+8], 0x3030303030303030)
					w = o + dp
				default: // ddd.ddd
					le.PutUint64(b[o:o+8], lo)
					le.PutUint64(b[o+8:o+16], hi)
					p := o + dp&7
					sh := uint(8*dp) & 63
					le.PutUint64(b[p+1:p+9], lo>>sh|hi<<1<<((63-sh)&63))
					le.PutUint64(b[p+9:p+17], hi>>sh)
					b[p] = '.'
					w = o + nd + 1
				}
			}
		}
		w &= 31
		b[w] = ','
		n += w + 1
	}
	return buf[:n-1] // without the last comma
}

// b2u returns 1 for true and 0 for false, without a branch.
func b2u(b bool) uint64 {
	var u uint64
	if b {
		u = 1
	}
	return u
}

// float32Room is the room putFloat32 needs: at most 15 bytes of output
// ("-0.000012345678" or "-1.2345678e-38") and scribbling room after it for
// 8-byte stores.
const float32Room = 40

// appendFloat32 appends f exactly as strconv.AppendFloat(dst, float64(f),
// 'g', -1, 32) would, except that non-finite values become the JSON
// strings "NaN", "Infinity" and "-Infinity".
func appendFloat32(dst []byte, f float32) []byte {
	dst = slices.Grow(dst, float32Room)
	n := len(dst)
	return dst[:n+putFloat32((*[float32Room]byte)(dst[n:n+float32Room]), f)]
}

// putFloat32 writes f as appendFloat32 appends it to the start of b and
// returns how many bytes it wrote; it may scribble on the bytes after them.
// It finds the shortest decimal with Raffaello Giulietti's Schubfach
// algorithm ("The Schubfach way to render doubles", 2020) specialised to
// float32, and lays the digits out with a few 8-byte stores: about twice
// as fast as strconv.AppendFloat. appendFloat32s inlines the common case.
func putFloat32(b *[float32Room]byte, f float32) int {
	bits := math.Float32bits(f)
	if bits&0x7f800000 == 0x7f800000 {
		switch {
		case bits&0x7fffff != 0:
			return copy(b[:], `"NaN"`)
		case bits>>31 != 0:
			return copy(b[:], `"-Infinity"`)
		}
		return copy(b[:], `"Infinity"`)
	}
	b[0] = '-'
	o := int(bits >> 31) // the digits start after the sign, if any
	frac := bits & (1<<23 - 1)
	bq := int(bits>>23) & 0xff
	q, c := bq-150, 1<<23|frac // f = c·2^q
	if bq == 0 {
		if frac < 8 {
			// Zero, or one of the seven tiniest subnormals, for which
			// Schubfach lacks the precision (Java scales them by 10 and
			// then prints two digits where strconv prints one).
			if frac == 0 {
				b[o] = '0'
				return o + 1
			}
			return o + len(strconv.AppendFloat(b[o:o], float64(math.Float32frombits(frac)), 'g', -1, 32))
		}
		q, c = -149, frac
	}
	dec, e10 := schubfach32(q, c)
	return o + putDecimal((*[32]byte)(b[o&1:o&1+32]), uint32(dec), e10)
}

// schubfachG32 holds g1(k) for k in [-45, 31]: the top 63 bits of
// floor(β)+1 where 10^-k = β·2^r and 2^125 ≤ β < 2^126. TestSchubfachTable
// recomputes it.
var schubfachG32 = [...]uint64{
	0x59aedfc10d7279c5, 0x47bf19673df52e37, 0x72cb5bd86321e38c, 0x5bd5e313828182d6,
	0x4977e8dc68679bdf, 0x758ca7c70d7292fe, 0x5e0a1fd271287598, 0x4b3b4ca85a86c47a,
	0x785ee10d5da46d90, 0x604be73de4838ad9, 0x4d0985cb1d3608ae, 0x7b426fab61f00de3,
	0x629b8c891b267182, 0x4ee2d6d415b85ace, 0x7e37be2022c0914b, 0x64f964e68233a76f,
	0x50c783eb9b5c85f2, 0x409f9cbc7c4a04c2, 0x6765c793fa10079d, 0x52b7d2dcc80cd2e4,
	0x422ca8b0a00a4250, 0x69e10de76676d080, 0x54b40b1f852bda00, 0x43c33c1937564800,
	0x6c6b935b8bbd4000, 0x56bc75e2d6310000, 0x4563918244f40000, 0x6f05b59d3b200000,
	0x58d15e1762800000, 0x470de4df82000000, 0x71afd498d0000000, 0x5af3107a40000000,
	0x48c2739500000000, 0x746a528800000000, 0x5d21dba000000000, 0x4a817c8000000000,
	0x7735940000000000, 0x5f5e100000000000, 0x4c4b400000000000, 0x7a12000000000000,
	0x61a8000000000000, 0x4e20000000000000, 0x7d00000000000000, 0x6400000000000000,
	0x5000000000000000, 0x4000000000000000, 0x6666666666666666, 0x51eb851eb851eb85,
	0x4189374bc6a7ef9d, 0x68db8bac710cb295, 0x53e2d6238da3c211, 0x431bde82d7b634da,
	0x6b5fca6af2bd215e, 0x55e63b88c230e77e, 0x44b82fa09b5a52cb, 0x6df37f675ef6eadf,
	0x57f5ff85e592557f, 0x465e6604b7a84465, 0x709709a125da0709, 0x5a126e1a84ae6c07,
	0x480ebe7b9d58566c, 0x734aca5f6226f0ad, 0x5c3bd5191b525a24, 0x49c97747490eae83,
	0x760f253edb4ab0d2, 0x5e72843249088d75, 0x4b8ed0283a6d3df7, 0x78e480405d7b9658,
	0x60b6cd004ac94513, 0x4d5f0a66a23a9da9, 0x7bcb43d769f762a8, 0x63090312bb2c4eed,
	0x4f3a68dbc8f03f24, 0x7ec3daf941806506, 0x65697bfa9acd1d9f, 0x51212ffbaf0a7e18,
	0x40e7599625a1fe7a,
}

// schubfachQ32 holds, for each binary exponent q in [-149, 104] of a
// float32 with the regular spacing (at index q+149), what schubfach32
// needs: k = floor(log10(2^q)), h = q + floor(log2(10^-k)) + 33 and
// g = g1(k)+1.
var schubfachQ32 = func() (t [256]struct {
	g    uint64
	k, h int32
}) {
	for i := range 254 {
		q := i - 149
		k := int(int64(q) * 661971961083 >> 41)
		t[i].g = schubfachG32[k+45] + 1
		t[i].k = int32(k)
		t[i].h = int32(q + int(int64(-k)*913124641741>>38) + 33)
	}
	return t
}()

// schubfach32 returns the shortest decimal dec·10^e10 that rounds to
// c·2^q (as a float32), choosing the closest and then the even one among
// candidates of that length. It needs c ≥ 8 and q in [-149, 104].
func schubfach32(q int, c uint32) (dec uint64, e10 int) {
	out := uint64(c & 1) // an odd c has an open rounding interval
	cb := uint64(c) << 2 // the bounds are cb-2 (or cb-1 below a power of two) and cb+2
	e := &schubfachQ32[(q+149)&255]
	g, k, h := e.g, int(e.k), uint(e.h)&63 // h is in [29, 37]
	irregular := c == 1<<23 && q != -149
	if irregular { // at a power of two the interval below is half as wide
		k = int((int64(q)*661971961083 - 274743187321) >> 41) // floor(log10(3/4·2^q))
		h = uint(q+int(int64(-k)*913124641741>>38)+33) & 63
		g = schubfachG32[k+45] + 1
	}
	// vb, vbl and vbr are the top bits of g·(cb<<h), g·(cbl<<h) and
	// g·(cbr<<h). The bounds differ from cb by 2 (or 1), so their
	// products differ from the first by g<<(h+1) (or g<<h): one
	// multiplication and two 128-bit additions give all three exactly.
	hi, lo := bits.Mul64(g, cb<<h)
	dlo, dhi := g<<((h+1)&63), g>>((63-h)&63)
	_, carry := bits.Add64(lo, dlo, 0)
	rhi, _ := bits.Add64(hi, dhi, carry)
	if irregular {
		dlo, dhi = g<<h, g>>((64-h)&63)
	}
	_, borrow := bits.Sub64(lo, dlo, 0)
	lhi, _ := bits.Sub64(hi, dhi, borrow)
	vb, vbl, vbr := rop32(hi), rop32(lhi), rop32(rhi)
	s := vb >> 2
	if s >= 10 { // try one digit fewer
		sp := s / 10
		upin := vbl+out <= sp*40
		wpin := (sp+1)*40+out <= vbr
		if upin != wpin {
			if wpin {
				sp++
			}
			return sp, k + 1
		}
	}
	t := s + 1
	uin := vbl+out <= s<<2
	win := t<<2+out <= vbr
	if uin != win {
		if uin {
			return s, k
		}
		return t, k
	}
	// Both in: the closer wins. On a tie strconv (Dragonbox) picks the
	// even one, except at a power of two, where it rounds up.
	cmp := int64(vb) - int64((s+t)<<1)
	if cmp < 0 || cmp == 0 && s&1 == 0 && !irregular {
		return s, k
	}
	return t, k
}

// rop32 returns x1, the top half of a 128-bit product, divided by 2^31
// and rounded to odd (the low half is below the precision that matters).
func rop32(x1 uint64) uint64 {
	return x1>>31 | (x1&0xffffffff+0xffffffff)>>32
}

const digitPairs = "00010203040506070809101112131415161718192021222324252627282930313233343536373839" +
	"40414243444546474849505152535455565758596061626364656667686970717273747576777879" +
	"8081828384858687888990919293949596979899"

var pow10u32 = [16]uint32{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9}

// putDecimal writes dec·10^e10 (0 < dec < 10^9) to the start of b as
// strconv's 'g' format does for shortest output: %e when the exponent is
// < -4 or >= 6 (with at least two exponent digits), %f otherwise. It
// returns how many bytes it wrote, at most 14, and may scribble on the
// bytes after them.
//
// The digits are made in parallel with SWAR arithmetic, held in two
// registers as a 16-byte string, and placed with 8-byte stores: no
// division loop, no branch on the digit count, and no reloading of bytes
// just stored (which would stall store-to-load forwarding). Offsets are
// masked to their known ranges so the compiler can drop bounds checks.
func putDecimal(b *[32]byte, dec uint32, e10 int) int {
	top := dec / 1e8 // the ninth digit from the right, if any
	z := swar8(dec - top*1e8)
	t := bits.Len32(dec) * 1233 >> 12 // log10 estimate, at most one short
	nd := t + 1 - int((uint64(dec)-uint64(pow10u32[t&15]))>>63)
	dp := nd + e10 // position of the decimal point
	// lo,hi: the digits of dec, first in the lowest byte of lo, made by
	// shifting the nine-digit string top,z right past its leading zeros.
	zc := z + 0x3030303030303030
	lo, hi := uint64('0'+top)|zc<<8, zc>>56
	if sh := uint(8 * (9 - nd)); sh < 64 {
		lo, hi = lo>>(sh&63)|hi<<1<<((63-sh)&63), hi>>(sh&63)
	} else {
		lo, hi = hi, 0
	}
	// Trailing zero digits are the zero bytes at the top of z.
	if z != 0 {
		nd -= bits.LeadingZeros64(z) >> 3
	} else {
		nd -= 8 // dec = top·10^8 with top < 10
	}
	le := binary.LittleEndian
	x := dp - 1
	if x < -4 || x >= 6 { // d.ddde±xx
		b[0] = byte(lo)
		n := 1
		if nd > 1 {
			b[1] = '.'
			le.PutUint64(b[2:10], lo>>8|hi<<56)
			n = nd + 1
		}
		n &= 15
		b[n] = 'e'
		b[n+1] = '+'
		if x < 0 {
			b[n+1] = '-'
			x = -x
		}
		x = x % 100 * 2 // float32 exponents are below 100
		b[n+2], b[n+3] = digitPairs[x], digitPairs[x+1]
		return n + 4
	}
	switch {
	case dp <= 0: // 0.000ddd
		p := (2 - dp) & 7
		le.PutUint64(b[0:8], 0x3030303030302e30) // "0.000000"
		le.PutUint64(b[p:p+8], lo)
		le.PutUint64(b[p+8:p+16], hi)
		return p + nd
	case dp >= nd: // ddd000
		le.PutUint64(b[0:8], lo)
		le.PutUint64(b[8:16], hi)
		le.PutUint64(b[nd&15:nd&15+8], 0x3030303030303030)
		return dp
	}
	// ddd.ddd
	le.PutUint64(b[0:8], lo)
	le.PutUint64(b[8:16], hi)
	p := dp & 7
	sh := uint(8*p) & 63
	le.PutUint64(b[p+1:p+9], lo>>sh|hi<<1<<((63-sh)&63))
	le.PutUint64(b[p+9:p+17], hi>>sh)
	b[p] = '.'
	return nd + 1
}

// swar8 returns the eight decimal digits of v < 10^8 as byte values 0-9,
// the most significant in the lowest byte, computed in parallel lanes: v
// splits into two halves of four digits, each half into two pairs, each
// pair into two digits, with multiply-and-shift divisions that are exact
// for these ranges.
func swar8(v uint32) uint64 {
	x := uint64(v/10000) | uint64(v%10000)<<32
	y := x * 10486 >> 20 & 0x0000007f_0000007f // x/100 in each 32-bit lane
	x = y | (x-y*100)<<16
	y = x * 103 >> 10 & 0x000f000f_000f000f // x/10 in each 16-bit lane
	return y | (x-y*10)<<8
}
