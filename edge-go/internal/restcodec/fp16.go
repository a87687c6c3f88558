package restcodec

import "math"

// IEEE 754 binary16 has no Go type; FP16 tensors travel as its raw bits.
const (
	halfSignBit  = 0x8000
	halfInf      = 0x7c00
	halfQuietNaN = 0x7e00
)

// float64ToHalf rounds f to the nearest binary16, ties to even, as numpy's
// astype(float16) does. Finite values beyond the range become infinities, which
// the caller treats as out of range.
func float64ToHalf(f float64) uint16 {
	bits := math.Float64bits(f)
	sign := uint16(bits>>48) & halfSignBit
	exp := int(bits>>52&0x7ff) - 1023 + 15 // rebiased for binary16
	mant := bits & (1<<52 - 1)

	switch {
	case math.IsNaN(f):
		return sign | halfQuietNaN
	case exp >= 0x1f:
		return sign | halfInf
	case exp <= 0:
		// A binary16 subnormal holds the value in units of 2^-24.
		if exp < -10 {
			return sign // below half the smallest subnormal: rounds to zero
		}
		return sign | uint16(roundShift(mant|1<<52, uint(43-exp)))
	default:
		// Rounding may carry into the exponent, up to infinity: the encoding
		// makes that addition correct.
		return sign + uint16(exp)<<10 + uint16(roundShift(mant, 42))
	}
}

// roundShift returns v >> shift rounded to nearest, ties to even.
func roundShift(v uint64, shift uint) uint64 {
	half := uint64(1) << (shift - 1)
	r := v >> shift
	rem := v & (half<<1 - 1)
	if rem > half || rem == half && r&1 == 1 {
		r++
	}
	return r
}

// halfToFloat32 widens a binary16 exactly: every binary16 is a float32.
func halfToFloat32(h uint16) float32 {
	sign := uint32(h&halfSignBit) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch exp {
	case 0: // zero or subnormal
		f := float32(mant) / (1 << 24)
		if sign != 0 {
			f = -f
		}
		return f
	case 0x1f: // infinity or NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	default:
		return math.Float32frombits(sign | (exp-15+127)<<23 | mant<<13)
	}
}
