package restcodec

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// le concatenates little-endian encodings of fixed-size values.
func le(values ...any) []byte {
	var b bytes.Buffer
	for _, v := range values {
		if err := binary.Write(&b, binary.LittleEndian, v); err != nil {
			panic(err)
		}
	}
	return b.Bytes()
}

// bytesRaw encodes BYTES elements in Triton's raw format.
func bytesRaw(elems ...string) []byte {
	var b []byte
	for _, e := range elems {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(e)))
		b = append(b, e...)
	}
	return b
}

func oneInput(datatype, shape, data string) string {
	return fmt.Sprintf(`{"inputs":[{"name":"x","datatype":%q,"shape":%s,"data":%s}]}`, datatype, shape, data)
}

func TestDecodeInferRequestDatatypes(t *testing.T) {
	tests := []struct {
		name     string
		datatype string
		shape    string
		data     string
		want     []byte
	}{
		{"bool", "BOOL", "[3]", "[true, false, true]", []byte{1, 0, 1}},
		{"uint8", "UINT8", "[3]", "[0, 7, 255]", []byte{0, 7, 255}},
		{"uint16", "UINT16", "[2]", "[1, 65535]", le(uint16(1), uint16(65535))},
		{"uint32", "UINT32", "[2]", "[1, 4294967295]", le(uint32(1), uint32(math.MaxUint32))},
		{"uint64", "UINT64", "[2]", "[1, 18446744073709551615]", le(uint64(1), uint64(math.MaxUint64))},
		{"int8", "INT8", "[3]", "[-128, 0, 127]", le(int8(-128), int8(0), int8(127))},
		{"int16", "INT16", "[2]", "[-32768, 32767]", le(int16(-32768), int16(32767))},
		{"int32", "INT32", "[2]", "[-2147483648, 2147483647]", le(int32(math.MinInt32), int32(math.MaxInt32))},
		{"int64", "INT64", "[2]", "[-9223372036854775808, 9223372036854775807]", le(int64(math.MinInt64), int64(math.MaxInt64))},
		{"fp16", "FP16", "[4]", "[1, -2, 0.5, 65504]", le(uint16(0x3c00), uint16(0xc000), uint16(0x3800), uint16(0x7bff))},
		{"fp32", "FP32", "[3]", "[0.1, -1.5e3, 3.4028234663852886e38]", le(float32(0.1), float32(-1500), float32(math.MaxFloat32))},
		{"fp64", "FP64", "[2]", "[0.1, -1e300]", le(0.1, -1e300)},
		{"bytes", "BYTES", "[3]", `["abc", "", "a\"b\u00e9"]`, bytesRaw("abc", "", "a\"bé")},
		{"nested 2x3", "INT32", "[2, 3]", "[[1, 2, 3], [4, 5, 6]]", le(int32(1), int32(2), int32(3), int32(4), int32(5), int32(6))},
		{"flat 2x3", "INT32", "[2, 3]", "[1, 2, 3, 4, 5, 6]", le(int32(1), int32(2), int32(3), int32(4), int32(5), int32(6))},
		{"nested 2x1x2", "UINT8", "[2, 1, 2]", "[[[1, 2]], [[3, 4]]]", []byte{1, 2, 3, 4}},
		{"nested bytes", "BYTES", "[1, 2]", `[["a", "bc"]]`, bytesRaw("a", "bc")},
		{"scalar", "FP64", "[]", "[2.5]", le(2.5)},
		{"empty", "FP32", "[0, 64]", "[]", []byte{}},
		{"empty nested", "FP32", "[2, 0]", "[[], []]", []byte{}},
		{"white space", "INT8", "[2, 1]", " [ [ 1 ] ,\n\t[ 2 ] ] ", []byte{1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := decodeJSON([]byte(oneInput(tt.datatype, tt.shape, tt.data)))
			if err != nil {
				t.Fatalf("DecodeInferRequest: %v", err)
			}
			if len(req.GetInputs()) != 1 || len(req.GetRawInputContents()) != 1 {
				t.Fatalf("got %d inputs, %d raw contents; want 1, 1", len(req.GetInputs()), len(req.GetRawInputContents()))
			}
			in := req.GetInputs()[0]
			if in.GetName() != "x" || in.GetDatatype() != tt.datatype || in.GetContents() != nil {
				t.Errorf("input = %v", in)
			}
			if got := req.GetRawInputContents()[0]; !bytes.Equal(got, tt.want) {
				t.Errorf("raw = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDecodeInferRequestFields(t *testing.T) {
	body := `{
		"id": "req-7",
		"parameters": {"priority": 3, "big": 18446744073709551615, "ratio": 0.5, "trace": true, "tag": "a"},
		"inputs": [
			{"name": "a", "datatype": "FP32", "shape": [1, 2], "data": [1, 2], "parameters": {"p": "q"}},
			{"name": "b", "datatype": "BYTES", "shape": [1], "data": ["z"]}
		],
		"outputs": [{"name": "probabilities", "parameters": {"binary_data": false, "k": 2}}]
	}`
	req, err := decodeJSON([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if req.GetId() != "req-7" {
		t.Errorf("id = %q", req.GetId())
	}
	params := req.GetParameters()
	if params["priority"].GetInt64Param() != 3 ||
		params["big"].GetUint64Param() != math.MaxUint64 ||
		params["ratio"].GetDoubleParam() != 0.5 ||
		!params["trace"].GetBoolParam() ||
		params["tag"].GetStringParam() != "a" {
		t.Errorf("parameters = %v", params)
	}
	if got := req.GetInputs()[0].GetParameters()["p"].GetStringParam(); got != "q" {
		t.Errorf("input parameter p = %q", got)
	}
	if got := req.GetInputs()[0].GetShape(); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Errorf("shape = %v", got)
	}
	if len(req.GetRawInputContents()) != 2 || !bytes.Equal(req.GetRawInputContents()[1], bytesRaw("z")) {
		t.Errorf("raw = %v", req.GetRawInputContents())
	}
	out := req.GetOutputs()
	if len(out) != 1 || out[0].GetName() != "probabilities" {
		t.Fatalf("outputs = %v", out)
	}
	// binary_data concerns the HTTP response: the gateway keeps it.
	if p := out[0].GetParameters(); len(p) != 1 || p["k"].GetInt64Param() != 2 {
		t.Errorf("output parameters = %v", p)
	}
}

func TestDecodeInferRequestErrors(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string // the whole message, so that its wording is part of the contract
	}{
		{"malformed JSON", `{"inputs": [`, "malformed JSON at byte 12: unexpected end of JSON input"},
		{"trailing garbage", `{} x`, "malformed JSON at byte 4: invalid character 'x' after top-level value"},
		{"not an object", `[1, 2, 3]`, "invalid JSON: the request is an array, expected an object"},
		{"inputs not an array", `{"inputs": {}}`, "invalid JSON: inputs is an object, expected an array"},
		{"shape of strings", oneInput("FP32", `["1"]`, "[1]"), "invalid JSON: inputs.shape is a string, expected an integer"},
		{"fractional dimension", oneInput("FP32", `[1.5]`, "[1]"), "invalid JSON: inputs.shape is 1.5, expected an integer"},
		{"name missing", `{"inputs":[{"datatype":"FP32","shape":[1],"data":[1]}]}`, "inputs[0]: name is missing"},
		{"unknown datatype", oneInput("FP128", "[1]", "[1]"), `input "x": unknown datatype "FP128", expected one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES`},
		{"lower-case datatype", oneInput("fp32", "[1]", "[1]"), `input "x": unknown datatype "fp32"`},
		{"data missing", `{"inputs":[{"name":"x","datatype":"FP32","shape":[1]}]}`, `input "x": data is missing`},
		{"data null", oneInput("FP32", "[1]", "null"), `input "x": data is missing`},
		{"data not an array", oneInput("FP32", "[1]", "1"), `input "x": data is a number, expected an array`},
		{"string for FP32", oneInput("FP32", "[4]", `[1, 2, 3, "4"]`), `input "x": element 3 is a string, expected a number for FP32`},
		{"null for INT64", oneInput("INT64", "[1]", `[null]`), `input "x": element 0 is null, expected an integer for INT64`},
		{"bool for UINT8", oneInput("UINT8", "[1]", `[true]`), `input "x": element 0 is a bool, expected an integer for UINT8`},
		{"object for FP64", oneInput("FP64", "[1]", `[{"a": [1]}]`), `input "x": element 0 is an object, expected a number for FP64`},
		{"number for BOOL", oneInput("BOOL", "[1]", `[1]`), `input "x": element 0 is a number, expected true or false for BOOL`},
		{"number for BYTES", oneInput("BYTES", "[1]", `[1]`), `input "x": element 0 is a number, expected a string for BYTES`},
		{"fraction for INT32", oneInput("INT32", "[1]", `[2.5]`), `input "x": element 0 is 2.5, expected an integer for INT32`},
		{"UINT8 too big", oneInput("UINT8", "[2]", `[1, 256]`), `input "x": element 1 (256) is out of range for UINT8`},
		{"UINT8 negative", oneInput("UINT8", "[1]", `[-1]`), `input "x": element 0 (-1) is out of range for UINT8`},
		{"INT8 too small", oneInput("INT8", "[1]", `[-129]`), `input "x": element 0 (-129) is out of range for INT8`},
		{"INT64 too big", oneInput("INT64", "[1]", `[9223372036854775808]`), `input "x": element 0 (9223372036854775808) is out of range for INT64`},
		{"UINT64 too big", oneInput("UINT64", "[1]", `[18446744073709551616]`), `input "x": element 0 (18446744073709551616) is out of range for UINT64`},
		{"FP16 too big", oneInput("FP16", "[1]", `[65520]`), `input "x": element 0 (65520) is out of range for FP16`},
		{"FP32 too big", oneInput("FP32", "[1]", `[1e39]`), `input "x": element 0 (1e39) is out of range for FP32`},
		{"FP64 too big", oneInput("FP64", "[1]", `[1e309]`), `input "x": element 0 (1e309) is out of range for FP64`},
		{"data shorter than shape", oneInput("FP32", "[1, 4]", "[1, 2, 3]"), `input "x": data holds 3 elements, shape [1, 4] holds 4`},
		{"data longer than shape", oneInput("FP32", "[1, 2]", "[1, 2, 3]"), `input "x": data holds 3 elements, shape [1, 2] holds 2`},
		{"data longer with arrays", oneInput("FP32", "[1]", "[1, [2, 3], {}]"), `input "x": data holds 3 elements, shape [1] holds 1`},
		{"array inside flat data", oneInput("FP32", "[3]", "[1, [2], 3]"), `input "x": element 1 is an array, expected a number for FP32`},
		{"nested too deep", oneInput("FP32", "[2]", "[[1], [2]]"), `input "x": data is nested 2 deep but shape [2] has 1 dimensions`},
		{"nested not deep enough", oneInput("FP32", "[1, 1, 2]", "[[1, 2]]"), `input "x": data is nested 2 deep but shape [1, 1, 2] has 3 dimensions`},
		{"nested row too short", oneInput("FP32", "[2, 3]", "[[1, 2, 3], [4, 5]]"), `input "x": data[1] holds 2 elements, shape [2, 3] wants 3`},
		{"nested row too long", oneInput("FP32", "[2, 2]", "[[1, 2], [3, 4, 5]]"), `input "x": data[1] holds more than 2 elements, as shape [2, 2] wants`},
		{"huge nested shape", oneInput("FP32", "[1000000000000, 2]", "[[1, 2], [3, 4]]"), `input "x": data holds 2 elements, shape [1000000000000, 2] wants 1000000000000`},
		{"nested too many rows", oneInput("FP32", "[1, 2]", "[[1, 2], [3, 4]]"), `input "x": data holds more than 1 element, as shape [1, 2] wants`},
		{"nested scalar for row", oneInput("FP32", "[2, 1]", "[[1], 2]"), `input "x": data[1] is a number, expected an array`},
		{"nested array for element", oneInput("FP32", "[1, 2]", "[[1, [2]]]"), `input "x": element 1 is an array, expected a number for FP32`},
		{"nested element type", oneInput("INT8", "[2, 2]", `[[1, 2], [3, "4"]]`), `input "x": element 3 is a string, expected an integer for INT8`},
		{"negative dimension", oneInput("FP32", "[-1, 64]", "[1]"), `input "x": shape [-1, 64] has a negative dimension at 0`},
		{"huge shape", oneInput("FP32", "[1000000000000, 64]", "[1, 2]"), `input "x": data holds 2 elements, shape [1000000000000, 64] holds 64000000000000`},
		{"overflowing shape", oneInput("FP32", "[4294967296, 4294967296]", "[1]"), `input "x": shape [4294967296, 4294967296] holds more elements than can be counted`},
		{"zero beats overflow", oneInput("FP32", "[4294967296, 4294967296, 0]", "[1]"), `input "x": data holds 1 element, shape [4294967296, 4294967296, 0] holds 0`},
		{"bad parameter", `{"parameters": {"p": [1]}, "inputs": []}`, `parameter "p" is an array, expected a bool, number or string`},
		{"bad input parameter", `{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1],"parameters":{"p":null}}]}`, `input "x": parameter "p" is null, expected a bool, number or string`},
		{"output without name", `{"inputs": [], "outputs": [{}]}`, "outputs[0]: name is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeJSON([]byte(tt.body))
			if err == nil {
				t.Fatal("no error")
			}
			st, ok := status.FromError(err)
			if !ok || st.Code() != codes.InvalidArgument {
				t.Fatalf("error %v is not an INVALID_ARGUMENT status", err)
			}
			if !strings.HasPrefix(st.Message(), tt.want) {
				t.Errorf("message:\n got %s\nwant %s", st.Message(), tt.want)
			}
		})
	}
}

// A shape that claims more elements than the body could hold must fail
// before anything of the claimed size is allocated.
func TestDecodeInferRequestHugeShapeAllocatesNothing(t *testing.T) {
	for _, shape := range []string{"[1099511627776]", "[1048576, 1024]", "[16777216]"} {
		body := []byte(oneInput("FP64", shape, "[1, 2, 3]"))
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := decodeJSON(body)
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Fatalf("shape %s: no error", shape)
		}
		// An allocation of the claimed size would be at least 8 MiB here.
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
			t.Errorf("shape %s: decoding allocated %d bytes", shape, grew)
		}
	}
}

func TestDecodeInferRequestEmptyInputs(t *testing.T) {
	// The model, not the codec, knows which inputs it needs: an empty list
	// reaches the service, which names the missing inputs.
	req, err := decodeJSON([]byte(`{"inputs": []}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(req.GetInputs()) != 0 {
		t.Errorf("inputs = %v", req.GetInputs())
	}
}
