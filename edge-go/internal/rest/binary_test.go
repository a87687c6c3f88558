package rest

import (
	"context"
	"encoding/binary"
	"math"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/transporttest"
)

func float32s(values ...float32) []byte {
	var b []byte
	for _, v := range values {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// A request in the binary tensor extension's form, as tritonclient sends
// it, reaches the service as its JSON twin does, and its binary outputs come
// back after the JSON header.
func TestInferBinary(t *testing.T) {
	got := make(chan *pb.ModelInferRequest, 1)
	probs := float32s(0.25, 0.75)
	svc := &transporttest.Double{ModelInferFunc: func(_ context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		got <- req
		return &pb.ModelInferResponse{
			ModelName: req.GetModelName(), ModelVersion: "1", Id: req.GetId(),
			Outputs:           []*pb.ModelInferResponse_InferOutputTensor{{Name: "probabilities", Datatype: "FP32", Shape: []int64{1, 2}}},
			RawOutputContents: [][]byte{probs},
		}, nil
	}}
	g := startGateway(t, svc, 5*time.Second)

	a := g.do(t, "POST", "/v2/models/digits/infer", inferBody)
	if a.status != 200 {
		t.Fatalf("JSON request: %d %s", a.status, a.body)
	}
	fromJSON := <-got

	header := `{"id":"r1","inputs":[{"name":"pixels","datatype":"FP32","shape":[1,2],"parameters":{"binary_data_size":8}}],"outputs":[{"name":"probabilities","parameters":{"binary_data":true}}]}`
	body := header + string(float32s(0.5, 2))
	a = g.do(t, "POST", "/v2/models/digits/infer", body,
		"Inference-Header-Content-Length", strconv.Itoa(len(header)), "Content-Type", "application/octet-stream")
	if a.status != 200 {
		t.Fatalf("binary request: %d %s", a.status, a.body)
	}
	fromBinary := <-got
	fromJSON.Outputs = []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "probabilities"}}
	if !proto.Equal(fromBinary, fromJSON) {
		t.Errorf("the binary request reached the service as\n%v\nits JSON twin as\n%v", fromBinary, fromJSON)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	wantHeader := `{"model_name":"digits","model_version":"1","id":"r1","outputs":[{"name":"probabilities","datatype":"FP32","shape":[1,2],"parameters":{"binary_data_size":8}}]}`
	n, err := strconv.Atoi(a.header.Get("Inference-Header-Content-Length"))
	if err != nil || n != len(wantHeader) {
		t.Fatalf("Inference-Header-Content-Length = %q, want %d", a.header.Get("Inference-Header-Content-Length"), len(wantHeader))
	}
	if a.body[:n] != wantHeader || a.body[n:] != string(probs) {
		t.Errorf("body:\n got %q\nwant %q", a.body, wantHeader+string(probs))
	}
}
