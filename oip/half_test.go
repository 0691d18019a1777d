package oip

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// halfRef rounds f to nearest-even among the finite values of a 16-bit
// format, by search over all of them: slow, obviously right.
type halfRef struct {
	vals []float64 // finite non-negative values, ascending
	bits []uint16
	inf  uint16 // the bit pattern of +Inf
}

func newHalfRef(toF32 func(uint16) float32, inf uint16) *halfRef {
	r := &halfRef{inf: inf}
	for h := range inf { // all finite non-negative patterns sort below +Inf
		r.vals = append(r.vals, float64(toF32(h)))
		r.bits = append(r.bits, h)
	}
	return r
}

func (r *halfRef) round(f float64) uint16 {
	sign := uint16(0)
	if math.Signbit(f) {
		sign, f = 0x8000, -f
	}
	i := sort.SearchFloat64s(r.vals, f) // first value >= f
	if i == len(r.vals) {
		// Above the largest finite value: round to Inf past the halfway
		// point to the next (unrepresentable) step, as IEEE 754 does.
		top := r.vals[len(r.vals)-1]
		step := top - r.vals[len(r.vals)-2]
		if f >= top+step/2 {
			return sign | r.inf
		}
		return sign | r.bits[len(r.bits)-1]
	}
	if r.vals[i] == f || i == 0 {
		return sign | r.bits[i]
	}
	lo, hi := r.vals[i-1], r.vals[i]
	switch {
	case f-lo < hi-f:
		return sign | r.bits[i-1]
	case f-lo > hi-f:
		return sign | r.bits[i]
	case r.bits[i-1]&1 == 0:
		return sign | r.bits[i-1]
	}
	return sign | r.bits[i]
}

func TestHalfRoundTripAllValues(t *testing.T) {
	for h := range uint32(1 << 16) {
		h := uint16(h)
		if f := FP16ToFloat32(h); math.IsNaN(float64(f)) {
			if h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
				t.Errorf("FP16 %#04x decodes to NaN", h)
			}
			if got := Float32ToFP16(f); got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
				t.Errorf("FP16 NaN %#04x re-encodes to non-NaN %#04x", h, got)
			}
		} else if got := Float32ToFP16(f); got != h {
			t.Errorf("FP16 %#04x -> %v -> %#04x", h, f, got)
		}
		if f := BF16ToFloat32(h); math.IsNaN(float64(f)) {
			if got := Float32ToBF16(f); got&0x7f80 != 0x7f80 || got&0x7f == 0 {
				t.Errorf("BF16 NaN %#04x re-encodes to non-NaN %#04x", h, got)
			}
		} else if got := Float32ToBF16(f); got != h {
			t.Errorf("BF16 %#04x -> %v -> %#04x", h, f, got)
		}
	}
}

func TestHalfRoundingMatchesReference(t *testing.T) {
	fp16 := newHalfRef(FP16ToFloat32, 0x7c00)
	bf16 := newHalfRef(BF16ToFloat32, 0x7f80)
	var inputs []float64
	// Every value halfway between neighbours, and just either side of it.
	for _, ref := range []*halfRef{fp16, bf16} {
		for i := 1; i < len(ref.vals); i += 7 {
			mid := (ref.vals[i-1] + ref.vals[i]) / 2
			inputs = append(inputs, mid, math.Nextafter(mid, 0), math.Nextafter(mid, math.Inf(1)), -mid)
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 200000 {
		inputs = append(inputs, math.Float64frombits(r.Uint64()&^(0x7ff<<52)|uint64(1000+r.IntN(60))<<52))
		inputs = append(inputs, float64(math.Float32frombits(r.Uint32())))
	}
	inputs = append(inputs, 0, math.Copysign(0, -1), 65504, 65519.99, 65520, 1e-8, 2.98e-8, 5.96e-8, 3e-39, 3.4e38, 3.4028235e38, 1e300, 1e-300)
	for _, f := range inputs {
		if math.IsNaN(f) {
			continue
		}
		if got, want := Float64ToFP16(f), fp16.round(f); got != want {
			t.Errorf("Float64ToFP16(%v) = %#04x, want %#04x", f, got, want)
		}
		if got, want := Float64ToBF16(f), bf16.round(f); got != want {
			t.Errorf("Float64ToBF16(%v) = %#04x, want %#04x", f, got, want)
		}
	}
}

func TestHalfSpecialValues(t *testing.T) {
	tests := []struct {
		name       string
		in         float64
		fp16, bf16 uint16
	}{
		{"zero", 0, 0, 0},
		{"negative zero", math.Copysign(0, -1), 0x8000, 0x8000},
		{"one", 1, 0x3c00, 0x3f80},
		{"minus two", -2, 0xc000, 0xc000},
		{"fp16 max", 65504, 0x7bff, 0x4780},
		{"fp16 overflow", 65520, 0x7c00, 0x4780},
		{"fp16 smallest subnormal", 0x1p-24, 0x0001, 0x3380},
		{"fp16 half smallest subnormal ties to zero", 0x1p-25, 0x0000, 0x3300},
		{"+inf", math.Inf(1), 0x7c00, 0x7f80},
		{"-inf", math.Inf(-1), 0xfc00, 0xff80},
		{"bf16 max", 0x1.fep127, 0x7c00, 0x7f7f},
		{"bf16 overflow", 0x1.ffp127, 0x7c00, 0x7f80},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Float64ToFP16(tc.in); got != tc.fp16 {
				t.Errorf("Float64ToFP16(%v) = %#04x, want %#04x", tc.in, got, tc.fp16)
			}
			if got := Float64ToBF16(tc.in); got != tc.bf16 {
				t.Errorf("Float64ToBF16(%v) = %#04x, want %#04x", tc.in, got, tc.bf16)
			}
		})
	}
	if h := Float64ToFP16(math.NaN()); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("Float64ToFP16(NaN) = %#04x, not a NaN", h)
	}
	if h := Float64ToBF16(math.NaN()); h&0x7f80 != 0x7f80 || h&0x7f == 0 {
		t.Errorf("Float64ToBF16(NaN) = %#04x, not a NaN", h)
	}
}
