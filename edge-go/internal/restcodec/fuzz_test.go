package restcodec

import (
	"strconv"
	"testing"
	"unsafe"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FuzzBinarySplit fuzzes the binary tensor extension from the structure a
// client sends: a JSON header, then binary data, with
// Inference-Header-Content-Length the header's exact length, so the fuzzer
// spends its time on the header/payload split rather than on finding a
// consistent length. Seeds are in testdata/fuzz/FuzzBinarySplit.
//
// Invariants: decoding never panics; every error is INVALID_ARGUMENT; on
// success the raw contents taken from the payload tile it exactly, in input
// order, with no spare capacity (so appending to one cannot overwrite the
// next), and no other raw content aliases the body.
func FuzzBinarySplit(f *testing.F) {
	f.Add(`{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"parameters":{"binary_data_size":8}}]}`, le(float32(1), float32(2)))
	f.Add(`{"inputs":[{"name":"b","datatype":"BYTES","shape":[2],"parameters":{"binary_data_size":9}}]}`, bytesRaw("a", "bc"))
	f.Fuzz(func(t *testing.T, header string, payload []byte) {
		body := append([]byte(header), payload...)
		req, _, err := DecodeInferRequest(body, strconv.Itoa(len(header)))
		if err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("error %v is not INVALID_ARGUMENT", err)
			}
			return
		}
		raws := req.GetRawInputContents()
		if len(raws) != len(req.GetInputs()) {
			t.Fatalf("%d raw contents for %d inputs", len(raws), len(req.GetInputs()))
		}
		if len(body) == 0 {
			return
		}
		start := uintptr(unsafe.Pointer(unsafe.SliceData(body)))
		payloadStart := start + uintptr(len(header))
		end := start + uintptr(len(body))
		next := payloadStart // where the next binary input must begin
		for i, raw := range raws {
			if len(raw) == 0 {
				continue
			}
			p := uintptr(unsafe.Pointer(unsafe.SliceData(raw)))
			if p < start || p >= end {
				continue // encoded from JSON data: a copy
			}
			if p != next {
				t.Fatalf("input %d's binary data starts at payload offset %d, want %d", i, p-payloadStart, next-payloadStart)
			}
			if p+uintptr(len(raw)) > end {
				t.Fatalf("input %d's binary data runs past the body", i)
			}
			if cap(raw) != len(raw) {
				t.Fatalf("input %d's binary data has %d bytes of spare capacity into the body", i, cap(raw)-len(raw))
			}
			next = p + uintptr(len(raw))
		}
		if next != end {
			t.Fatalf("binary data claims %d of the payload's %d bytes, yet decoding succeeded", next-payloadStart, len(payload))
		}
	})
}
