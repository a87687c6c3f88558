package telemetry

import (
	"bytes"
	"encoding/json"
	"github.com/tandem-ml/tandem/edge-go/internal/testkit"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

var env = testkit.Env

// restoreGlobals puts OpenTelemetry's globals back after a test sets them.
func restoreGlobals(t *testing.T) {
	tp, prop := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	t.Cleanup(func() {
		otel.SetTracerProvider(tp)
		otel.SetTextMapPropagator(prop)
	})
}

// Without an endpoint nothing is exported and spans are not recorded, but
// the W3C propagators are set, so that a client's trace context still
// reaches the logs and the inference service.
func TestNoEndpointNoExporter(t *testing.T) {
	restoreGlobals(t)
	otel.SetTracerProvider(noop.NewTracerProvider())
	tel, err := Setup(t.Context(), Config{LookupEnv: env(map[string]string{
		"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": " ",
	})})
	if err != nil {
		t.Fatal(err)
	}
	if tel.Exporting() {
		t.Error("exporting without an endpoint")
	}
	if _, span := otel.Tracer("test").Start(t.Context(), "x"); span.IsRecording() {
		t.Error("a span records without an endpoint")
	}
	fields := otel.GetTextMapPropagator().Fields()
	for _, want := range []string{"traceparent", "tracestate", "baggage"} {
		if !slices.Contains(fields, want) {
			t.Errorf("propagator fields %v lack %s", fields, want)
		}
	}
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Error(err)
	}
}

func TestEndpointExports(t *testing.T) {
	for _, protocol := range []string{"grpc", "http/protobuf"} {
		t.Run(protocol, func(t *testing.T) {
			restoreGlobals(t)
			tel, err := Setup(t.Context(), Config{LookupEnv: env(map[string]string{
				"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318",
				"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": protocol,
			})})
			if err != nil {
				t.Fatal(err)
			}
			if !tel.Exporting() {
				t.Error("not exporting with an endpoint")
			}
			if err := tel.Shutdown(t.Context()); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestProtocol(t *testing.T) {
	tests := []struct {
		vars map[string]string
		want string
	}{
		{nil, "http/protobuf"},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "grpc"},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, "http/protobuf"},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, ""},
	}
	for _, tt := range tests {
		got, err := Protocol(env(tt.vars))
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("Protocol(%v) = %q, %v; want %q", tt.vars, got, err, tt.want)
		}
	}
}

func TestLogHandlerAddsIDs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewJSONHandler(&buf, nil))).With("component", "test")
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9, 1}, SpanID: trace.SpanID{0xf0, 2}, TraceFlags: trace.FlagsSampled,
	})
	log.InfoContext(trace.ContextWithSpanContext(t.Context(), sc), "in a span")
	log.InfoContext(t.Context(), "outside")

	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("%d lines: %s", len(lines), buf.Bytes())
	}
	var in, out map[string]any
	if err := json.Unmarshal(lines[0], &in); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(lines[1], &out); err != nil {
		t.Fatal(err)
	}
	if in["trace_id"] != sc.TraceID().String() || in["span_id"] != sc.SpanID().String() || in["component"] != "test" {
		t.Errorf("line in a span: %s", lines[0])
	}
	if _, ok := out["trace_id"]; ok {
		t.Errorf("line outside a span has a trace_id: %s", lines[1])
	}
}

// The server span is named after the route pattern and continues the
// client's trace.
func TestHTTPHandlerSpan(t *testing.T) {
	restoreGlobals(t)
	rec := tracetest.NewSpanRecorder()
	otel.SetTextMapPropagator(propagation.TraceContext{})

	mux := http.NewServeMux()
	mux.HandleFunc("POST /v2/models/{model}/infer", func(http.ResponseWriter, *http.Request) {})
	h := Recording(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))).HTTPHandler(mux)
	req := httptest.NewRequest(http.MethodPost, "/v2/models/digits/infer", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.ServeHTTP(httptest.NewRecorder(), req)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/nowhere", nil))

	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	s := spans[0]
	if s.Name() != "POST /v2/models/{model}/infer" || s.SpanKind() != trace.SpanKindServer {
		t.Errorf("span %q kind %v", s.Name(), s.SpanKind())
	}
	if s.Parent().SpanID().String() != "00f067aa0ba902b7" || s.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("span does not continue the client's trace: parent %v", s.Parent())
	}
	if spans[1].Name() != "GET" {
		t.Errorf("unrouted request's span is %q, want the method", spans[1].Name())
	}
}

// Without export there are no spans, but the client's trace context still
// reaches the handler, and from there the logs and the hop.
func TestHTTPHandlerWithoutExport(t *testing.T) {
	restoreGlobals(t)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	var got trace.SpanContext
	h := (&Telemetry{}).HTTPHandler(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		got = trace.SpanContextFromContext(r.Context())
	}))
	req := httptest.NewRequest(http.MethodPost, "/v2/models/digits/infer", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.ServeHTTP(httptest.NewRecorder(), req)
	if got.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || got.SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("handler saw %v, want the client's trace context", got)
	}
}
