package transport

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Retry makes a call a second time when the first attempt fails with
// UNAVAILABLE while the context's deadline still has room.
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
func Retry(next Invoker) Invoker {
	return Wrap(next, func(ctx context.Context, rpc RPC, req proto.Message) (proto.Message, error) {
		ctx = WithRequestID(ctx) // one id for both attempts
		resp, err := next.Invoke(context.WithValue(ctx, retryFollowsKey{}, true), rpc, req)
		if err == nil || status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			return resp, err
		}
		return next.Invoke(ctx, rpc, req)
	})
}

type retryFollowsKey struct{}

// RetryFollows reports whether a failed attempt made with ctx would be made
// again: it is true for the first attempt that Retry makes.
func RetryFollows(ctx context.Context) bool {
	follows, _ := ctx.Value(retryFollowsKey{}).(bool)
	return follows
}

type requestIDKey struct{}

// WithRequestID returns ctx with a request id of its own: 16 random bytes in
// hex, which the hop sends (NATS tandem-request-id) so that a worker can
// drop a request the gateway gave up on. A ctx that has one keeps it.
func WithRequestID(ctx context.Context) context.Context {
	if _, ok := RequestID(ctx); ok {
		return ctx
	}
	return context.WithValue(ctx, requestIDKey{}, NewRequestID())
}

// RequestID is the request id of ctx, set by WithRequestID.
func RequestID(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(requestIDKey{}).(string)
	return id, ok
}

// NewRequestID returns 16 random bytes in hex.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}
