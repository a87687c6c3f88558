package coalesce

import (
	"encoding/binary"
	"math"
	"strconv"
	"strings"
	"sync"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
)

// elementSizes is the raw width of each fixed-size OIP datatype. BYTES has
// none: its requests are not coalesced (their rows have no fixed width).
var elementSizes = map[string]int{
	"BOOL": 1, "UINT8": 1, "INT8": 1,
	"UINT16": 2, "INT16": 2, "FP16": 2, "BF16": 2,
	"UINT32": 4, "INT32": 4, "FP32": 4,
	"UINT64": 8, "INT64": 8, "FP64": 8,
}

// A signature is what requests must share to be merged, and what one request
// adds to a merged call.
type signature struct {
	// key: model, version, each input's name, datatype and dimensions
	// after the first, and the requested outputs' names.
	key      string
	rows     int // the batch dimension, shared by every input
	bytes    int // raw input bytes
	overhead int // bound on what a merged request adds beyond the raw bytes
}

// signatureOf returns a request's signature, or false when it is not one
// to merge: anything but plain raw inputs that share a batch dimension and
// agree with their shapes, or anything with parameters, whose meaning for a
// merged call is unknown.
func signatureOf(req *pb.ModelInferRequest) (*signature, bool) {
	inputs, raw := req.GetInputs(), req.GetRawInputContents()
	if len(inputs) == 0 || len(raw) != len(inputs) || len(req.GetParameters()) != 0 {
		return nil, false
	}
	var b strings.Builder
	b.Grow(64)
	b.WriteString(req.GetModelName())
	b.WriteByte(0)
	b.WriteString(req.GetModelVersion())
	sig := &signature{rows: -1}
	for i, in := range inputs {
		shape := in.GetShape()
		size, fixed := elementSizes[in.GetDatatype()]
		if !fixed || len(shape) == 0 || in.GetContents() != nil || len(in.GetParameters()) != 0 {
			return nil, false
		}
		rows := shape[0]
		// Bounded so that rows × row size below cannot overflow.
		if rows <= 0 || rows > math.MaxInt32 || (sig.rows >= 0 && int64(sig.rows) != rows) {
			return nil, false
		}
		sig.rows = int(rows)
		rowElems := int64(1)
		b.WriteByte(0)
		b.WriteString(in.GetName())
		b.WriteByte(0)
		b.WriteString(in.GetDatatype())
		for _, d := range shape[1:] {
			if d < 0 || (d > 0 && rowElems > math.MaxInt32/d) {
				return nil, false
			}
			rowElems *= d
			b.WriteByte(',')
			b.WriteString(strconv.FormatInt(d, 10))
		}
		if int64(len(raw[i])) != rows*rowElems*int64(size) {
			return nil, false
		}
		sig.bytes += len(raw[i])
	}
	b.WriteString("\x00->")
	for _, out := range req.GetOutputs() {
		if len(out.GetParameters()) != 0 {
			return nil, false
		}
		b.WriteByte(0)
		b.WriteString(out.GetName())
	}
	sig.key = b.String()
	// The header of a merged request is the first request's without its id;
	// the batch dimension and each raw field's length prefix may grow by
	// up to 10 and 5 bytes.
	sig.overhead = len(sig.key) + 16*len(inputs) + 15*len(inputs) + 64
	return sig, true
}

// bufferPool holds the buffers merged inputs are built in. A merged request
// is marshalled by the time its call returns, so its buffers are free again.
var bufferPool sync.Pool

func getBuffer(size int) []byte {
	if p, ok := bufferPool.Get().(*[]byte); ok && cap(*p) >= size {
		return (*p)[:0]
	}
	return make([]byte, 0, size)
}

func putBuffers(bufs [][]byte) {
	for _, b := range bufs {
		if cap(b) <= 4<<20 { // keep the occasional huge buffer out of the pool
			b := b[:0]
			bufferPool.Put(&b)
		}
	}
}

// merge builds one request of a batch's rows, inputs concatenated along the
// batch dimension in the batch's order. It returns the buffers to put back
// once the call has returned.
func merge(batch []*waiter) (*pb.ModelInferRequest, [][]byte) {
	first := batch[0].req
	rows := 0
	for _, w := range batch {
		rows += w.sig.rows
	}
	inputs := make([]*pb.ModelInferRequest_InferInputTensor, len(first.GetInputs()))
	raw := make([][]byte, len(inputs))
	for i, in := range first.GetInputs() {
		shape := make([]int64, len(in.GetShape()))
		copy(shape, in.GetShape())
		shape[0] = int64(rows)
		inputs[i] = &pb.ModelInferRequest_InferInputTensor{Name: in.GetName(), Datatype: in.GetDatatype(), Shape: shape}
		size := 0
		for _, w := range batch {
			size += len(w.req.GetRawInputContents()[i])
		}
		buf := getBuffer(size)
		for _, w := range batch {
			buf = append(buf, w.req.GetRawInputContents()[i]...)
		}
		raw[i] = buf
	}
	outputs := make([]*pb.ModelInferRequest_InferRequestedOutputTensor, len(first.GetOutputs()))
	for i, out := range first.GetOutputs() {
		outputs[i] = &pb.ModelInferRequest_InferRequestedOutputTensor{Name: out.GetName()}
	}
	return &pb.ModelInferRequest{
		ModelName:        first.GetModelName(),
		ModelVersion:     first.GetModelVersion(),
		Inputs:           inputs,
		Outputs:          outputs,
		RawInputContents: raw,
	}, raw
}

// rowCuts finds where each waiter's rows start in one raw output of a merged
// response, plus where the last ends, or false when the output's bytes do
// not add up to its shape.
func rowCuts(datatype string, shape []int64, raw []byte, batch []*waiter) ([]int, bool) {
	rowElems := int64(1)
	for _, d := range shape[1:] {
		if d < 0 || (d > 0 && rowElems > math.MaxInt32/d) {
			return nil, false
		}
		rowElems *= d
	}
	cuts := make([]int, len(batch)+1)
	if size, fixed := elementSizes[datatype]; fixed {
		rowBytes := int(rowElems) * size
		if len(raw) != int(shape[0])*rowBytes {
			return nil, false
		}
		for k, w := range batch {
			cuts[k+1] = cuts[k] + w.sig.rows*rowBytes
		}
		return cuts, true
	}
	if datatype != "BYTES" {
		return nil, false
	}
	// BYTES: each element is a 4-byte little-endian length and the bytes.
	at := 0
	for k, w := range batch {
		for range int64(w.sig.rows) * rowElems {
			if len(raw)-at < 4 {
				return nil, false
			}
			n := binary.LittleEndian.Uint32(raw[at:])
			if uint64(n) > uint64(len(raw)-at-4) {
				return nil, false
			}
			at += 4 + int(n)
		}
		cuts[k+1] = at
	}
	return cuts, at == len(raw)
}
