package restcodec

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
)

// decodeJSON decodes a body that is all JSON.
func decodeJSON(body []byte) (*pb.ModelInferRequest, error) {
	req, _, err := DecodeInferRequest(body, "")
	return req, err
}

// appendJSON encodes a response with every output as JSON.
func appendJSON(dst []byte, resp *pb.ModelInferResponse) ([]byte, error) {
	out, _, err := AppendInferResponse(dst, resp, ResponseEncoding{})
	return out, err
}

// binaryBody builds a request as tritonclient sends it: the JSON header,
// then the binary data; it returns the body and the header's length.
func binaryBody(header string, blobs ...[]byte) ([]byte, string) {
	body := append([]byte(header), bytes.Join(blobs, nil)...)
	return body, strconv.Itoa(len(header))
}

func TestBinaryInputsEqualTheirJSON(t *testing.T) {
	tests := []struct {
		name   string
		header string // with binary_data_size
		blobs  [][]byte
		json   string // the same request in JSON
	}{
		{
			name:   "FP32",
			header: `{"inputs":[{"name":"x","datatype":"FP32","shape":[2,2],"parameters":{"binary_data_size":16}}]}`,
			blobs:  [][]byte{le(float32(1.5), float32(-2), float32(0.25), float32(3))},
			json:   `{"inputs":[{"name":"x","datatype":"FP32","shape":[2,2],"data":[1.5,-2,0.25,3]}]}`,
		},
		{
			name:   "every fixed-size kind and BYTES, in order",
			header: `{"id":"7","inputs":[{"name":"a","datatype":"INT64","shape":[2],"parameters":{"binary_data_size":16}},{"name":"b","datatype":"BOOL","shape":[3],"parameters":{"binary_data_size":3}},{"name":"c","datatype":"BYTES","shape":[2],"parameters":{"binary_data_size":15}},{"name":"d","datatype":"FP16","shape":[1],"parameters":{"binary_data_size":2}}]}`,
			blobs:  [][]byte{le(int64(-5), int64(math.MaxInt64)), {1, 0, 1}, bytesRaw("hi", "there"), le(uint16(0x3c00))},
			json:   `{"id":"7","inputs":[{"name":"a","datatype":"INT64","shape":[2],"data":[-5,9223372036854775807]},{"name":"b","datatype":"BOOL","shape":[3],"data":[true,false,true]},{"name":"c","datatype":"BYTES","shape":[2],"data":["hi","there"]},{"name":"d","datatype":"FP16","shape":[1],"data":[1]}]}`,
		},
		{
			name:   "mixed: one binary input, one JSON, other parameters kept",
			header: `{"inputs":[{"name":"x","datatype":"UINT8","shape":[3],"data":[1,2,3]},{"name":"y","datatype":"INT32","shape":[1],"parameters":{"binary_data_size":4,"p":1}}],"outputs":[{"name":"z","parameters":{"binary_data":true}}],"parameters":{"binary_data_output":false}}`,
			blobs:  [][]byte{le(int32(-9))},
			json:   `{"inputs":[{"name":"x","datatype":"UINT8","shape":[3],"data":[1,2,3]},{"name":"y","datatype":"INT32","shape":[1],"data":[-9],"parameters":{"p":1}}],"outputs":[{"name":"z"}]}`,
		},
		{
			name:   "empty tensor",
			header: `{"inputs":[{"name":"x","datatype":"FP32","shape":[0,4],"parameters":{"binary_data_size":0}}]}`,
			json:   `{"inputs":[{"name":"x","datatype":"FP32","shape":[0,4],"data":[]}]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, n := binaryBody(tt.header, tt.blobs...)
			got, _, err := DecodeInferRequest(body, n)
			if err != nil {
				t.Fatal(err)
			}
			want, err := decodeJSON([]byte(tt.json))
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, want) {
				t.Errorf("binary request decodes to\n%v\nits JSON to\n%v", got, want)
			}
		})
	}
}

func TestBinaryInputsAreNotCopied(t *testing.T) {
	body, n := binaryBody(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":4}}]}`, le(float32(1)))
	req, _, err := DecodeInferRequest(body, n)
	if err != nil {
		t.Fatal(err)
	}
	if &req.GetRawInputContents()[0][0] != &body[len(body)-4] {
		t.Errorf("the binary input was copied")
	}
}

func TestBinaryOutputs(t *testing.T) {
	probs := le(float32(0.25), float32(0.75))
	resp := &pb.ModelInferResponse{
		ModelName: "m", ModelVersion: "1",
		Outputs: []*pb.ModelInferResponse_InferOutputTensor{
			{Name: "p", Datatype: "FP32", Shape: []int64{1, 2}},
			{Name: "s", Datatype: "BYTES", Shape: []int64{1}, Parameters: map[string]*pb.InferParameter{"q": {ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: true}}}},
		},
		RawOutputContents: [][]byte{probs, bytesRaw("ok")},
	}
	typed := &pb.ModelInferResponse{
		ModelName: "m", ModelVersion: "1",
		Outputs: []*pb.ModelInferResponse_InferOutputTensor{
			{Name: "p", Datatype: "FP32", Shape: []int64{1, 2}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{0.25, 0.75}}},
			{Name: "s", Datatype: "BYTES", Shape: []int64{1}, Parameters: map[string]*pb.InferParameter{"q": {ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: true}}}, Contents: &pb.InferTensorContents{BytesContents: [][]byte{[]byte("ok")}}},
		},
	}
	const pJSON = `{"name":"p","datatype":"FP32","shape":[1,2],"data":[0.25,0.75]}`
	const sJSON = `{"name":"s","datatype":"BYTES","shape":[1],"parameters":{"q":true},"data":["ok"]}`
	const pBinary = `{"name":"p","datatype":"FP32","shape":[1,2],"parameters":{"binary_data_size":8}}`
	const sBinary = `{"name":"s","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":6,"q":true}}`
	head := `{"model_name":"m","model_version":"1","outputs":[`
	tests := []struct {
		name    string
		request string // its parameters choose the encoding
		json    string
		blobs   [][]byte
	}{
		{"JSON", `{"inputs":[]}`, head + pJSON + "," + sJSON + "]}", nil},
		{"binary_data_output", `{"inputs":[],"parameters":{"binary_data_output":true}}`, head + pBinary + "," + sBinary + "]}", [][]byte{probs, bytesRaw("ok")}},
		{"one output binary", `{"inputs":[],"outputs":[{"name":"p","parameters":{"binary_data":true}},{"name":"s"}]}`, head + pBinary + "," + sJSON + "]}", [][]byte{probs}},
		{"an output overrides binary_data_output", `{"inputs":[],"parameters":{"binary_data_output":true},"outputs":[{"name":"p","parameters":{"binary_data":false}},{"name":"s"}]}`, head + pJSON + "," + sBinary + "]}", [][]byte{bytesRaw("ok")}},
	}
	for _, tt := range tests {
		for _, r := range []struct {
			kind string
			resp *pb.ModelInferResponse
		}{{"raw", resp}, {"typed", typed}} {
			t.Run(tt.name+"/"+r.kind, func(t *testing.T) {
				_, enc, err := DecodeInferRequest([]byte(tt.request), "")
				if err != nil {
					t.Fatal(err)
				}
				got, blobs, err := AppendInferResponse(nil, r.resp, enc)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != tt.json {
					t.Errorf("JSON:\n got %s\nwant %s", got, tt.json)
				}
				if len(blobs) != len(tt.blobs) {
					t.Fatalf("%d blobs, want %d", len(blobs), len(tt.blobs))
				}
				for i := range blobs {
					if !bytes.Equal(blobs[i], tt.blobs[i]) {
						t.Errorf("blob %d = %v, want %v", i, blobs[i], tt.blobs[i])
					}
				}
				if !json.Valid(got) {
					t.Errorf("the header is not JSON")
				}
			})
		}
	}
	// Raw outputs are written from the response's own bytes.
	_, blobs, _ := AppendInferResponse(nil, resp, ResponseEncoding{all: true})
	if &blobs[0][0] != &probs[0] {
		t.Errorf("the raw output was copied")
	}
}

func TestBinaryOutputErrors(t *testing.T) {
	tests := []struct {
		name string
		resp *pb.ModelInferResponse
		want string
	}{
		{"raw too short", rawResponse("FP32", []int64{2}, le(float32(1))), `inference response: output "y": raw contents hold 4 bytes, not 2 FP32 elements`},
		{"bad BYTES", rawResponse("BYTES", []int64{1}, []byte{9, 0, 0, 0, 'a'}), `inference response: output "y": raw contents: element 0 claims 9 bytes, 1 remain`},
		{"typed FP16", typedResponse("FP16", []int64{1}, &pb.InferTensorContents{}), `inference response: output "y": FP16 travels only as raw contents`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := AppendInferResponse(nil, tt.resp, ResponseEncoding{all: true})
			if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != tt.want {
				t.Errorf("error %v, want INTERNAL %q", err, tt.want)
			}
		})
	}
}

func TestBinaryRequestErrors(t *testing.T) {
	fp32 := func(params string) string {
		return `{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"parameters":` + params + `}]}`
	}
	eight := le(float32(1), float32(2))
	tests := []struct {
		name   string
		header string
		blobs  [][]byte
		length string // Inference-Header-Content-Length; empty: the header's length
		want   string // the whole message
	}{
		{"length not a number", fp32(`{"binary_data_size":8}`), [][]byte{eight}, "abc", `Inference-Header-Content-Length "abc" is not a byte count`},
		{"length negative", fp32(`{"binary_data_size":8}`), [][]byte{eight}, "-1", `Inference-Header-Content-Length "-1" is not a byte count`},
		{"length past the body", fp32(`{"binary_data_size":8}`), [][]byte{eight}, "1000", "Inference-Header-Content-Length 1000 is longer than the body, 99 bytes"},
		{"length short of the JSON", fp32(`{"binary_data_size":8}`), [][]byte{eight}, "20", "malformed JSON at byte 20: unexpected end of JSON input"},
		{"size larger than what follows", fp32(`{"binary_data_size":8}`), [][]byte{eight[:6]}, "", `input "x": binary_data_size 8 runs past the end of the body: 6 bytes of binary data are left`},
		{"bytes left over", fp32(`{"binary_data_size":8}`), [][]byte{eight, {0}}, "", "1 bytes of binary data follow the JSON header that no input's binary_data_size claims"},
		{"binary data but no binary input", `{"inputs":[]}`, [][]byte{eight}, "", "8 bytes of binary data follow the JSON header that no input's binary_data_size claims"},
		{"size not the shape's", fp32(`{"binary_data_size":4}`), [][]byte{eight[:4]}, "", `input "x": binary_data_size 4 does not match shape [2] of FP32, which takes 8 bytes`},
		{"size not a multiple", fp32(`{"binary_data_size":9}`), [][]byte{eight, {0}}, "", `input "x": binary_data_size 9 does not match shape [2] of FP32, which takes 8 bytes`},
		{"size a string", fp32(`{"binary_data_size":"8"}`), [][]byte{eight}, "", `input "x": parameter "binary_data_size" is a string, expected a byte count`},
		{"size negative", fp32(`{"binary_data_size":-8}`), [][]byte{eight}, "", `input "x": parameter "binary_data_size" is -8, expected a byte count`},
		{"size fractional", fp32(`{"binary_data_size":8.5}`), [][]byte{eight}, "", `input "x": parameter "binary_data_size" is 8.5, expected a byte count`},
		{"binary and data", `{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1,2],"parameters":{"binary_data_size":8}}]}`, [][]byte{eight}, "", `input "x": has both binary_data_size and data; send one`},
		{"no header length", fp32(`{"binary_data_size":8}`), nil, "-", `input "x": binary_data_size 8 runs past the end of the body: 0 bytes of binary data are left`},
		{"BYTES element too long", `{"inputs":[{"name":"x","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":5}}]}`, [][]byte{{9, 0, 0, 0, 'a'}}, "", `input "x": binary data: element 0 claims 9 bytes, 1 remain`},
		{"BYTES too few elements", `{"inputs":[{"name":"x","datatype":"BYTES","shape":[2],"parameters":{"binary_data_size":5}}]}`, [][]byte{bytesRaw("a")}, "", `input "x": binary data: it ends before element 1 of 2`},
		{"BYTES too many bytes", `{"inputs":[{"name":"x","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":6}}]}`, [][]byte{bytesRaw("a"), {0}}, "", `input "x": binary data: it runs 1 bytes past 1 elements`},
		{"binary_data not a bool", `{"inputs":[],"outputs":[{"name":"y","parameters":{"binary_data":1}}]}`, nil, "", `output "y": parameter "binary_data" is a number, expected a bool`},
		{"binary_data_output not a bool", `{"inputs":[],"parameters":{"binary_data_output":"yes"}}`, nil, "", `parameter "binary_data_output" is a string, expected a bool`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, n := binaryBody(tt.header, tt.blobs...)
			switch tt.length {
			case "":
			case "-":
				n = ""
			default:
				n = tt.length
			}
			_, _, err := DecodeInferRequest(body, n)
			st := status.Convert(err)
			if err == nil || st.Code() != codes.InvalidArgument {
				t.Fatalf("error %v is not an INVALID_ARGUMENT status", err)
			}
			if st.Message() != tt.want {
				t.Errorf("message:\n got %s\nwant %s", st.Message(), tt.want)
			}
			if strings.Contains(st.Message(), "%!") {
				t.Errorf("message has a formatting error: %s", st.Message())
			}
		})
	}
}

// FuzzDecodeInferRequest feeds arbitrary bodies and header lengths: decoding
// never panics, every error is INVALID_ARGUMENT, and binary inputs always
// lie within the body.
func FuzzDecodeInferRequest(f *testing.F) {
	body, n := binaryBody(`{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"parameters":{"binary_data_size":8}},{"name":"b","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":5}}]}`, le(float32(1), float32(2)), bytesRaw("a"))
	f.Add(body, n)
	f.Add([]byte(oneInput("FP32", "[2, 1]", "[[1], [2]]")), "")
	f.Add([]byte(`{"inputs":[],"parameters":{"binary_data_output":true},"outputs":[{"name":"y","parameters":{"binary_data":false}}]}`), "")
	f.Fuzz(func(t *testing.T, body []byte, headerLength string) {
		req, _, err := DecodeInferRequest(body, headerLength)
		if err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("error %v is not INVALID_ARGUMENT", err)
			}
			return
		}
		if len(req.GetRawInputContents()) != len(req.GetInputs()) {
			t.Fatalf("%d raw contents for %d inputs", len(req.GetRawInputContents()), len(req.GetInputs()))
		}
	})
}
