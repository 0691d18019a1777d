package oip

import "math"

// FP16 is IEEE 754 binary16: 1 sign bit, 5 exponent bits, 10 fraction bits.
// BF16 (bfloat16) is the top half of a binary32: 1 sign bit, 8 exponent
// bits, 7 fraction bits. Both are held as their bit patterns in a uint16,
// which is also their canonical little-endian tensor form.

// Float64ToFP16 returns the FP16 nearest to f, rounding ties to even, as
// IEEE 754 conversion does. Finite values too large for FP16 become ±Inf,
// values too small become FP16 subnormals or ±0, and NaN stays a quiet NaN
// keeping the top bits of its payload. Rounding happens once, from the
// float64, so a decimal parsed to float64 and then converted is rounded
// twice (an error only for decimals within 2⁻⁵³ of an FP16 halfway point).
func Float64ToFP16(f float64) uint16 { return uint16(float64ToSmall(f, 5, 10)) }

// Float32ToFP16 returns the FP16 nearest to f, rounding ties to even. Every
// float32 is exactly a float64, so this is a single rounding.
func Float32ToFP16(f float32) uint16 { return uint16(float64ToSmall(float64(f), 5, 10)) }

// Float64ToBF16 returns the BF16 nearest to f, rounding ties to even, with
// the same handling of overflow, underflow and NaN as Float64ToFP16.
func Float64ToBF16(f float64) uint16 { return uint16(float64ToSmall(f, 8, 7)) }

// Float32ToBF16 returns the BF16 nearest to f, rounding ties to even (not
// the truncation some libraries use).
func Float32ToBF16(f float32) uint16 { return uint16(float64ToSmall(float64(f), 8, 7)) }

// FP16ToFloat32 returns the value of the FP16 h. The conversion is exact:
// every FP16, subnormals included, is a float32.
func FP16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h & 0x3ff)
	switch exp {
	case 0x1f: // Inf or NaN: keep the payload.
		return math.Float32frombits(sign | 0x7f800000 | frac<<13)
	case 0: // Zero or subnormal: frac × 2⁻²⁴, exact in float32.
		f := float32(frac) * (1.0 / (1 << 24))
		if sign != 0 {
			f = -f
		}
		return f
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | frac<<13)
}

// BF16ToFloat32 returns the value of the BF16 h. The conversion is exact.
func BF16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// float64ToSmall rounds f to nearest-even in a binary format with ebits
// exponent bits and mbits fraction bits (IEEE layout, bias 2^(ebits-1)-1,
// gradual underflow) and returns its bit pattern.
func float64ToSmall(f float64, ebits, mbits uint) uint64 {
	b := math.Float64bits(f)
	sign := b >> 63 << (ebits + mbits)
	exp := int(b>>52) & 0x7ff
	frac := b & (1<<52 - 1)
	emax := uint64(1)<<ebits - 1
	if exp == 0x7ff {
		if frac != 0 { // NaN: quiet it and keep what fits of the payload.
			return sign | emax<<mbits | 1<<(mbits-1) | frac>>(52-mbits)
		}
		return sign | emax<<mbits
	}
	if exp == 0 {
		// Zero or a float64 subnormal (< 2⁻¹⁰²²), far below half the
		// smallest subnormal of either target format.
		return sign
	}
	bias := 1<<(ebits-1) - 1
	e := exp - 1023 + bias // biased exponent in the target format
	m := frac | 1<<52      // significand with its implicit bit
	var shift uint         // right shift of m that leaves the target significand
	var base uint64        // what to add to the rounded significand
	if e >= 1 {
		shift = 52 - mbits
		// m>>shift carries the implicit bit at 1<<mbits, so adding
		// (e-1)<<mbits yields e<<mbits | fraction, and a carry out of
		// the fraction during rounding bumps the exponent as it should.
		base = uint64(e-1) << mbits
	} else {
		// Subnormal in the target: the significand is value / 2^(1-bias-mbits).
		shift = 52 - mbits + uint(1-e)
		if shift > 54 { // m < 2⁵³ ≤ half of 1<<shift: rounds to zero.
			return sign
		}
	}
	h := m >> shift
	rem := m & (1<<shift - 1)
	half := uint64(1) << (shift - 1)
	if rem > half || rem == half && h&1 == 1 {
		h++
	}
	h += base
	if h >= emax<<mbits { // overflow rounds to infinity
		return sign | emax<<mbits
	}
	return sign | h
}
