// Package transporttest has the one test double of the inference service:
// a transport.Invoker built from function fields. Tests call it directly,
// put it under middleware, or serve it over real gRPC (package oiptest).
package transporttest

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
)

// Double answers each call with the function of its name. One left nil
// answers as a healthy, empty service would: live, ready, model "m" ready,
// no model metadata (NOT_FOUND), and ModelInfer UNIMPLEMENTED.
type Double struct {
	ServerLiveFunc     func(context.Context, *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error)
	ServerReadyFunc    func(context.Context, *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error)
	ServerMetadataFunc func(context.Context, *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error)
	ModelReadyFunc     func(context.Context, *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error)
	ModelMetadataFunc  func(context.Context, *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error)
	ModelInferFunc     func(context.Context, *pb.ModelInferRequest) (*pb.ModelInferResponse, error)
	// Triton's extensions: nil answers UNIMPLEMENTED.
	ModelConfigFunc           func(context.Context, *pb.ModelConfigRequest) (*pb.ModelConfigResponse, error)
	ModelStatisticsFunc       func(context.Context, *pb.ModelStatisticsRequest) (*pb.ModelStatisticsResponse, error)
	RepositoryIndexFunc       func(context.Context, *pb.RepositoryIndexRequest) (*pb.RepositoryIndexResponse, error)
	RepositoryModelLoadFunc   func(context.Context, *pb.RepositoryModelLoadRequest) (*pb.RepositoryModelLoadResponse, error)
	RepositoryModelUnloadFunc func(context.Context, *pb.RepositoryModelUnloadRequest) (*pb.RepositoryModelUnloadResponse, error)
	CloseFunc                 func() error
}

var _ transport.Invoker = (*Double)(nil)

// Invoke calls the function of rpc's name.
func (d *Double) Invoke(ctx context.Context, rpc transport.RPC, req proto.Message) (proto.Message, error) {
	switch rpc {
	case transport.ServerLive:
		return call(ctx, d.ServerLiveFunc, req, &pb.ServerLiveResponse{Live: true})
	case transport.ServerReady:
		return call(ctx, d.ServerReadyFunc, req, &pb.ServerReadyResponse{Ready: true})
	case transport.ServerMetadata:
		return call(ctx, d.ServerMetadataFunc, req, &pb.ServerMetadataResponse{Name: "transporttest"})
	case transport.ModelReady:
		return call(ctx, d.ModelReadyFunc, req, &pb.ModelReadyResponse{Ready: true})
	case transport.ModelMetadata:
		if d.ModelMetadataFunc == nil {
			return nil, status.Errorf(codes.NotFound, "unknown model %q", transport.ModelOf(req))
		}
		return call(ctx, d.ModelMetadataFunc, req, nil)
	case transport.ModelInfer:
		if d.ModelInferFunc == nil {
			return nil, status.Error(codes.Unimplemented, "method ModelInfer not implemented")
		}
		return call(ctx, d.ModelInferFunc, req, nil)
	case transport.ModelConfig:
		return extension(ctx, rpc, d.ModelConfigFunc, req)
	case transport.ModelStatistics:
		return extension(ctx, rpc, d.ModelStatisticsFunc, req)
	case transport.RepositoryIndex:
		return extension(ctx, rpc, d.RepositoryIndexFunc, req)
	case transport.RepositoryModelLoad:
		return extension(ctx, rpc, d.RepositoryModelLoadFunc, req)
	case transport.RepositoryModelUnload:
		return extension(ctx, rpc, d.RepositoryModelUnloadFunc, req)
	}
	return nil, status.Errorf(codes.Unimplemented, "%v", rpc)
}

// Close calls CloseFunc, when set.
func (d *Double) Close() error {
	if d.CloseFunc != nil {
		return d.CloseFunc()
	}
	return nil
}

func extension[Req, Resp proto.Message](ctx context.Context, rpc transport.RPC, f func(context.Context, Req) (Resp, error), req proto.Message) (proto.Message, error) {
	if f == nil {
		return nil, status.Errorf(codes.Unimplemented, "method %v not implemented", rpc)
	}
	return call(ctx, f, req, *new(Resp))
}

func call[Req, Resp proto.Message](ctx context.Context, f func(context.Context, Req) (Resp, error), req proto.Message, dflt Resp) (proto.Message, error) {
	if f == nil {
		return dflt, nil
	}
	typed, ok := req.(Req)
	if !ok {
		return nil, status.Errorf(codes.Internal, "transporttest: request %T", req)
	}
	resp, err := f(ctx, typed)
	if err != nil {
		return nil, err
	}
	return resp, nil
}
