package coalesce

import (
	"strconv"
	"testing"
)

// BenchmarkMergeSplit is the gateway's own cost of one merged call: build the
// merged request from n one-row digits requests and split an answer of n
// rows back.
func BenchmarkMergeSplit(b *testing.B) {
	for _, n := range []int{8, 64, 128} {
		batch := make([]*waiter, n)
		for i := range batch {
			req := request(float32(i), 1, 64)
			sig, _ := signatureOf(req)
			batch[i] = &waiter{req: req, sig: sig}
		}
		merged, _ := merge(batch)
		resp, _ := answer(merged)
		b.Run("rows"+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req, bufs := merge(batch)
				if _, ok := split(resp, batch); !ok || len(req.GetRawInputContents()) != 1 {
					b.Fatal("split failed")
				}
				putBuffers(bufs)
			}
		})
	}
}

func BenchmarkSignature(b *testing.B) {
	req := request(1, 1, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := signatureOf(req); !ok {
			b.Fatal("no signature")
		}
	}
}
