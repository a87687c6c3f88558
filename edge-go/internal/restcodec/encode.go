package restcodec

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
)

// AppendInferResponse appends the JSON body of an infer response to dst.
// Outputs are read from raw_output_contents when the response has them and
// from typed contents otherwise; their data is always written flat. A
// response that does not add up (contents that disagree with shape and
// datatype) is the service's bug: an INTERNAL status.
//
// Outputs that enc wants as binary data (the binary tensor extension) carry
// a binary_data_size parameter instead of data, and their bytes are
// returned in blobs, in order, to be written after the JSON: the response's
// own raw contents, not copies. blobs is nil when no output is binary.
func AppendInferResponse(dst []byte, resp *pb.ModelInferResponse, enc ResponseEncoding) (body []byte, blobs [][]byte, err error) {
	raw := resp.GetRawOutputContents()
	if len(raw) != 0 && len(raw) != len(resp.GetOutputs()) {
		return dst, nil, status.Errorf(codes.Internal, "inference response has %d outputs but %d raw contents", len(resp.GetOutputs()), len(raw))
	}
	dst = append(dst, `{"model_name":`...)
	dst = appendString(dst, resp.GetModelName())
	dst = append(dst, `,"model_version":`...)
	dst = appendString(dst, resp.GetModelVersion())
	if id := resp.GetId(); id != "" {
		dst = append(dst, `,"id":`...)
		dst = appendString(dst, id)
	}
	if params := resp.GetParameters(); len(params) > 0 {
		dst = append(dst, `,"parameters":`...)
		dst = appendParameters(dst, params)
	}
	dst = append(dst, `,"outputs":[`...)
	for i, out := range resp.GetOutputs() {
		if i > 0 {
			dst = append(dst, ',')
		}
		var outRaw, blob []byte
		if len(raw) != 0 {
			outRaw = raw[i]
		}
		dst, blob, err = appendOutput(dst, out, outRaw, len(raw) != 0, enc.binary(out.GetName()))
		if err != nil {
			return dst, nil, status.Errorf(codes.Internal, "inference response: output %q: %v", out.GetName(), err)
		}
		if blob != nil {
			blobs = append(blobs, blob)
		}
	}
	return append(dst, "]}"...), blobs, nil
}

// appendOutput writes one output tensor, from raw contents when isRaw, else
// from typed contents. A binary output is written without data, which is
// returned as blob instead (never nil, if empty).
func appendOutput(dst []byte, out *pb.ModelInferResponse_InferOutputTensor, raw []byte, isRaw, binary bool) (_ []byte, blob []byte, err error) {
	dt, err := lookupDatatype(out.GetDatatype())
	if err != nil {
		return dst, nil, err
	}
	count, err := elementCount(out.GetShape())
	if err != nil {
		return dst, nil, err
	}
	if binary {
		if blob, err = outputBinary(dt, out, raw, isRaw, count); err != nil {
			return dst, nil, err
		}
	}
	dst = append(dst, `{"name":`...)
	dst = appendString(dst, out.GetName())
	dst = append(dst, `,"datatype":`...)
	dst = appendString(dst, dt.name)
	dst = append(dst, `,"shape":[`...)
	for i, d := range out.GetShape() {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, d, 10)
	}
	dst = append(dst, ']')
	params := out.GetParameters()
	if binary {
		params = maps.Clone(params)
		if params == nil {
			params = map[string]*pb.InferParameter{}
		}
		params[binaryDataSize] = &pb.InferParameter{ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: int64(len(blob))}}
	}
	if len(params) > 0 {
		dst = append(dst, `,"parameters":`...)
		dst = appendParameters(dst, params)
	}
	if binary {
		return append(dst, '}'), blob, nil
	}
	dst = append(dst, `,"data":[`...)
	if isRaw {
		dst, err = appendRawData(dst, dt, raw, count)
	} else {
		dst, err = appendTypedData(dst, dt, out.GetContents(), count)
	}
	if err != nil {
		return dst, nil, err
	}
	return append(dst, "]}"...), nil, nil
}

// appendRawData writes count elements of raw contents as JSON values.
func appendRawData(dst []byte, dt *datatype, raw []byte, count int) ([]byte, error) {
	if dt.size == 0 {
		return appendRawBytes(dst, raw, count)
	}
	// Divided rather than multiplied: a shape from the service may be huge.
	if len(raw)%dt.size != 0 || len(raw)/dt.size != count {
		return dst, fmt.Errorf("raw contents hold %d bytes, not %d %s elements", len(raw), count, dt.name)
	}
	for i := 0; i < len(raw); i += dt.size {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = dt.appendJSON(dst, raw[i:i+dt.size])
	}
	return dst, nil
}

// appendRawBytes writes BYTES raw contents: per element, a 4-byte
// little-endian length and that many bytes.
func appendRawBytes(dst, raw []byte, count int) ([]byte, error) {
	for i := range count {
		if len(raw) < 4 {
			return dst, fmt.Errorf("raw contents end before element %d of %d", i, count)
		}
		n := binary.LittleEndian.Uint32(raw)
		if uint64(n) > uint64(len(raw)-4) {
			return dst, fmt.Errorf("element %d claims %d bytes, %d remain", i, n, len(raw)-4)
		}
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, string(raw[4:4+n]))
		raw = raw[4+n:]
	}
	if len(raw) != 0 {
		return dst, fmt.Errorf("raw contents run %d bytes past %d elements", len(raw), count)
	}
	return dst, nil
}

// appendTypedData writes count elements from the typed contents field that
// the OIP assigns to the datatype.
func appendTypedData(dst []byte, dt *datatype, c *pb.InferTensorContents, count int) ([]byte, error) {
	var n int
	switch dt.name {
	case "BOOL":
		n, dst = appendEach(dst, c.GetBoolContents(), strconv.AppendBool)
	case "UINT8", "UINT16", "UINT32":
		n, dst = appendEach(dst, c.GetUintContents(), func(b []byte, v uint32) []byte { return strconv.AppendUint(b, uint64(v), 10) })
	case "UINT64":
		n, dst = appendEach(dst, c.GetUint64Contents(), func(b []byte, v uint64) []byte { return strconv.AppendUint(b, v, 10) })
	case "INT8", "INT16", "INT32":
		n, dst = appendEach(dst, c.GetIntContents(), func(b []byte, v int32) []byte { return strconv.AppendInt(b, int64(v), 10) })
	case "INT64":
		n, dst = appendEach(dst, c.GetInt64Contents(), func(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) })
	case "FP32":
		n, dst = appendEach(dst, c.GetFp32Contents(), func(b []byte, v float32) []byte { return appendFloat(b, float64(v), 32) })
	case "FP64":
		n, dst = appendEach(dst, c.GetFp64Contents(), func(b []byte, v float64) []byte { return appendFloat(b, v, 64) })
	case "BYTES":
		n, dst = appendEach(dst, c.GetBytesContents(), func(b []byte, v []byte) []byte { return appendString(b, string(v)) })
	default:
		return dst, fmt.Errorf("%s travels only as raw contents", dt.name)
	}
	if n != count {
		return dst, fmt.Errorf("typed contents hold %d elements, the shape %d", n, count)
	}
	return dst, nil
}

func appendEach[T any](dst []byte, values []T, appendOne func([]byte, T) []byte) (int, []byte) {
	for i, v := range values {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendOne(dst, v)
	}
	return len(values), dst
}

// appendParameters writes parameters as a JSON object, keys sorted so that
// the same response always reads the same.
func appendParameters(dst []byte, params map[string]*pb.InferParameter) []byte {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k)
		dst = append(dst, ':')
		switch v := params[k].GetParameterChoice().(type) {
		case *pb.InferParameter_BoolParam:
			dst = strconv.AppendBool(dst, v.BoolParam)
		case *pb.InferParameter_Int64Param:
			dst = strconv.AppendInt(dst, v.Int64Param, 10)
		case *pb.InferParameter_Uint64Param:
			dst = strconv.AppendUint(dst, v.Uint64Param, 10)
		case *pb.InferParameter_DoubleParam:
			dst = appendFloat(dst, v.DoubleParam, 64)
		case *pb.InferParameter_StringParam:
			dst = appendString(dst, v.StringParam)
		default: // unset oneof
			dst = append(dst, "null"...)
		}
	}
	return append(dst, '}')
}

// appendString writes s as a JSON string. Bytes that are not UTF-8 become
// U+FFFD, as encoding/json writes them; unlike encoding/json, <, > and & stay
// as they are, since the body is never embedded in HTML.
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, s[start:i]...)
				dst = append(dst, `\ufffd`...)
				i += size
				start = i
				continue
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, `\n`...)
		case '\r':
			dst = append(dst, `\r`...)
		case '\t':
			dst = append(dst, `\t`...)
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// serverMetadata and modelMetadata are the OIP REST metadata bodies. Slices
// are never nil so that empty lists read [] rather than null.
type serverMetadata struct {
	Name       string   `json:"name"`
	Version    string   `json:"version"`
	Extensions []string `json:"extensions"`
}

type modelMetadata struct {
	Name     string           `json:"name"`
	Versions []string         `json:"versions"`
	Platform string           `json:"platform"`
	Inputs   []tensorMetadata `json:"inputs"`
	Outputs  []tensorMetadata `json:"outputs"`
}

type tensorMetadata struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// MarshalServerMetadata writes the JSON body of GET /v2.
func MarshalServerMetadata(m *pb.ServerMetadataResponse) ([]byte, error) {
	return json.Marshal(serverMetadata{
		Name:       m.GetName(),
		Version:    m.GetVersion(),
		Extensions: nonNil(m.GetExtensions()),
	})
}

// MarshalModelMetadata writes the JSON body of GET /v2/models/{model}.
func MarshalModelMetadata(m *pb.ModelMetadataResponse) ([]byte, error) {
	return json.Marshal(modelMetadata{
		Name:     m.GetName(),
		Versions: nonNil(m.GetVersions()),
		Platform: m.GetPlatform(),
		Inputs:   tensorsMetadata(m.GetInputs()),
		Outputs:  tensorsMetadata(m.GetOutputs()),
	})
}

func tensorsMetadata(ts []*pb.ModelMetadataResponse_TensorMetadata) []tensorMetadata {
	out := make([]tensorMetadata, len(ts))
	for i, t := range ts {
		out[i] = tensorMetadata{Name: t.GetName(), Datatype: t.GetDatatype(), Shape: nonNil(t.GetShape())}
	}
	return out
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
