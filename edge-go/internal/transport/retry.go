package transport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"

	"google.golang.org/protobuf/proto"
)

// Retry makes a call a second time when the first attempt cannot have
// reached a worker (NeverSent: NATS had no responders, or there was no
// connection to send it on) while the context's deadline still has room.
//
// That keeps inference at most once: an attempt that may have reached a
// worker (a timeout, a connection lost mid-call) is never made again, since
// the worker may be running it. Answers (every other code) are returned as
// they are. The second attempt gets whatever is left of the deadline, and
// both carry one request id (WithRequestID).
func Retry(next Invoker) Invoker {
	return Wrap(next, func(ctx context.Context, rpc RPC, req proto.Message) (proto.Message, error) {
		ctx = WithRequestID(ctx) // one id for both attempts
		resp, err := next.Invoke(ctx, rpc, req)
		if err == nil || !NeverSent(err) || ctx.Err() != nil {
			return resp, err
		}
		return next.Invoke(ctx, rpc, req)
	})
}

type requestIDKey struct{}

// requestID is made on first use: only some hops send one.
type requestID struct {
	once sync.Once
	id   string
}

// WithRequestID returns ctx with a request id of its own: 16 random bytes in
// hex, which the hop sends (NATS tandem-request-id) so that a worker can
// drop a request the gateway gave up on. A ctx that has one keeps it. The
// id is drawn when first asked for, so a hop that sends none pays nothing.
func WithRequestID(ctx context.Context) context.Context {
	if _, ok := ctx.Value(requestIDKey{}).(*requestID); ok {
		return ctx
	}
	return context.WithValue(ctx, requestIDKey{}, &requestID{})
}

// RequestID is the request id of ctx, set by WithRequestID.
func RequestID(ctx context.Context) (string, bool) {
	r, ok := ctx.Value(requestIDKey{}).(*requestID)
	if !ok {
		return "", false
	}
	r.once.Do(func() { r.id = NewRequestID() })
	return r.id, true
}

// NewRequestID returns 16 random bytes in hex.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}
