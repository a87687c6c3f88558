package telemetry

import (
	"context"
	"net"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// seen is a health server that notes the trace context of the last call.
type seen struct {
	healthpb.UnimplementedHealthServer
	sc trace.SpanContext
}

func (s *seen) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	s.sc = trace.SpanContextFromContext(ctx)
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// Without export the gRPC options still carry the trace context from the
// client's context to the server's.
func TestGRPCWithoutExportPropagates(t *testing.T) {
	restoreGlobals(t)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	tel := &Telemetry{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(tel.GRPCServerOptions()...)
	s := &seen{}
	healthpb.RegisterHealthServer(srv, s)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(),
		append(tel.GRPCDialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	want := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 1}, SpanID: trace.SpanID{0xf0, 2}, TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(t.Context(), want)
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if s.sc.TraceID() != want.TraceID() || s.sc.SpanID() != want.SpanID() || !s.sc.IsRemote() {
		t.Errorf("server saw %v, want %v", s.sc, want)
	}
}
