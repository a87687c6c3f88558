// Package oiptest starts real OIP gRPC servers for tests: a loopback listener
// and a grpc.Server around a test double of the inference service, so that
// the gateway's tests exercise the same client code that production runs.
package oiptest

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
)

// Service is a test double of the inference service. Each call goes to the
// function of its name; one left nil answers as a healthy, empty service
// would, except ModelInfer, which answers UNIMPLEMENTED.
type Service struct {
	pb.UnimplementedGRPCInferenceServiceServer

	ServerReadyFunc    func(context.Context, *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error)
	ModelReadyFunc     func(context.Context, *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error)
	ServerMetadataFunc func(context.Context, *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error)
	ModelMetadataFunc  func(context.Context, *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error)
	ModelInferFunc     func(context.Context, *pb.ModelInferRequest) (*pb.ModelInferResponse, error)
}

func (s *Service) ServerLive(context.Context, *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	return &pb.ServerLiveResponse{Live: true}, nil
}

func (s *Service) ServerReady(ctx context.Context, req *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
	if s.ServerReadyFunc != nil {
		return s.ServerReadyFunc(ctx, req)
	}
	return &pb.ServerReadyResponse{Ready: true}, nil
}

func (s *Service) ModelReady(ctx context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	if s.ModelReadyFunc != nil {
		return s.ModelReadyFunc(ctx, req)
	}
	return &pb.ModelReadyResponse{Ready: true}, nil
}

func (s *Service) ServerMetadata(ctx context.Context, req *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error) {
	if s.ServerMetadataFunc != nil {
		return s.ServerMetadataFunc(ctx, req)
	}
	return &pb.ServerMetadataResponse{Name: "oiptest"}, nil
}

func (s *Service) ModelMetadata(ctx context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	if s.ModelMetadataFunc != nil {
		return s.ModelMetadataFunc(ctx, req)
	}
	return nil, status.Errorf(codes.NotFound, "unknown model %q", req.GetName())
}

func (s *Service) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	if s.ModelInferFunc != nil {
		return s.ModelInferFunc(ctx, req)
	}
	return s.UnimplementedGRPCInferenceServiceServer.ModelInfer(ctx, req)
}

// Server is a running gRPC server on a loopback port.
type Server struct {
	Addr string
	grpc *grpc.Server
	done chan struct{}
}

// Start serves svc on addr ("127.0.0.1:0" for any free port) until Stop or
// the end of the test.
func Start(t testing.TB, addr string, svc pb.GRPCInferenceServiceServer, opts ...grpc.ServerOption) *Server {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("oiptest: listen on %s: %v", addr, err)
	}
	s := &Server{Addr: lis.Addr().String(), grpc: grpc.NewServer(opts...), done: make(chan struct{})}
	pb.RegisterGRPCInferenceServiceServer(s.grpc, svc)
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
