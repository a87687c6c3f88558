package transport_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
)

func TestRPCTable(t *testing.T) {
	perModel := map[transport.RPC]bool{
		transport.ModelReady: true, transport.ModelMetadata: true, transport.ModelInfer: true,
		transport.ModelConfig: true, transport.ModelStatistics: true,
	}
	for rpc := transport.ServerLive; rpc <= transport.RepositoryModelUnload; rpc++ {
		if !strings.HasSuffix(rpc.FullMethod(), "/"+rpc.String()) {
			t.Errorf("%v: FullMethod %q", rpc, rpc.FullMethod())
		}
		if rpc.NewResponse() == nil {
			t.Errorf("%v: no response type", rpc)
		}
		if rpc.PerModel() != perModel[rpc] {
			t.Errorf("%v: PerModel %v", rpc, rpc.PerModel())
		}
	}
}

func TestModelOf(t *testing.T) {
	for _, tt := range []struct {
		req  proto.Message
		want string
	}{
		{&pb.ModelConfigRequest{Name: "a"}, "a"},
		{&pb.ModelStatisticsRequest{Name: "a"}, "a"},
		{&pb.ModelStatisticsRequest{}, ""},
		{&pb.RepositoryIndexRequest{}, ""},
		{&pb.RepositoryModelLoadRequest{ModelName: "a"}, "a"},
		{&pb.RepositoryModelUnloadRequest{ModelName: "a"}, "a"},
	} {
		if got := transport.ModelOf(tt.req); got != tt.want {
			t.Errorf("ModelOf(%T) = %q, want %q", tt.req, got, tt.want)
		}
	}
}
