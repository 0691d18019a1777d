package oip

import (
	"bytes"
	"encoding/binary"
	"math"
	"slices"
)

// Comparison summarises how a mirror's response differs from the primary's
// for the same request, as traffic mirroring needs to judge a candidate
// model revision. Its fields are sums and maxima over outputs, so a caller
// exports them directly: one comparison counter, counters for Mismatched,
// Elements, EqualElements, ArgmaxRows and ArgmaxAgree (ratios such as
// ArgmaxAgree/ArgmaxRows are best taken over the counters' rates, not per
// comparison), and a histogram of MaxAbsDiff.
//
// Every distinct output name in either response lands in exactly one of
// Outputs and Mismatched.
type Comparison struct {
	// Outputs is the number of outputs compared element by element: named
	// once in each response, with the same datatype and shape, and with
	// data that holds exactly the shape's elements on both sides.
	Outputs int

	// Mismatched holds, sorted, the names of the outputs that could not be
	// compared: present in one response only, named more than once in
	// either, differing in datatype or shape, of an invalid datatype or a
	// negative dimension, or with data too short, too long or (for BYTES)
	// malformed on either side. It is nil when there are none.
	Mismatched []string

	// Elements is the number of elements of the compared outputs, of every
	// datatype, and EqualElements how many of them are equal on both
	// sides: numbers that compare equal (-0 equals +0, and NaN counts as
	// equal to NaN, whatever its payload), BOOLs of the same truth (any
	// non-zero byte is true), BYTES elements of identical bytes. For
	// floating-point outputs equality is strict and MaxAbsDiff is the more
	// telling figure; for integers, BOOL and BYTES (labels, token ids,
	// strings) EqualElements/Elements is the agreement rate.
	Elements, EqualElements int

	// MaxAbsDiff is the largest |primary-mirror| over the numeric (integer
	// and floating-point) elements of the compared outputs, or 0 when there
	// are none. Integers are subtracted exactly and the difference rounded
	// once to float64, so INT64 and UINT64 values beyond 2⁵³ that differ
	// by 1 give 1. FP16 and BF16 are widened exactly. NaN against NaN
	// counts 0; NaN against a number, or an infinity against anything
	// else, counts +Inf.
	MaxAbsDiff float64

	// ArgmaxRows counts the rows of numeric outputs read as class scores,
	// and ArgmaxAgree those rows whose argmax is the same on both sides.
	// Any numeric output whose shape has rank 1 or more and a last
	// dimension of 2 or more is read so: the last dimension is the class
	// axis and each row along it is one prediction. The argmax is the
	// first index of the largest value, a NaN counting as larger than any
	// number (as NumPy and PyTorch have it).
	ArgmaxRows, ArgmaxAgree int
}

// CompareResponses compares the outputs of mirror with those of primary,
// matching them by name whatever their order. A nil response has no
// outputs. It never panics on malformed tensors; it counts them in
// Mismatched. The numeric path decodes elements straight from the
// little-endian bytes and allocates nothing; only Mismatched, when not
// empty, and the name index of a response with many outputs allocate.
// It reads the responses and retains nothing of them.
func CompareResponses(primary, mirror *InferResponse) Comparison {
	var c Comparison
	ps, ms := newOutputSet(primary), newOutputSet(mirror)
	for i := range ps.ts {
		t := &ps.ts[i]
		first, dup := ps.lookup(t.Name)
		if first != i {
			continue // a repeat, judged at the name's first occurrence
		}
		j, mdup := ms.lookup(t.Name)
		if dup || j < 0 || mdup || !c.compareOutput(t, &ms.ts[j]) {
			c.Mismatched = append(c.Mismatched, t.Name)
			continue
		}
		c.Outputs++
	}
	for j := range ms.ts {
		name := ms.ts[j].Name
		if first, _ := ms.lookup(name); first != j {
			continue
		}
		if i, _ := ps.lookup(name); i < 0 {
			c.Mismatched = append(c.Mismatched, name)
		}
	}
	slices.Sort(c.Mismatched)
	return c
}

// outputScanMax is the number of outputs up to which outputSet scans rather
// than builds a map: models have a handful of outputs, and a scan of those
// beats hashing and allocates nothing.
const outputScanMax = 32

// outputSet finds a response's outputs by name.
type outputSet struct {
	ts []Tensor
	m  map[string]outputRef // nil up to outputScanMax outputs
}

type outputRef struct {
	first int
	dup   bool
}

func newOutputSet(r *InferResponse) outputSet {
	if r == nil {
		return outputSet{}
	}
	s := outputSet{ts: r.Outputs}
	if len(s.ts) > outputScanMax {
		s.m = make(map[string]outputRef, len(s.ts))
		for i := range s.ts {
			name := s.ts[i].Name
			if ref, ok := s.m[name]; ok {
				ref.dup = true
				s.m[name] = ref
			} else {
				s.m[name] = outputRef{first: i}
			}
		}
	}
	return s
}

// lookup returns the index of the first output named name, or -1, and
// whether the name occurs more than once.
func (s *outputSet) lookup(name string) (first int, dup bool) {
	if s.m != nil {
		ref, ok := s.m[name]
		if !ok {
			return -1, false
		}
		return ref.first, ref.dup
	}
	first = -1
	for i := range s.ts {
		if s.ts[i].Name == name {
			if first >= 0 {
				return first, true
			}
			first = i
		}
	}
	return first, false
}

// compareOutput adds the comparison of a and b, outputs of the same name, to
// c and reports true, or reports false and leaves c as it was when they
// cannot be compared.
func (c *Comparison) compareOutput(a, b *Tensor) bool {
	dt := a.Datatype
	if dt != b.Datatype || !dt.Valid() || !slices.Equal(a.Shape, b.Shape) {
		return false
	}
	n64 := ShapeElements(a.Shape)
	if n64 < 0 {
		return false
	}
	switch dt {
	case BYTES:
		return c.compareBytes(a.Data, b.Data, n64)
	case BOOL:
		if n64 != int64(len(a.Data)) || n64 != int64(len(b.Data)) {
			return false
		}
		eq := 0
		for i, x := range a.Data {
			if (x != 0) == (b.Data[i] != 0) {
				eq++
			}
		}
		c.Elements += len(a.Data)
		c.EqualElements += eq
		return true
	}
	size := int64(dt.Size())
	if n64 > int64(len(a.Data))/size || n64*size != int64(len(a.Data)) || len(a.Data) != len(b.Data) {
		return false
	}
	n := int(n64)
	cols := 0 // the class axis, if the output reads as class scores
	if r := len(a.Shape); r > 0 && a.Shape[r-1] >= 2 {
		cols = int(a.Shape[r-1])
	}
	var s numStats
	switch dt {
	case INT64:
		compareInts[int64](a.Data, b.Data, n, cols, &s)
	case UINT64:
		compareInts[uint64](a.Data, b.Data, n, cols, &s)
	default:
		compareFloats(dt, a.Data, b.Data, n, cols, &s)
	}
	c.Elements += n
	c.EqualElements += s.equal
	c.MaxAbsDiff = max(c.MaxAbsDiff, s.maxDiff)
	c.ArgmaxRows += s.rows
	c.ArgmaxAgree += s.agree
	return true
}

// compareBytes compares two canonical BYTES buffers that must each hold
// exactly n well-formed elements.
func (c *Comparison) compareBytes(a, b []byte, n int64) bool {
	if na, _, ok := walkBytes(a); !ok || na != n {
		return false
	}
	if nb, _, ok := walkBytes(b); !ok || nb != n {
		return false
	}
	// Both walks succeeded, so every prefix and element below is in range.
	eq := 0
	for i, j := 0, 0; i < len(a); {
		la := int(binary.LittleEndian.Uint32(a[i:]))
		lb := int(binary.LittleEndian.Uint32(b[j:]))
		i, j = i+4, j+4
		if bytes.Equal(a[i:i+la], b[j:j+lb]) {
			eq++
		}
		i, j = i+la, j+lb
	}
	c.Elements += int(n)
	c.EqualElements += eq
	return true
}

// chunk is how many elements of each side the numeric path decodes at a
// time into arrays on the stack: enough to amortise the per-chunk dispatch
// on datatype, few enough to stay in L1.
const chunk = 256

// numStats accumulates the comparison of one numeric output.
type numStats struct {
	equal       int
	maxDiff     float64
	rows, agree int
}

// number is what the numeric path decodes elements to: float64 holds every
// datatype exactly except the 64-bit integers, which keep their own types
// so that differences and argmax are exact.
type number interface{ int64 | uint64 | float64 }

// rowArgmax follows the argmax of each side along rows of cols elements,
// fed in chunks that need not align with rows.
type rowArgmax[T number] struct {
	cols, col    int // cols 0 turns it off; col is the next column
	bestA, bestB T   // the maxima of the current row so far
	idxA, idxB   int // and their columns
}

// feed advances r over xa and xb, the next elements of each side, and adds
// the rows it completes to s. hasNaN says whether xa or xb may hold a NaN:
// without one, a plain comparison finds the maximum (a NaN maximum of an
// earlier chunk stays, as nothing compares greater).
func (r *rowArgmax[T]) feed(xa, xb []T, hasNaN bool, s *numStats) {
	for len(xa) > 0 {
		seg := min(r.cols-r.col, len(xa)) // ≥ 1: the row has a column left
		a, b, col := xa[:seg], xb[:seg], r.col
		if col == 0 {
			r.bestA, r.idxA, r.bestB, r.idxB = a[0], 0, b[0], 0
			a, b, col = a[1:], b[1:], 1
		}
		if hasNaN {
			r.bestA, r.idxA = scanMaxNaN(a, r.bestA, r.idxA, col)
			r.bestB, r.idxB = scanMaxNaN(b, r.bestB, r.idxB, col)
		} else {
			r.bestA, r.idxA = scanMax(a, r.bestA, r.idxA, col)
			r.bestB, r.idxB = scanMax(b, r.bestB, r.idxB, col)
		}
		if r.col += seg; r.col == r.cols {
			s.rows++
			if r.idxA == r.idxB {
				s.agree++
			}
			r.col = 0
		}
		xa, xb = xa[seg:], xb[seg:]
	}
}

// scanMax returns the maximum of best and xs, whose first element is at
// column col, and its column: the first one on ties.
func scanMax[T number](xs []T, best T, idx, col int) (T, int) {
	for j, v := range xs {
		if v > best {
			best, idx = v, col+j
		}
	}
	return best, idx
}

// scanMaxNaN is scanMax with a NaN larger than any number.
func scanMaxNaN[T number](xs []T, best T, idx, col int) (T, int) {
	if best != best {
		return best, idx
	}
	for j, v := range xs {
		if v > best {
			best, idx = v, col+j
		} else if v != v {
			return v, col + j
		}
	}
	return best, idx
}

// compareFloats compares n elements of a and b, of a datatype that float64
// holds exactly, reading rows of cols elements as class scores if cols > 0.
func compareFloats(dt DataType, a, b []byte, n, cols int, s *numStats) {
	var xa, xb [chunk]float64
	am := rowArgmax[float64]{cols: cols}
	size := dt.Size()
	for off := 0; off < n; off += chunk {
		m := min(chunk, n-off)
		decodeFloats(dt, a[off*size:(off+m)*size], xa[:m])
		decodeFloats(dt, b[off*size:(off+m)*size], xb[:m])
		hasNaN := diffFloats(xa[:m], xb[:m], s)
		if cols > 0 {
			am.feed(xa[:m], xb[:m], hasNaN, s)
		}
	}
}

// diffFloats adds the comparison of xa and xb to s and reports whether
// either holds a NaN.
func diffFloats(xa, xb []float64, s *numStats) (hasNaN bool) {
	eq, maxDiff := s.equal, s.maxDiff
	xb = xb[:len(xa)]
	for i, a := range xa {
		b := xb[i]
		// With gradual underflow a-b is 0 exactly when a == b, for all
		// but infinities and NaNs, whose difference is NaN. So the common
		// cases, equal or not beyond the maximum so far, take one
		// predictable branch each.
		d := math.Abs(a - b)
		if d == 0 {
			eq++
			continue
		}
		if d <= maxDiff {
			continue
		}
		if d != d {
			hasNaN = hasNaN || a != a || b != b
			if a == b || a != a && b != b { // equal infinities, or NaNs
				eq++
				continue
			}
			d = math.Inf(1)
		}
		maxDiff = d
	}
	s.equal, s.maxDiff = eq, maxDiff
	return hasNaN
}

// decodeFloats decodes len(dst) elements of datatype dt from the canonical
// bytes src, which hold exactly that many. The loops step through src so
// that the compiler proves each read in range and checks nothing per
// element.
func decodeFloats(dt DataType, src []byte, dst []float64) {
	le := binary.LittleEndian
	switch dt {
	case UINT8:
		src = src[:len(dst)]
		for i := range dst {
			dst[i] = float64(src[i])
		}
	case INT8:
		src = src[:len(dst)]
		for i := range dst {
			dst[i] = float64(int8(src[i]))
		}
	case UINT16:
		for i := 0; i < len(dst) && len(src) >= 2; i, src = i+1, src[2:] {
			dst[i] = float64(le.Uint16(src))
		}
	case INT16:
		for i := 0; i < len(dst) && len(src) >= 2; i, src = i+1, src[2:] {
			dst[i] = float64(int16(le.Uint16(src)))
		}
	case FP16:
		for i := 0; i < len(dst) && len(src) >= 2; i, src = i+1, src[2:] {
			dst[i] = float64(FP16ToFloat32(le.Uint16(src)))
		}
	case BF16:
		for i := 0; i < len(dst) && len(src) >= 2; i, src = i+1, src[2:] {
			dst[i] = float64(BF16ToFloat32(le.Uint16(src)))
		}
	case UINT32:
		for i := 0; i < len(dst) && len(src) >= 4; i, src = i+1, src[4:] {
			dst[i] = float64(le.Uint32(src))
		}
	case INT32:
		for i := 0; i < len(dst) && len(src) >= 4; i, src = i+1, src[4:] {
			dst[i] = float64(int32(le.Uint32(src)))
		}
	case FP32:
		for i := 0; i < len(dst) && len(src) >= 4; i, src = i+1, src[4:] {
			dst[i] = float64(math.Float32frombits(le.Uint32(src)))
		}
	case FP64:
		for i := 0; i < len(dst) && len(src) >= 8; i, src = i+1, src[8:] {
			dst[i] = math.Float64frombits(le.Uint64(src))
		}
	}
}

// compareInts is compareFloats for INT64 and UINT64.
func compareInts[T int64 | uint64](a, b []byte, n, cols int, s *numStats) {
	var xa, xb [chunk]T
	am := rowArgmax[T]{cols: cols}
	for off := 0; off < n; off += chunk {
		m := min(chunk, n-off)
		decodeInts(a[off*8:(off+m)*8], xa[:m])
		decodeInts(b[off*8:(off+m)*8], xb[:m])
		diffInts(xa[:m], xb[:m], s)
		if cols > 0 {
			am.feed(xa[:m], xb[:m], false, s)
		}
	}
}

func decodeInts[T int64 | uint64](src []byte, dst []T) {
	for i := 0; i < len(dst) && len(src) >= 8; i, src = i+1, src[8:] {
		dst[i] = T(binary.LittleEndian.Uint64(src))
	}
}

// diffInts adds the comparison of xa and xb to s. The difference of two
// 64-bit integers of either signedness fits a uint64, and subtracting their
// bit patterns modulo 2⁶⁴ computes it exactly.
func diffInts[T int64 | uint64](xa, xb []T, s *numStats) {
	eq, maxDiff := s.equal, s.maxDiff
	xb = xb[:len(xa)]
	for i, a := range xa {
		b := xb[i]
		var d uint64
		switch {
		case a == b:
			eq++
			continue
		case a > b:
			d = uint64(a) - uint64(b)
		default:
			d = uint64(b) - uint64(a)
		}
		if f := float64(d); f > maxDiff {
			maxDiff = f
		}
	}
	s.equal, s.maxDiff = eq, maxDiff
}
