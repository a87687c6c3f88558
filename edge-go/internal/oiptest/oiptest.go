// Package oiptest starts real OIP gRPC servers for tests: a loopback listener
// and a grpc.Server around a test double of the inference service (any
// transport.Invoker, usually a transporttest.Double), so that the gateway's
// tests exercise the same client code that production runs.
package oiptest

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
)

// Server is a running gRPC server on a loopback port.
type Server struct {
	Addr string
	grpc *grpc.Server
	done chan struct{}
}

// Start serves svc on addr ("127.0.0.1:0" for any free port) until Stop or
// the end of the test.
func Start(t testing.TB, addr string, svc transport.Invoker, opts ...grpc.ServerOption) *Server {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("oiptest: listen on %s: %v", addr, err)
	}
	s := &Server{Addr: lis.Addr().String(), grpc: grpc.NewServer(opts...), done: make(chan struct{})}
	pb.RegisterGRPCInferenceServiceServer(s.grpc, service{c: transport.NewClient(svc)})
	go func() {
		defer close(s.done)
		_ = s.grpc.Serve(lis) // returns when stopped
	}()
	t.Cleanup(s.Stop)
	return s
}

// Stop closes the listener and every connection at once, as a killed
// process would; calls in flight fail.
func (s *Server) Stop() {
	s.grpc.Stop()
	<-s.done
}

// service serves the six RPCs and Triton's five from an Invoker.
type service struct {
	pb.UnimplementedGRPCInferenceServiceServer
	c transport.Client
}

func (s service) ServerLive(ctx context.Context, req *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	return s.c.ServerLive(ctx, req)
}

func (s service) ServerReady(ctx context.Context, req *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
	return s.c.ServerReady(ctx, req)
}

func (s service) ServerMetadata(ctx context.Context, req *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error) {
	return s.c.ServerMetadata(ctx, req)
}

func (s service) ModelReady(ctx context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	return s.c.ModelReady(ctx, req)
}

func (s service) ModelMetadata(ctx context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	return s.c.ModelMetadata(ctx, req)
}

func (s service) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	return s.c.ModelInfer(ctx, req)
}

func (s service) ModelConfig(ctx context.Context, req *pb.ModelConfigRequest) (*pb.ModelConfigResponse, error) {
	return s.c.ModelConfig(ctx, req)
}

func (s service) ModelStatistics(ctx context.Context, req *pb.ModelStatisticsRequest) (*pb.ModelStatisticsResponse, error) {
	return s.c.ModelStatistics(ctx, req)
}

func (s service) RepositoryIndex(ctx context.Context, req *pb.RepositoryIndexRequest) (*pb.RepositoryIndexResponse, error) {
	return s.c.RepositoryIndex(ctx, req)
}

func (s service) RepositoryModelLoad(ctx context.Context, req *pb.RepositoryModelLoadRequest) (*pb.RepositoryModelLoadResponse, error) {
	return s.c.RepositoryModelLoad(ctx, req)
}

func (s service) RepositoryModelUnload(ctx context.Context, req *pb.RepositoryModelUnloadRequest) (*pb.RepositoryModelUnloadResponse, error) {
	return s.c.RepositoryModelUnload(ctx, req)
}
