package restcodec

import (
	"encoding/binary"
	"math"
	"strconv"
	"strings"
	"testing"
)

// digitsBody is an infer request for a batch of n digits: FP32 [n, 64] with
// pixel values 0-16, as the bench sends them.
func digitsBody(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"inputs":[{"name":"pixels","datatype":"FP32","shape":[` + strconv.Itoa(n) + `,64],"data":[`)
	for i := range n * 64 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(i % 17))
		b.WriteString(".0")
	}
	b.WriteString("]}]}")
	return []byte(b.String())
}

func BenchmarkDecodeInferRequest(b *testing.B) {
	for _, n := range []int{1, 32} {
		body := digitsBody(n)
		b.Run("batch"+strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := DecodeInferRequest(body, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendInferResponse(b *testing.B) {
	for _, n := range []int{1, 32} {
		raw := make([]byte, 0, n*10*4)
		for i := range n * 10 {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(float32(i)/float32(n*10+1)))
		}
		resp := rawResponse("FP32", []int64{int64(n), 10}, raw)
		b.Run("batch"+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 64<<10)
			for b.Loop() {
				var err error
				if buf, _, err = AppendInferResponse(buf[:0], resp, ResponseEncoding{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
