// Package restcodec translates between the JSON bodies of the Open Inference
// Protocol's REST API and its protobuf messages, in both directions.
//
// Input tensors always leave as raw_input_contents (little-endian, row-major;
// BYTES as a 4-byte length and the bytes, per element): the one encoding both
// transports carry and the cheapest for the Python service to read. Errors are
// gRPC status errors, the currency every layer of the gateway deals in.
package restcodec

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
)

// inferRequest is the JSON body of POST .../infer. Tensor data and parameter
// values stay raw until the datatype says how to read them.
type inferRequest struct {
	ID         string                     `json:"id"`
	Parameters map[string]json.RawMessage `json:"parameters"`
	Inputs     []inputTensor              `json:"inputs"`
	Outputs    []requestedOutput          `json:"outputs"`
}

type inputTensor struct {
	Name       string                     `json:"name"`
	Shape      []int64                    `json:"shape"`
	Datatype   string                     `json:"datatype"`
	Parameters map[string]json.RawMessage `json:"parameters"`
	Data       rawValue                   `json:"data"`
}

// rawValue is a JSON value as it stands in the body: unlike
// json.RawMessage, a view of the body rather than a copy, which the body
// outlives (the largest part of a request, read once more by walkData).
type rawValue []byte

func (v *rawValue) UnmarshalJSON(b []byte) error {
	*v = b
	return nil
}

type requestedOutput struct {
	Name       string                     `json:"name"`
	Parameters map[string]json.RawMessage `json:"parameters"`
}

// DecodeInferRequest decodes the body of an infer request, and says how the
// client wants the response encoded. The caller sets the model name and
// version, which come from the URL.
//
// headerLength is the request's Inference-Header-Content-Length (the binary
// tensor extension): empty when the whole body is JSON, else the length of
// the JSON that begins the body, after which the binary data of the inputs
// with a binary_data_size parameter follow, in the order of the inputs.
// Binary data becomes raw_input_contents as sub-slices of body, not copies.
// Every error is an INVALID_ARGUMENT status whose message names the problem.
func DecodeInferRequest(body []byte, headerLength string) (*pb.ModelInferRequest, ResponseEncoding, error) {
	header, binary, err := splitBody(body, headerLength)
	if err != nil {
		return nil, ResponseEncoding{}, err
	}
	var req inferRequest
	if err := json.Unmarshal(header, &req); err != nil {
		return nil, ResponseEncoding{}, jsonError(err)
	}
	enc, err := responseEncoding(&req)
	if err != nil {
		return nil, ResponseEncoding{}, err
	}
	params, err := decodeParameters(req.Parameters)
	if err != nil {
		return nil, ResponseEncoding{}, invalid("%v", err)
	}
	out := &pb.ModelInferRequest{
		Id:               req.ID,
		Parameters:       params,
		Inputs:           make([]*pb.ModelInferRequest_InferInputTensor, len(req.Inputs)),
		RawInputContents: make([][]byte, len(req.Inputs)),
	}
	for i := range req.Inputs {
		in := &req.Inputs[i]
		tensor, raw, err := decodeInput(in, &binary)
		if err != nil {
			if in.Name == "" {
				return nil, ResponseEncoding{}, invalid("inputs[%d]: %v", i, err)
			}
			return nil, ResponseEncoding{}, invalid("input %q: %v", in.Name, err)
		}
		out.Inputs[i], out.RawInputContents[i] = tensor, raw
	}
	if len(binary) != 0 {
		return nil, ResponseEncoding{}, invalid("%d bytes of binary data follow the JSON header that no input's binary_data_size claims", len(binary))
	}
	for i, o := range req.Outputs {
		if o.Name == "" {
			return nil, ResponseEncoding{}, invalid("outputs[%d]: name is missing", i)
		}
		params, err := decodeParameters(o.Parameters)
		if err != nil {
			return nil, ResponseEncoding{}, invalid("output %q: %v", o.Name, err)
		}
		out.Outputs = append(out.Outputs, &pb.ModelInferRequest_InferRequestedOutputTensor{Name: o.Name, Parameters: params})
	}
	return out, enc, nil
}

// splitBody cuts a body into its JSON header and the binary data after it.
func splitBody(body []byte, headerLength string) (header, binary []byte, err error) {
	if headerLength == "" {
		return body, nil, nil
	}
	n, err := strconv.Atoi(headerLength)
	if err != nil || n < 0 {
		return nil, nil, invalid("Inference-Header-Content-Length %q is not a byte count", headerLength)
	}
	if n > len(body) {
		return nil, nil, invalid("Inference-Header-Content-Length %d is longer than the body, %d bytes", n, len(body))
	}
	return body[:n], body[n:], nil
}

// decodeInput checks one input tensor and encodes its data as raw contents,
// or, when it has a binary_data_size, takes its raw contents from the front
// of binary.
func decodeInput(in *inputTensor, binary *[]byte) (*pb.ModelInferRequest_InferInputTensor, []byte, error) {
	if in.Name == "" {
		return nil, nil, errors.New("name is missing")
	}
	dt, err := lookupDatatype(in.Datatype)
	if err != nil {
		return nil, nil, err
	}
	sizeText, isBinary := in.Parameters[binaryDataSize]
	delete(in.Parameters, binaryDataSize) // the gateway's business, not the service's
	params, err := decodeParameters(in.Parameters)
	if err != nil {
		return nil, nil, err
	}
	count, err := elementCount(in.Shape)
	if err != nil {
		return nil, nil, err
	}
	tensor := &pb.ModelInferRequest_InferInputTensor{
		Name:       in.Name,
		Datatype:   in.Datatype,
		Shape:      in.Shape,
		Parameters: params,
	}
	hasData := len(in.Data) != 0 && string(in.Data) != "null"
	if isBinary {
		if hasData {
			return nil, nil, fmt.Errorf("has both %s and data; send one", binaryDataSize)
		}
		raw, err := takeBinary(sizeText, dt, in.Shape, count, binary)
		if err != nil {
			return nil, nil, err
		}
		return tensor, raw, nil
	}
	if !hasData {
		return nil, nil, errors.New("data is missing")
	}
	if s := (scanner{b: in.Data}); s.peek() != '[' {
		return nil, nil, fmt.Errorf("data is %s, expected an array", s.element().describe())
	}
	// Every element takes at least one byte and a separator, so data of n
	// bytes holds at most (n-1)/2 elements. Sizing the buffer for no more than
	// that keeps a claimed shape like [1e12] from costing memory: the data is
	// scanned as usual, finds too few elements, and says so; the buffer only
	// ever grows with elements that are really there.
	elems := min(count, (len(in.Data)-1)/2)
	capacity := elems * dt.size
	if dt.size == 0 {
		capacity = len(in.Data) // BYTES: lengths and bytes are never longer than the JSON
	}
	raw, err := walkData(in.Data, in.Shape, count, dt, make([]byte, 0, capacity))
	if err != nil {
		return nil, nil, err
	}
	return tensor, raw, nil
}

// elementCount multiplies out a shape, refusing negative dimensions and
// products that overflow an int.
func elementCount(shape []int64) (int, error) {
	for i, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape %s has a negative dimension at %d", formatShape(shape), i)
		}
	}
	// Checked first: a zero dimension makes the product zero even where the
	// other dimensions alone would overflow.
	if slices.Contains(shape, 0) {
		return 0, nil
	}
	count := int64(1)
	for _, d := range shape {
		if count > math.MaxInt/d {
			return 0, fmt.Errorf("shape %s holds more elements than can be counted", formatShape(shape))
		}
		count *= d
	}
	return int(count), nil
}

// decodeParameters turns OIP JSON parameters into InferParameters. JSON has
// one kind of number: integers become int64_param (uint64_param above its
// range), all other numbers double_param.
func decodeParameters(raw map[string]json.RawMessage) (map[string]*pb.InferParameter, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	params := make(map[string]*pb.InferParameter, len(raw))
	for key, value := range raw {
		s := scanner{b: value}
		e := s.element()
		p := &pb.InferParameter{}
		switch e.kind {
		case 't', 'f':
			p.ParameterChoice = &pb.InferParameter_BoolParam{BoolParam: e.kind == 't'}
		case 's':
			var str string
			if err := json.Unmarshal(e.text, &str); err != nil {
				return nil, fmt.Errorf("parameter %q: %v", key, err)
			}
			p.ParameterChoice = &pb.InferParameter_StringParam{StringParam: str}
		case 'n':
			p = numberParameter(string(e.text))
		default:
			return nil, fmt.Errorf("parameter %q is %s, expected a bool, number or string", key, e.describe())
		}
		params[key] = p
	}
	return params, nil
}

func numberParameter(text string) *pb.InferParameter {
	if v, err := strconv.ParseInt(text, 10, 64); err == nil {
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: v}}
	}
	if v, err := strconv.ParseUint(text, 10, 64); err == nil {
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_Uint64Param{Uint64Param: v}}
	}
	v, _ := strconv.ParseFloat(text, 64) // valid JSON, so only the range can fail: then ±Inf
	return &pb.InferParameter{ParameterChoice: &pb.InferParameter_DoubleParam{DoubleParam: v}}
}

// jsonError rewrites encoding/json's errors, which speak of Go types, in the
// terms of the request a client wrote.
func jsonError(err error) error {
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return invalid("malformed JSON at byte %d: %v", syntaxErr.Offset, err)
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := typeErr.Field
		if field == "" {
			field = "the request"
		}
		return invalid("invalid JSON: %s is %s, expected %s", field, describeJSONValue(typeErr.Value), describeGoType(typeErr.Type))
	}
	return invalid("invalid JSON: %v", err)
}

// describeJSONValue words encoding/json's Value ("string", "number 1e12").
func describeJSONValue(v string) string {
	if n, ok := strings.CutPrefix(v, "number "); ok {
		return n
	}
	switch v {
	case "array", "object":
		return "an " + v
	}
	return "a " + v
}

func describeGoType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a bool"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}
