// Package edge is what the two client-facing listeners, REST (package rest)
// and gRPC (package edgegrpc), do alike: one log line and one count per
// answered call, the hop's timing for Server-Timing, the deadline of a call,
// and what a panic in a handler turns into. Each edge wraps these in its own
// middleware shape (http.Handler, grpc interceptor), so the behaviour is
// written once.
package edge

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/metrics"
	"github.com/tandem-ml/tandem/edge-go/internal/servertiming"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
)

// Observer counts and logs every answered call of both edges.
type Observer struct {
	Log     *slog.Logger
	Metrics *metrics.Metrics // nil: no counts
}

// Call is one answered call, as its log line and its count see it.
type Call struct {
	// Msg is the log line's message: "request" (REST) or "rpc" (gRPC).
	Msg string
	// Attrs are the protocol's own, first on the line: method and path and
	// status, or method and code.
	Attrs []slog.Attr
	// Model names the model the call was about; "" for the server's.
	Model string
	// Code is the metrics' code label: HTTP status or gRPC code name.
	Code string
	// Failed chooses the level: failures at info, successes at debug.
	Failed bool
	// Err is the message the client got, for a failure.
	Err string
}

// Begin notes a call in flight and returns its start; End must follow.
func (o Observer) Begin() time.Time {
	o.Metrics.Begin()
	return time.Now()
}

// End counts the call that began at start, and logs one line for it once it
// is answered: at debug when it succeeded and at info when it failed, so
// that the default level shows every failure without paying for a line per
// success under load. The line is logged with ctx, so it carries the trace.
func (o Observer) End(ctx context.Context, start time.Time, c Call) {
	elapsed := time.Since(start)
	o.Metrics.End(ctx, c.Model, c.Code, elapsed)
	level := slog.LevelDebug
	if c.Failed {
		level = slog.LevelInfo
	}
	if !o.Log.Enabled(ctx, level) {
		return
	}
	attrs := append(c.Attrs,
		// Milliseconds read at a glance; slog's Duration writes nanoseconds.
		slog.Float64("duration_ms", float64(elapsed)/float64(time.Millisecond)))
	if c.Model != "" {
		attrs = append(attrs, slog.String("model", c.Model))
	}
	if c.Err != "" {
		attrs = append(attrs, slog.String("error", c.Err))
	}
	o.Log.LogAttrs(ctx, level, c.Msg, attrs...)
}

// InternalError is all a client is told of a panic: the internals go to the
// log.
const InternalError = "internal error"

// Panicked logs a panic recovered while answering method, at ERROR with the
// stack, so that one bad request is found in the log and the process lives.
func Panicked(ctx context.Context, log *slog.Logger, method string, recovered any) {
	log.LogAttrs(ctx, slog.LevelError, "panic answering a request",
		slog.String("method", method),
		slog.Any("panic", recovered),
		slog.String("stack", string(debug.Stack())))
}

// Timing is where an infer call's time went, for its Server-Timing.
type Timing struct {
	start    time.Time
	hop      time.Duration
	service  servertiming.Service
	reported bool
}

// Infer makes an infer call through c for a request that arrived at start,
// and times it: the hop is the call, and the service's own report is taken
// out of the answer (package servertiming).
func Infer(ctx context.Context, c transport.Client, start time.Time, req *pb.ModelInferRequest) (*pb.ModelInferResponse, Timing, error) {
	hopStart := time.Now()
	resp, err := c.ModelInfer(ctx, req)
	t := Timing{start: start, hop: time.Since(hopStart)}
	if err != nil {
		return nil, t, err
	}
	t.service, t.reported = servertiming.Take(resp)
	return resp, t, nil
}

// Value is the Server-Timing value, with the gateway's total up to now.
func (t Timing) Value() string {
	return servertiming.Value(time.Since(t.start), t.hop, t.service, t.reported)
}

// WithTimeout is the one place a call's deadline is set: the earliest of
// ctx's (the client's grpc-timeout), the client's budget (REST's, when
// client > 0) and timeout (--timeout). The layers below only read it.
func WithTimeout(ctx context.Context, timeout, client time.Duration) (context.Context, context.CancelFunc) {
	if client > 0 {
		timeout = min(timeout, client)
	}
	return context.WithTimeout(ctx, timeout)
}
