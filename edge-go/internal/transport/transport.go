// Package transport is how the gateway reaches the inference service. The
// handlers see only the Transport interface, so that gRPC and NATS serve them
// alike; both carry the same OIP protobuf messages.
package transport

import (
	"context"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
)

// Transport carries the six OIP calls to the inference service.
//
// Every error it returns is a gRPC status error (google.golang.org/grpc/status),
// whatever travels underneath: the codes are the gateway's common currency,
// which package oiperr maps to HTTP. A service that cannot be reached is
// UNAVAILABLE at once rather than after a wait, and no call outlives the
// transport's own timeout or the context's deadline, whichever comes first.
type Transport interface {
	ServerLive(ctx context.Context, req *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error)
	ServerReady(ctx context.Context, req *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error)
	ModelReady(ctx context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error)
	ServerMetadata(ctx context.Context, req *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error)
	ModelMetadata(ctx context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error)
	ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error)

	// Close releases the transport's connections; calls after it fail.
	Close() error
}
