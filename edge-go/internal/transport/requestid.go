package transport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
)

type requestIDKey struct{}

// WithRequestID returns ctx carrying a request id: ctx itself when it has
// one, else a new one of 16 random bytes in hex. Retry sets it, so that
// every attempt of one request carries the same id.
func WithRequestID(ctx context.Context) context.Context {
	if RequestID(ctx) != "" {
		return ctx
	}
	return context.WithValue(ctx, requestIDKey{}, NewRequestID())
}

// RequestID is the request id ctx carries, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// NewRequestID returns 16 random bytes in hex: unguessable and, in
// practice, unique, so that a cancel names one request only.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	return hex.EncodeToString(b[:])
}
