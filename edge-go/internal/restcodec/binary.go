package restcodec

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
)

// The parameters of the binary tensor extension. The gateway handles them
// and does not forward them: they concern the HTTP body, not the model.
const (
	binaryDataSize   = "binary_data_size"   // input or output: bytes of binary data
	binaryData       = "binary_data"        // requested output: send it as binary data
	binaryDataOutput = "binary_data_output" // request: send every output as binary data
)

// ResponseEncoding says which outputs of an infer response the client wants
// as binary data rather than JSON (the binary tensor extension). The zero
// value wants JSON only.
type ResponseEncoding struct {
	all     bool            // the request's binary_data_output
	outputs map[string]bool // each output's own binary_data, which overrides all
}

func (e ResponseEncoding) binary(output string) bool {
	if b, ok := e.outputs[output]; ok {
		return b
	}
	return e.all
}

// responseEncoding reads, and takes out of req, the parameters that ask for
// binary outputs.
func responseEncoding(req *inferRequest) (ResponseEncoding, error) {
	var enc ResponseEncoding
	if text, ok := req.Parameters[binaryDataOutput]; ok {
		b, err := boolParameter(binaryDataOutput, text)
		if err != nil {
			return enc, invalid("%v", err)
		}
		enc.all = b
		delete(req.Parameters, binaryDataOutput)
	}
	for _, o := range req.Outputs {
		text, ok := o.Parameters[binaryData]
		if !ok {
			continue
		}
		b, err := boolParameter(binaryData, text)
		if err != nil {
			return enc, invalid("output %q: %v", o.Name, err)
		}
		if enc.outputs == nil {
			enc.outputs = map[string]bool{}
		}
		enc.outputs[o.Name] = b
		delete(o.Parameters, binaryData)
	}
	return enc, nil
}

func boolParameter(name string, text json.RawMessage) (bool, error) {
	s := scanner{b: text}
	switch e := s.element(); e.kind {
	case 't', 'f':
		return e.kind == 't', nil
	default:
		return false, fmt.Errorf("parameter %q is %s, expected a bool", name, e.describe())
	}
}

// takeBinary takes the raw contents of an input with a binary_data_size from
// the front of binary, checking that the size fits the shape and datatype.
func takeBinary(sizeText json.RawMessage, dt *datatype, shape []int64, count int, binary *[]byte) ([]byte, error) {
	size, err := strconv.ParseUint(string(sizeText), 10, 63)
	if err != nil {
		s := scanner{b: sizeText}
		return nil, fmt.Errorf("parameter %q is %s, expected a byte count", binaryDataSize, describeLiteral(s.element()))
	}
	if dt.size != 0 && (size%uint64(dt.size) != 0 || size/uint64(dt.size) != uint64(count)) {
		want := "more bytes than can be counted"
		if count <= math.MaxInt/dt.size {
			want = strconv.Itoa(count*dt.size) + " bytes"
		}
		return nil, fmt.Errorf("%s %d does not match shape %s of %s, which takes %s", binaryDataSize, size, formatShape(shape), dt.name, want)
	}
	if size > uint64(len(*binary)) {
		return nil, fmt.Errorf("%s %d runs past the end of the body: %d bytes of binary data are left", binaryDataSize, size, len(*binary))
	}
	raw := (*binary)[:size:size]
	*binary = (*binary)[size:]
	if dt.size == 0 {
		if err := checkRawBytes(raw, count); err != nil {
			return nil, fmt.Errorf("binary data: %v", err)
		}
	}
	return raw, nil
}

// describeLiteral names a parameter value that should have been a number.
func describeLiteral(e element) string {
	if e.kind == 'n' {
		return string(e.text)
	}
	return e.describe()
}

// checkRawBytes checks BYTES raw contents: count elements, each a 4-byte
// little-endian length and that many bytes, and nothing after them.
func checkRawBytes(raw []byte, count int) error {
	for i := range count {
		if len(raw) < 4 {
			return fmt.Errorf("it ends before element %d of %d", i, count)
		}
		n := binary.LittleEndian.Uint32(raw)
		if uint64(n) > uint64(len(raw)-4) {
			return fmt.Errorf("element %d claims %d bytes, %d remain", i, n, len(raw)-4)
		}
		raw = raw[4+n:]
	}
	if len(raw) != 0 {
		return fmt.Errorf("it runs %d bytes past %d elements", len(raw), count)
	}
	return nil
}

// outputBinary returns the raw bytes of an output that goes back as binary
// data, never nil: its raw contents as they are, or its typed contents
// encoded raw.
func outputBinary(dt *datatype, out *pb.ModelInferResponse_InferOutputTensor, raw []byte, isRaw bool, count int) ([]byte, error) {
	if isRaw {
		if dt.size == 0 {
			if err := checkRawBytes(raw, count); err != nil {
				return nil, fmt.Errorf("raw contents: %v", err)
			}
		} else if len(raw)%dt.size != 0 || len(raw)/dt.size != count {
			return nil, fmt.Errorf("raw contents hold %d bytes, not %d %s elements", len(raw), count, dt.name)
		}
		return raw, nil
	}
	c := out.GetContents()
	b := []byte{}
	var n int
	switch dt.name {
	case "BOOL":
		n, b = appendRawEach(b, c.GetBoolContents(), func(b []byte, v bool) []byte {
			if v {
				return append(b, 1)
			}
			return append(b, 0)
		})
	case "UINT8", "UINT16", "UINT32":
		n, b = appendRawEach(b, c.GetUintContents(), func(b []byte, v uint32) []byte { return appendLittleEndian(b, uint64(v), dt.size) })
	case "UINT64":
		n, b = appendRawEach(b, c.GetUint64Contents(), binary.LittleEndian.AppendUint64)
	case "INT8", "INT16", "INT32":
		n, b = appendRawEach(b, c.GetIntContents(), func(b []byte, v int32) []byte { return appendLittleEndian(b, uint64(v), dt.size) })
	case "INT64":
		n, b = appendRawEach(b, c.GetInt64Contents(), func(b []byte, v int64) []byte { return binary.LittleEndian.AppendUint64(b, uint64(v)) })
	case "FP32":
		n, b = appendRawEach(b, c.GetFp32Contents(), func(b []byte, v float32) []byte { return binary.LittleEndian.AppendUint32(b, math.Float32bits(v)) })
	case "FP64":
		n, b = appendRawEach(b, c.GetFp64Contents(), func(b []byte, v float64) []byte { return binary.LittleEndian.AppendUint64(b, math.Float64bits(v)) })
	case "BYTES":
		n, b = appendRawEach(b, c.GetBytesContents(), func(b []byte, v []byte) []byte {
			return append(binary.LittleEndian.AppendUint32(b, uint32(len(v))), v...)
		})
	default:
		return nil, fmt.Errorf("%s travels only as raw contents", dt.name)
	}
	if n != count {
		return nil, fmt.Errorf("typed contents hold %d elements, the shape %d", n, count)
	}
	return b, nil
}

// appendRawEach appends each value's raw form, without separators.
func appendRawEach[T any](dst []byte, values []T, appendOne func([]byte, T) []byte) (int, []byte) {
	for _, v := range values {
		dst = appendOne(dst, v)
	}
	return len(values), dst
}
