package transport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
)

type requestIDKey struct{}

// requestID is drawn on first use: only some hops send one (NATS), so a
// call over gRPC pays nothing for it.
type requestID struct {
	once sync.Once
	id   string
}

// WithRequestID returns ctx carrying a request id of its own: ctx itself
// when it has one. Retry sets it, so that every attempt of one request
// carries the same id.
func WithRequestID(ctx context.Context) context.Context {
	if _, ok := ctx.Value(requestIDKey{}).(*requestID); ok {
		return ctx
	}
	return context.WithValue(ctx, requestIDKey{}, &requestID{})
}

// RequestID is the request id ctx carries (16 random bytes in hex, drawn
// now if not yet), or "" when ctx has none (no WithRequestID above).
func RequestID(ctx context.Context) string {
	r, ok := ctx.Value(requestIDKey{}).(*requestID)
	if !ok {
		return ""
	}
	r.once.Do(func() { r.id = NewRequestID() })
	return r.id
}

// NewRequestID returns 16 random bytes in hex: unguessable and, in
// practice, unique, so that a cancel names one request only.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	return hex.EncodeToString(b[:])
}

// WithNewRequestID returns ctx carrying a new request id, even when ctx has
// one: for each of the several requests that one call is made of (a worker
// answers a request id it has seen with its first reply).
func WithNewRequestID(ctx context.Context) context.Context {
	return context.WithValue(ctx, requestIDKey{}, &requestID{})
}
