package transport

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
)

// WithRetry returns a Transport that bounds each call by timeout (on top of
// the caller's deadline) and makes it a second time when the first attempt
// fails with UNAVAILABLE while the deadline still has room.
//
// Every OIP call is idempotent (inference has no side effects), so a second
// attempt can only help. UNAVAILABLE is what both transports report when a
// call reached no worker or lost it on the way: no responders, a dropped
// connection, a worker shutting down, or (over NATS) an attempt that got no
// reply in time because the worker that held it was killed. Another worker,
// or the same one restarted, may take the second attempt. Other codes are
// answers, not failures to reach one, and are returned as they are.
//
// The second attempt gets whatever is left of the deadline. Attempts carry a
// mark (RetryFollows) so that a transport can give the first one less than
// the whole budget and leave room for the second.
func WithRetry(next Transport, timeout time.Duration) Transport {
	return &retrying{next: next, timeout: timeout}
}

type retryFollowsKey struct{}

// RetryFollows reports whether a failed attempt made with ctx would be made
// again: it is true for the first attempt that WithRetry makes.
func RetryFollows(ctx context.Context) bool {
	follows, _ := ctx.Value(retryFollowsKey{}).(bool)
	return follows
}

type retrying struct {
	next    Transport
	timeout time.Duration
}

func (r *retrying) ServerLive(ctx context.Context, req *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	return retry(ctx, r, r.next.ServerLive, req)
}

func (r *retrying) ServerReady(ctx context.Context, req *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
	return retry(ctx, r, r.next.ServerReady, req)
}

func (r *retrying) ModelReady(ctx context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	return retry(ctx, r, r.next.ModelReady, req)
}

func (r *retrying) ServerMetadata(ctx context.Context, req *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error) {
	return retry(ctx, r, r.next.ServerMetadata, req)
}

func (r *retrying) ModelMetadata(ctx context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	return retry(ctx, r, r.next.ModelMetadata, req)
}

func (r *retrying) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	return retry(ctx, r, r.next.ModelInfer, req)
}

func (r *retrying) Close() error { return r.next.Close() }

func retry[Req, Resp any](ctx context.Context, r *retrying, call func(context.Context, Req) (Resp, error), req Req) (Resp, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	resp, err := call(context.WithValue(ctx, retryFollowsKey{}, true), req)
	if err == nil || status.Code(err) != codes.Unavailable || ctx.Err() != nil {
		return resp, err
	}
	return call(ctx, req)
}
