package transport

import (
	"context"

	"google.golang.org/protobuf/proto"
)

// Retry makes a call a second time when the first attempt failed in a way
// that proves the request reached no worker (WasNotSent: NATS no
// responders, a gRPC call that found no connection to go out on), while the
// context still has room.
//
// That is the at-most-once rule: inference has no side effects, but it
// costs a worker's time, and an attempt that may be running must not be
// doubled when the fleet is overloaded, which is when attempts fail most.
// So an attempt that timed out, or lost its connection after it was sent,
// is never made again: nobody can know whether a worker ran it. Other
// codes are answers, not failures to reach one, and are returned as they
// are.
//
// The same rule makes Retry safe for RepositoryModelLoad and
// RepositoryModelUnload, which change a worker and are not idempotent in
// effect: only an attempt that no worker received is made again, so a load
// or unload is never run twice by the gateway.
//
// Both attempts share the caller's deadline and request id (RequestID), so
// that a worker can tell them for one request.
func Retry(next Invoker) Invoker {
	return Wrap(next, func(ctx context.Context, rpc RPC, req proto.Message) (proto.Message, error) {
		ctx = WithRequestID(ctx)
		resp, err := next.Invoke(ctx, rpc, req)
		if err == nil || !WasNotSent(err) || ctx.Err() != nil {
			return resp, err
		}
		return next.Invoke(ctx, rpc, req)
	})
}
