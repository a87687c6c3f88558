package restcodec

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
)

func rawResponse(datatype string, shape []int64, raw []byte) *pb.ModelInferResponse {
	return &pb.ModelInferResponse{
		ModelName:         "m",
		ModelVersion:      "1",
		Outputs:           []*pb.ModelInferResponse_InferOutputTensor{{Name: "y", Datatype: datatype, Shape: shape}},
		RawOutputContents: [][]byte{raw},
	}
}

func typedResponse(datatype string, shape []int64, contents *pb.InferTensorContents) *pb.ModelInferResponse {
	return &pb.ModelInferResponse{
		ModelName:    "m",
		ModelVersion: "1",
		Outputs:      []*pb.ModelInferResponse_InferOutputTensor{{Name: "y", Datatype: datatype, Shape: shape, Contents: contents}},
	}
}

func TestAppendInferResponse(t *testing.T) {
	const head = `{"model_name":"m","model_version":"1","outputs":[{"name":"y","datatype":`
	tests := []struct {
		name string
		resp *pb.ModelInferResponse
		want string
	}{
		{"bool", rawResponse("BOOL", []int64{3}, []byte{1, 0, 2}), head + `"BOOL","shape":[3],"data":[true,false,true]}]}`},
		{"uint8", rawResponse("UINT8", []int64{2}, []byte{0, 255}), head + `"UINT8","shape":[2],"data":[0,255]}]}`},
		{"uint16", rawResponse("UINT16", []int64{1}, le(uint16(65535))), head + `"UINT16","shape":[1],"data":[65535]}]}`},
		{"uint32", rawResponse("UINT32", []int64{1}, le(uint32(math.MaxUint32))), head + `"UINT32","shape":[1],"data":[4294967295]}]}`},
		{"uint64", rawResponse("UINT64", []int64{1}, le(uint64(math.MaxUint64))), head + `"UINT64","shape":[1],"data":[18446744073709551615]}]}`},
		{"int8", rawResponse("INT8", []int64{2}, le(int8(-128), int8(127))), head + `"INT8","shape":[2],"data":[-128,127]}]}`},
		{"int16", rawResponse("INT16", []int64{2}, le(int16(-32768), int16(-1))), head + `"INT16","shape":[2],"data":[-32768,-1]}]}`},
		{"int32", rawResponse("INT32", []int64{1}, le(int32(math.MinInt32))), head + `"INT32","shape":[1],"data":[-2147483648]}]}`},
		{"int64", rawResponse("INT64", []int64{1}, le(int64(math.MinInt64))), head + `"INT64","shape":[1],"data":[-9223372036854775808]}]}`},
		{"fp16", rawResponse("FP16", []int64{3}, le(uint16(0x3c00), uint16(0xc000), uint16(0x0001))), head + `"FP16","shape":[3],"data":[1,-2,5.9604645e-08]}]}`},
		{"fp32 shortest round trip", rawResponse("FP32", []int64{1, 3}, le(float32(0.1), float32(1e6), float32(-3.4028235e38))), head + `"FP32","shape":[1,3],"data":[0.1,1e+06,-3.4028235e+38]}]}`},
		{"fp32 non-finite", rawResponse("FP32", []int64{3}, le(float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)))), head + `"FP32","shape":[3],"data":["NaN","Infinity","-Infinity"]}]}`},
		{"fp64", rawResponse("FP64", []int64{2}, le(0.1, 1e300)), head + `"FP64","shape":[2],"data":[0.1,1e+300]}]}`},
		{"bytes", rawResponse("BYTES", []int64{3}, bytesRaw("a\"b", "", "\x00\xff<")), head + `"BYTES","shape":[3],"data":["a\"b","","\u0000\ufffd<"]}]}`},
		{"empty", rawResponse("FP32", []int64{0, 10}, nil), head + `"FP32","shape":[0,10],"data":[]}]}`},
		{"typed bool", typedResponse("BOOL", []int64{2}, &pb.InferTensorContents{BoolContents: []bool{true, false}}), head + `"BOOL","shape":[2],"data":[true,false]}]}`},
		{"typed uint16", typedResponse("UINT16", []int64{1}, &pb.InferTensorContents{UintContents: []uint32{7}}), head + `"UINT16","shape":[1],"data":[7]}]}`},
		{"typed uint64", typedResponse("UINT64", []int64{1}, &pb.InferTensorContents{Uint64Contents: []uint64{8}}), head + `"UINT64","shape":[1],"data":[8]}]}`},
		{"typed int8", typedResponse("INT8", []int64{1}, &pb.InferTensorContents{IntContents: []int32{-3}}), head + `"INT8","shape":[1],"data":[-3]}]}`},
		{"typed int64", typedResponse("INT64", []int64{1}, &pb.InferTensorContents{Int64Contents: []int64{-4}}), head + `"INT64","shape":[1],"data":[-4]}]}`},
		{"typed fp32", typedResponse("FP32", []int64{2}, &pb.InferTensorContents{Fp32Contents: []float32{0.1, 2}}), head + `"FP32","shape":[2],"data":[0.1,2]}]}`},
		{"typed fp64", typedResponse("FP64", []int64{1}, &pb.InferTensorContents{Fp64Contents: []float64{0.1}}), head + `"FP64","shape":[1],"data":[0.1]}]}`},
		{"typed bytes", typedResponse("BYTES", []int64{1}, &pb.InferTensorContents{BytesContents: [][]byte{[]byte("hi")}}), head + `"BYTES","shape":[1],"data":["hi"]}]}`},
		{"id and parameters", &pb.ModelInferResponse{
			ModelName: "m", ModelVersion: "1", Id: "req-1",
			Parameters: map[string]*pb.InferParameter{
				"b": {ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: true}},
				"a": {ParameterChoice: &pb.InferParameter_StringParam{StringParam: "x"}},
				"c": {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: -1}},
				"d": {ParameterChoice: &pb.InferParameter_DoubleParam{DoubleParam: 0.5}},
				"e": {ParameterChoice: &pb.InferParameter_Uint64Param{Uint64Param: math.MaxUint64}},
			},
		}, `{"model_name":"m","model_version":"1","id":"req-1","parameters":{"a":"x","b":true,"c":-1,"d":0.5,"e":18446744073709551615},"outputs":[]}`},
		{"output parameters", &pb.ModelInferResponse{
			ModelName: "m", ModelVersion: "1",
			Outputs: []*pb.ModelInferResponse_InferOutputTensor{{Name: "y", Datatype: "INT8", Shape: []int64{1},
				Parameters: map[string]*pb.InferParameter{"k": {ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: false}}}}},
			RawOutputContents: [][]byte{{5}},
		}, head + `"INT8","shape":[1],"parameters":{"k":false},"data":[5]}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := appendJSON(nil, tt.resp)
			if err != nil {
				t.Fatalf("AppendInferResponse: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("\n got %s\nwant %s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("not valid JSON: %s", got)
			}
		})
	}
}

// What the codec writes for a tensor, it reads back to the same raw bytes.
func TestRoundTrip(t *testing.T) {
	tests := []struct {
		datatype string
		raw      []byte
	}{
		{"FP32", le(float32(0.1), float32(math.SmallestNonzeroFloat32), float32(math.MaxFloat32), float32(-1.0/3))},
		{"FP64", le(0.1, math.SmallestNonzeroFloat64, math.MaxFloat64, -1.0/3)},
		{"FP16", le(uint16(0x0001), uint16(0x3555), uint16(0x7bff), uint16(0x8400))},
		{"INT64", le(int64(math.MinInt64), int64(0), int64(math.MaxInt64), int64(-1))},
		{"UINT64", le(uint64(math.MaxUint64), uint64(0), uint64(1), uint64(1<<63))},
		{"BYTES", bytesRaw("a", "\n\t\"\\", "é", "")},
	}
	for _, tt := range tests {
		t.Run(tt.datatype, func(t *testing.T) {
			out, err := appendJSON(nil, rawResponse(tt.datatype, []int64{2, 2}, tt.raw))
			if err != nil {
				t.Fatal(err)
			}
			var resp struct {
				Outputs []struct {
					Data json.RawMessage `json:"data"`
				} `json:"outputs"`
			}
			if err := json.Unmarshal(out, &resp); err != nil {
				t.Fatal(err)
			}
			req, err := decodeJSON([]byte(oneInput(tt.datatype, "[2, 2]", string(resp.Outputs[0].Data))))
			if err != nil {
				t.Fatal(err)
			}
			if got := req.GetRawInputContents()[0]; string(got) != string(tt.raw) {
				t.Errorf("round trip of %s: got %v, want %v", resp.Outputs[0].Data, got, tt.raw)
			}
		})
	}
}

func TestAppendInferResponseErrors(t *testing.T) {
	tests := []struct {
		name string
		resp *pb.ModelInferResponse
		want string
	}{
		{"raw too short", rawResponse("FP32", []int64{2}, make([]byte, 7)), `inference response: output "y": raw contents hold 7 bytes, not 2 FP32 elements`},
		{"raw too long", rawResponse("INT8", []int64{2}, make([]byte, 3)), `inference response: output "y": raw contents hold 3 bytes, not 2 INT8 elements`},
		{"huge shape", rawResponse("FP64", []int64{1 << 62}, make([]byte, 8)), `inference response: output "y": raw contents hold 8 bytes, not 4611686018427387904 FP64 elements`},
		{"bytes truncated length", rawResponse("BYTES", []int64{2}, bytesRaw("a")), `inference response: output "y": raw contents end before element 1 of 2`},
		{"bytes element overruns", rawResponse("BYTES", []int64{1}, []byte{9, 0, 0, 0, 'a'}), `inference response: output "y": element 0 claims 9 bytes, 1 remain`},
		{"bytes extra", rawResponse("BYTES", []int64{1}, bytesRaw("a", "b")), `inference response: output "y": raw contents run 5 bytes past 1 elements`},
		{"unknown datatype", rawResponse("FP8", []int64{1}, []byte{0}), `inference response: output "y": unknown datatype "FP8"`},
		{"negative shape", rawResponse("FP32", []int64{-1}, nil), `inference response: output "y": shape [-1] has a negative dimension at 0`},
		{"typed count", typedResponse("FP32", []int64{3}, &pb.InferTensorContents{Fp32Contents: []float32{1}}), `inference response: output "y": typed contents hold 1 elements, the shape 3`},
		{"typed FP16", typedResponse("FP16", []int64{1}, &pb.InferTensorContents{}), `inference response: output "y": FP16 travels only as raw contents`},
		{"raw count", &pb.ModelInferResponse{
			Outputs:           []*pb.ModelInferResponse_InferOutputTensor{{Name: "a"}, {Name: "b"}},
			RawOutputContents: [][]byte{{}},
		}, "inference response has 2 outputs but 1 raw contents"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := appendJSON(nil, tt.resp)
			st, ok := status.FromError(err)
			if err == nil || !ok || st.Code() != codes.Internal {
				t.Fatalf("error %v is not an INTERNAL status", err)
			}
			if !strings.HasPrefix(st.Message(), tt.want) {
				t.Errorf("\n got %s\nwant %s", st.Message(), tt.want)
			}
		})
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", "quote\" back\\slash", "\x00\x01\x1f\x7f", "é€😀", "<>&", "\u2028", "bad\xffutf8\xc3"} {
		got := appendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("appendString(%q) = %s: %v", s, got, err)
		}
		want := strings.ToValidUTF8(s, "\ufffd")
		if back != want {
			t.Errorf("appendString(%q) read back as %q, want %q", s, back, want)
		}
	}
}

func TestMetadata(t *testing.T) {
	server, err := MarshalServerMetadata(&pb.ServerMetadataResponse{Name: "tandem", Version: "1.0"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"name":"tandem","version":"1.0","extensions":[]}`; string(server) != want {
		t.Errorf("server metadata = %s, want %s", server, want)
	}
	model, err := MarshalModelMetadata(&pb.ModelMetadataResponse{
		Name: "digits", Versions: []string{"1"}, Platform: "onnxruntime_onnx",
		Inputs:  []*pb.ModelMetadataResponse_TensorMetadata{{Name: "pixels", Datatype: "FP32", Shape: []int64{-1, 64}}},
		Outputs: []*pb.ModelMetadataResponse_TensorMetadata{{Name: "probabilities", Datatype: "FP32", Shape: []int64{-1, 10}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"name":"digits","versions":["1"],"platform":"onnxruntime_onnx",` +
		`"inputs":[{"name":"pixels","datatype":"FP32","shape":[-1,64]}],` +
		`"outputs":[{"name":"probabilities","datatype":"FP32","shape":[-1,10]}]}`
	if string(model) != want {
		t.Errorf("model metadata =\n %s\nwant %s", model, want)
	}
}
