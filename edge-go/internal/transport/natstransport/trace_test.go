package natstransport_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/natstransport"
)

// A request is a PRODUCER span "send <subject>" under the caller's span, and
// its trace context reaches the worker in lowercase headers that parse back
// to that span.
func TestSendSpan(t *testing.T) {
	ns := startServer(t, "127.0.0.1:0", 1<<20)
	w := startWorker(t, ns.ClientURL(), echo(t))
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	tr := newTransport(t, natstransport.Config{
		Server:         ns,
		TracerProvider: tp,
		InjectHeaders: func(ctx context.Context, h natstransport.HeaderCarrier) {
			prop.Inject(ctx, h)
		},
	})

	ctx, parent := tp.Tracer("test").Start(bounded(t), "POST /v2/models/{model}/infer", trace.WithSpanKind(trace.SpanKindServer))
	if _, err := tr.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "digits"}); err != nil {
		t.Fatal(err)
	}
	parent.End()

	subject := prefix + ".models.digits.infer"
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans ended, want the send span and its parent", len(spans))
	}
	send := spans[0]
	if send.Name() != "send "+subject || send.SpanKind() != trace.SpanKindProducer {
		t.Errorf("span %q kind %v, want %q PRODUCER", send.Name(), send.SpanKind(), "send "+subject)
	}
	if send.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("send span's parent is %v, want the caller's span %v", send.Parent().SpanID(), parent.SpanContext().SpanID())
	}
	want := map[attribute.Key]string{
		"messaging.system":           "nats",
		"messaging.operation.name":   "send",
		"messaging.operation.type":   "send",
		"messaging.destination.name": subject,
	}
	for _, kv := range send.Attributes() {
		if v, ok := want[kv.Key]; ok {
			if kv.Value.AsString() != v {
				t.Errorf("%s = %q, want %q", kv.Key, kv.Value.AsString(), v)
			}
			delete(want, kv.Key)
		}
	}
	if len(want) > 0 {
		t.Errorf("attributes missing: %v", want)
	}

	h := w.Received()[0].Header
	if _, ok := h["traceparent"]; !ok {
		t.Fatalf("no lowercase traceparent header in %v", h)
	}
	got := trace.SpanContextFromContext(prop.Extract(context.Background(), natstransport.HeaderCarrier(h)))
	if got.TraceID() != send.SpanContext().TraceID() || got.SpanID() != send.SpanContext().SpanID() {
		t.Errorf("traceparent %q names span %v, want the send span %v", h.Get("traceparent"), got.SpanID(), send.SpanContext().SpanID())
	}
}

// A retried request shows both attempts, each its own send span under the
// same parent, the first one (no responders) failed.
func TestRetrySpans(t *testing.T) {
	ns := startServer(t, "127.0.0.1:0", 1<<20)
	first := &firstAttempt{after: func() { startWorker(t, ns.ClientURL(), echo(t)) }}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tr := transport.NewClient(transport.Chain(newInvoker(t, natstransport.Config{
		Server: ns, TracerProvider: tp,
	}), first.note, transport.Retry))

	ctx, parent := tp.Tracer("test").Start(bounded(t), "parent")
	if _, err := tr.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "digits"}); err != nil {
		t.Fatal(err)
	}
	parent.End()
	spans := rec.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want two send spans and their parent", len(spans))
	}
	if spans[0].SpanContext().SpanID() == spans[1].SpanContext().SpanID() {
		t.Error("both attempts share one span")
	}
	for i, s := range spans[:2] {
		if s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("attempt %d: parent %v, want %v", i+1, s.Parent().SpanID(), parent.SpanContext().SpanID())
		}
	}
	if spans[0].Status().Code.String() != "Error" || spans[1].Status().Code.String() == "Error" {
		t.Errorf("statuses %v, %v: want the first attempt failed and the second not", spans[0].Status(), spans[1].Status())
	}
}
