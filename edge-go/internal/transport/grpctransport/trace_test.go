package grpctransport

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/oiptest"
	"github.com/tandem-ml/tandem/edge-go/internal/telemetry"
	"github.com/tandem-ml/tandem/edge-go/internal/testkit"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/transporttest"
)

// A call is a CLIENT span under the caller's span, and the service's SERVER
// span (as the Python service's would be) is its child: the trace context
// crossed the hop.
func TestClientSpanParentsServerSpan(t *testing.T) {
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator()) })
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))

	svc := &transporttest.Double{ModelInferFunc: func(_ context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		return &pb.ModelInferResponse{ModelName: req.GetModelName()}, nil
	}}
	tel := telemetry.Recording(tp)
	srv := oiptest.Start(t, "127.0.0.1:0", svc, tel.GRPCServerOptions()...)
	tr, err := New(Config{Addr: srv.Addr, MaxMessageBytes: 1 << 20, DialOptions: tel.GRPCDialOptions()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })

	ctx, parent := tp.Tracer("test").Start(t.Context(), "POST /v2/models/{model}/infer", trace.WithSpanKind(trace.SpanKindServer))
	if _, err := transport.NewClient(tr).ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "digits"}); err != nil {
		t.Fatal(err)
	}
	parent.End()

	const method = "inference.GRPCInferenceService/ModelInfer"
	// The server span ends on the server's goroutine, maybe after the call
	// returned here.
	testkit.Eventually(t, "the parent, client and server spans", func() bool { return len(rec.Ended()) >= 3 })
	var client, server sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch {
		case s.Name() == method && s.SpanKind() == trace.SpanKindClient:
			client = s
		case s.Name() == method && s.SpanKind() == trace.SpanKindServer:
			server = s
		}
	}
	if client == nil || server == nil {
		t.Fatalf("want a client and a server span named %q, got %v", method, rec.Ended())
	}
	if client.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("client span's parent %v, want the caller's span %v", client.Parent().SpanID(), parent.SpanContext().SpanID())
	}
	if server.Parent().SpanID() != client.SpanContext().SpanID() || !server.Parent().IsRemote() {
		t.Errorf("server span's parent %v, want the client span %v, remote", server.Parent().SpanID(), client.SpanContext().SpanID())
	}
}
