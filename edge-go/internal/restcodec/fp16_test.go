package restcodec

import (
	"math"
	"testing"
)

func TestFloat64ToHalf(t *testing.T) {
	tests := []struct {
		in   float64
		want uint16
	}{
		{0, 0x0000},
		{math.Copysign(0, -1), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{65504, 0x7bff},    // largest finite
		{65519.99, 0x7bff}, // rounds down to it
		{65520, 0x7c00},    // halfway past it: ties to even, carries into infinity
		{math.Inf(-1), 0xfc00},
		{math.Ldexp(1, -14), 0x0400},     // smallest normal
		{math.Ldexp(1, -24), 0x0001},     // smallest subnormal
		{math.Ldexp(1, -25), 0x0000},     // half of it: ties to even, zero
		{math.Ldexp(1.5, -25), 0x0001},   // more than half: up
		{math.Ldexp(3, -25), 0x0002},     // 1.5 units: ties to even, 2
		{1 + math.Ldexp(1, -10), 0x3c01}, // exact
		{1 + math.Ldexp(1, -11), 0x3c00}, // tie: to even
		{1 + math.Ldexp(3, -11), 0x3c02}, // tie: to even, up
		{math.Ldexp(1023, -24), 0x03ff},  // largest subnormal
		{math.Ldexp(2047, -25), 0x0400},  // rounds from subnormal up into normal
	}
	for _, tt := range tests {
		if got := float64ToHalf(tt.in); got != tt.want {
			t.Errorf("float64ToHalf(%v) = %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
	if got := float64ToHalf(math.NaN()); got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
		t.Errorf("float64ToHalf(NaN) = %#04x, not a NaN", got)
	}
}

// Every binary16 widens exactly and narrows back to itself.
func TestHalfRoundTrip(t *testing.T) {
	for h := range 1 << 16 {
		f := halfToFloat32(uint16(h))
		if math.IsNaN(float64(f)) {
			continue
		}
		if back := float64ToHalf(float64(f)); back != uint16(h) {
			t.Fatalf("%#04x -> %v -> %#04x", h, f, back)
		}
	}
}
