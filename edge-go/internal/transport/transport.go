// Package transport is how the gateway reaches the inference service. Every
// hop (gRPC, NATS) is an Invoker: one method that makes any of the OIP
// calls (the six of the specification and five of Triton's extensions). What is done around every call (retry, counting failures,
// coalescing, limits) is a Middleware, one function each, stacked by Chain;
// the handlers call the stack through the typed Client.
//
// Calls are made at most once on a worker. Retry sends a call again only
// when the failure proves that no worker got it (NotSent): over NATS, no
// responders (the server found no subscriber) or a client with no
// connection (nats.go refuses the publish: there is no reconnect buffer);
// over gRPC, an UNAVAILABLE call that never got a stream on a connection
// (none was ready: refused, backoff, a failed TLS handshake), which grpc-go
// reports by leaving the Peer call option empty. Every other failure may
// have run: an attempt that timed out, a connection lost after the request
// was written, a worker's own UNAVAILABLE. Those end the call, a timeout at
// the caller's deadline (504), since nobody can know whether a worker that
// went silent ran the request.
package transport

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
)

// RPC names one of the OIP calls.
type RPC uint8

// The OIP calls, as GRPCInferenceService names them.
const (
	ServerLive RPC = iota
	ServerReady
	ServerMetadata
	ModelReady
	ModelMetadata
	ModelInfer
	// Triton's extensions (proto/README.md).
	ModelConfig
	ModelStatistics // an empty name: every model
	RepositoryIndex
	RepositoryModelLoad
	RepositoryModelUnload
)

var rpcs = [...]struct {
	name, method string
	newResponse  func() proto.Message
}{
	ServerLive:     {"ServerLive", pb.GRPCInferenceService_ServerLive_FullMethodName, func() proto.Message { return &pb.ServerLiveResponse{} }},
	ServerReady:    {"ServerReady", pb.GRPCInferenceService_ServerReady_FullMethodName, func() proto.Message { return &pb.ServerReadyResponse{} }},
	ServerMetadata: {"ServerMetadata", pb.GRPCInferenceService_ServerMetadata_FullMethodName, func() proto.Message { return &pb.ServerMetadataResponse{} }},
	ModelReady:     {"ModelReady", pb.GRPCInferenceService_ModelReady_FullMethodName, func() proto.Message { return &pb.ModelReadyResponse{} }},
	ModelMetadata:  {"ModelMetadata", pb.GRPCInferenceService_ModelMetadata_FullMethodName, func() proto.Message { return &pb.ModelMetadataResponse{} }},
	ModelInfer:     {"ModelInfer", pb.GRPCInferenceService_ModelInfer_FullMethodName, func() proto.Message { return &pb.ModelInferResponse{} }},
	ModelConfig:    {"ModelConfig", pb.GRPCInferenceService_ModelConfig_FullMethodName, func() proto.Message { return &pb.ModelConfigResponse{} }},
	ModelStatistics: {"ModelStatistics", pb.GRPCInferenceService_ModelStatistics_FullMethodName,
		func() proto.Message { return &pb.ModelStatisticsResponse{} }},
	RepositoryIndex: {"RepositoryIndex", pb.GRPCInferenceService_RepositoryIndex_FullMethodName,
		func() proto.Message { return &pb.RepositoryIndexResponse{} }},
	RepositoryModelLoad: {"RepositoryModelLoad", pb.GRPCInferenceService_RepositoryModelLoad_FullMethodName,
		func() proto.Message { return &pb.RepositoryModelLoadResponse{} }},
	RepositoryModelUnload: {"RepositoryModelUnload", pb.GRPCInferenceService_RepositoryModelUnload_FullMethodName,
		func() proto.Message { return &pb.RepositoryModelUnloadResponse{} }},
}

func (r RPC) String() string {
	if int(r) < len(rpcs) {
		return rpcs[r].name
	}
	return fmt.Sprintf("RPC(%d)", r)
}

// FullMethod is the gRPC method of the call ("/inference.GRPCInferenceService/ModelInfer").
func (r RPC) FullMethod() string { return rpcs[r].method }

// NewResponse returns an empty response message of the call's type.
func (r RPC) NewResponse() proto.Message { return rpcs[r].newResponse() }

// PerModel reports whether the call is about one model (ModelReady,
// ModelMetadata, ModelInfer, ModelConfig, ModelStatistics) rather than the
// server or the repository. A ModelStatistics request with an empty name
// asks for every model: it is server-wide (ModelOf is "").
func (r RPC) PerModel() bool { return r >= ModelReady && r <= ModelStatistics }

// ModelOf is the model a request names, "" for the server calls, the
// repository index and statistics of every model. A load or unload names
// its model too (it is not PerModel: it goes to the repository), so that a
// key scoped to some models may only load and unload those.
func ModelOf(req proto.Message) string {
	switch req := req.(type) {
	case *pb.ModelInferRequest:
		return req.GetModelName()
	case *pb.RepositoryModelLoadRequest:
		return req.GetModelName()
	case *pb.RepositoryModelUnloadRequest:
		return req.GetModelName()
	case interface{ GetName() string }:
		return req.GetName()
	}
	return ""
}

// Invoker makes OIP calls: req is the request message of rpc, and the
// response is of rpc's response type.
//
// Every error it returns is a gRPC status error (google.golang.org/grpc/status),
// whatever travels underneath: the codes are the gateway's common currency,
// which package oiperr maps to HTTP. A service that cannot be reached is
// UNAVAILABLE at once rather than after a wait. The deadline is the
// context's: the edge sets it once (the client's, bounded by --timeout), and
// an Invoker only reads it.
type Invoker interface {
	Invoke(ctx context.Context, rpc RPC, req proto.Message) (proto.Message, error)
	// Close releases the connections underneath; calls after it fail.
	Close() error
}

// Middleware is something done around every call, such as a retry: it
// returns an Invoker that calls next. It is the shape of grpc-go's
// interceptors, for the hop.
type Middleware func(next Invoker) Invoker

// Chain wraps base in mws, listed from the hop up: mws[0] is nearest to base
// and the last one is what the handlers call first.
func Chain(base Invoker, mws ...Middleware) Invoker {
	for _, mw := range mws {
		base = mw(base)
	}
	return base
}

// InvokeFunc is the Invoke method of an Invoker, as a function.
type InvokeFunc func(ctx context.Context, rpc RPC, req proto.Message) (proto.Message, error)

// Wrap returns an Invoker that makes calls with invoke and closes next: how
// a Middleware that owns nothing itself is written.
func Wrap(next Invoker, invoke InvokeFunc) Invoker {
	return wrapped{invoke: invoke, next: next}
}

type wrapped struct {
	invoke InvokeFunc
	next   Invoker
}

func (w wrapped) Invoke(ctx context.Context, rpc RPC, req proto.Message) (proto.Message, error) {
	return w.invoke(ctx, rpc, req)
}

func (w wrapped) Close() error { return w.next.Close() }

// Client is the typed face of an Invoker, one method per OIP call, for the
// handlers.
type Client struct{ inv Invoker }

// NewClient returns the typed client of inv.
func NewClient(inv Invoker) Client { return Client{inv: inv} }

func (c Client) ServerLive(ctx context.Context, req *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	return invoke[*pb.ServerLiveResponse](ctx, c.inv, ServerLive, req)
}

func (c Client) ServerReady(ctx context.Context, req *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
	return invoke[*pb.ServerReadyResponse](ctx, c.inv, ServerReady, req)
}

func (c Client) ServerMetadata(ctx context.Context, req *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error) {
	return invoke[*pb.ServerMetadataResponse](ctx, c.inv, ServerMetadata, req)
}

func (c Client) ModelReady(ctx context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	return invoke[*pb.ModelReadyResponse](ctx, c.inv, ModelReady, req)
}

func (c Client) ModelMetadata(ctx context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	return invoke[*pb.ModelMetadataResponse](ctx, c.inv, ModelMetadata, req)
}

func (c Client) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	return invoke[*pb.ModelInferResponse](ctx, c.inv, ModelInfer, req)
}

func (c Client) ModelConfig(ctx context.Context, req *pb.ModelConfigRequest) (*pb.ModelConfigResponse, error) {
	return invoke[*pb.ModelConfigResponse](ctx, c.inv, ModelConfig, req)
}

func (c Client) ModelStatistics(ctx context.Context, req *pb.ModelStatisticsRequest) (*pb.ModelStatisticsResponse, error) {
	return invoke[*pb.ModelStatisticsResponse](ctx, c.inv, ModelStatistics, req)
}

func (c Client) RepositoryIndex(ctx context.Context, req *pb.RepositoryIndexRequest) (*pb.RepositoryIndexResponse, error) {
	return invoke[*pb.RepositoryIndexResponse](ctx, c.inv, RepositoryIndex, req)
}

func (c Client) RepositoryModelLoad(ctx context.Context, req *pb.RepositoryModelLoadRequest) (*pb.RepositoryModelLoadResponse, error) {
	return invoke[*pb.RepositoryModelLoadResponse](ctx, c.inv, RepositoryModelLoad, req)
}

func (c Client) RepositoryModelUnload(ctx context.Context, req *pb.RepositoryModelUnloadRequest) (*pb.RepositoryModelUnloadResponse, error) {
	return invoke[*pb.RepositoryModelUnloadResponse](ctx, c.inv, RepositoryModelUnload, req)
}

// Close closes the Invoker.
func (c Client) Close() error { return c.inv.Close() }

func invoke[Resp proto.Message](ctx context.Context, inv Invoker, rpc RPC, req proto.Message) (Resp, error) {
	var zero Resp
	resp, err := inv.Invoke(ctx, rpc, req)
	if err != nil {
		return zero, err
	}
	typed, ok := resp.(Resp)
	if !ok {
		return zero, status.Errorf(codes.Internal, "%v answered with a %T", rpc, resp)
	}
	return typed, nil
}
