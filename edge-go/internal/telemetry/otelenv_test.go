package telemetry

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

func TestExporter(t *testing.T) {
	const endpoint = "http://127.0.0.1:4318"
	tests := []struct {
		name string
		vars map[string]string
		want string // "" for an error
	}{
		{"nothing set", nil, ExporterNone},
		{"blank endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, ExporterNone},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, ExporterOTLP},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint}, ExporterOTLP},
		{"endpoint, bad protocol", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, ""},
		{"otlp without endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, ExporterOTLP},
		{"console", map[string]string{"OTEL_TRACES_EXPORTER": "console"}, ExporterConsole},
		{"console wins over endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "Console", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, ExporterConsole},
		{"none wins over endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, ExporterNone},
		{"blank exporter falls back", map[string]string{"OTEL_TRACES_EXPORTER": " ", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, ExporterOTLP},
		{"unknown", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, ""},
		{"list", map[string]string{"OTEL_TRACES_EXPORTER": "otlp,console"}, ""},
		{"sdk disabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, ExporterNone},
		{"sdk disabled TRUE", map[string]string{"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, ExporterNone},
		{"sdk not disabled", map[string]string{"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, ExporterOTLP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Exporter(env(tt.vars))
			if got != tt.want || (err != nil) != (tt.want == "") {
				t.Errorf("Exporter(%v) = %q, %v; want %q", tt.vars, got, err, tt.want)
			}
		})
	}
}

func TestPropagator(t *testing.T) {
	tests := []struct {
		value string
		want  []string // nil for an error
	}{
		{"", []string{"traceparent", "tracestate", "baggage"}},
		{" ", []string{"traceparent", "tracestate", "baggage"}},
		{"tracecontext", []string{"traceparent", "tracestate"}},
		{"tracecontext, baggage", []string{"traceparent", "tracestate", "baggage"}},
		{"b3", []string{"b3"}},
		{"b3multi", []string{"x-b3-traceid", "x-b3-spanid", "x-b3-sampled"}},
		{"tracecontext,b3", []string{"traceparent", "b3"}},
		{"none", []string{}},
		{"nosuch", nil},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			prop, err := Propagator(env(map[string]string{"OTEL_PROPAGATORS": tt.value}))
			if tt.want == nil {
				if err == nil {
					t.Errorf("no error for %q", tt.value)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fields := prop.Fields()
			for _, f := range tt.want {
				if !slices.Contains(fields, f) {
					t.Errorf("fields %v lack %s", fields, f)
				}
			}
			if len(tt.want) == 0 && len(fields) != 0 {
				t.Errorf("fields %v, want none", fields)
			}
		})
	}
}

// A b3 propagator set by Setup is the one the doors use: a b3 header comes
// in, a b3 header goes out.
func TestSetupB3(t *testing.T) {
	restoreGlobals(t)
	tel, err := Setup(t.Context(), Config{LookupEnv: env(map[string]string{"OTEL_PROPAGATORS": "b3"})})
	if err != nil {
		t.Fatal(err)
	}
	in := http.Header{"B3": {"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"}}
	ctx := otel.GetTextMapPropagator().Extract(t.Context(), propagation.HeaderCarrier(in))
	if got := trace.SpanContextFromContext(ctx).TraceID().String(); got != "80f198ee56343ba864fe8b2a57d3eff7" {
		t.Errorf("extracted trace id %s", got)
	}
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Error(err)
	}
}

// collector counts the OTLP/HTTP export requests it gets.
func collector(t *testing.T) (url string, hits *atomic.Int64) {
	hits = new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, hits
}

// traceThrough sends a request with a traceparent through the HTTP door and
// returns the traceparent the handler would send on.
func traceThrough(t *testing.T, tel *Telemetry) string {
	t.Helper()
	var out string
	h := tel.HTTPHandler(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, span := otel.Tracer("test").Start(r.Context(), "work")
		span.End()
		hdr := http.Header{}
		otel.GetTextMapPropagator().Inject(r.Context(), propagation.HeaderCarrier(hdr))
		out = hdr.Get("traceparent")
	}))
	req := httptest.NewRequest(http.MethodPost, "/v2/models/m/infer", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.ServeHTTP(httptest.NewRecorder(), req)
	return out
}

// OTEL_TRACES_EXPORTER=none (and OTEL_SDK_DISABLED=true) export nothing even
// with an endpoint set, and a client's trace context still goes through; the
// same setup with otlp does reach the collector, so the count means something.
func TestNoneExportsNothingButPropagates(t *testing.T) {
	for _, tt := range []struct {
		name   string
		vars   map[string]string
		export bool
	}{
		{"otlp", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{"none", map[string]string{"OTEL_TRACES_EXPORTER": "none"}, false},
		{"sdk disabled", map[string]string{"OTEL_SDK_DISABLED": "true"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			restoreGlobals(t)
			url, hits := collector(t)
			// autoexport and the OTLP exporter read the process environment.
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
			t.Setenv("OTEL_TRACES_EXPORTER", "")
			t.Setenv("OTEL_SDK_DISABLED", "")
			for k, v := range tt.vars {
				t.Setenv(k, v)
			}
			tel, err := Setup(t.Context(), Config{LookupEnv: func(k string) (string, bool) {
				if k == "OTEL_EXPORTER_OTLP_ENDPOINT" {
					return url, true
				}
				v, ok := tt.vars[k]
				return v, ok
			}})
			if err != nil {
				t.Fatal(err)
			}
			if tel.Exporting() != tt.export {
				t.Errorf("Exporting() = %v", tel.Exporting())
			}
			tp := traceThrough(t, tel)
			if err := tel.Shutdown(t.Context()); err != nil {
				t.Fatal(err)
			}
			if len(tp) != 55 || tp[3:35] != "4bf92f3577b34da6a3ce929d0e0e4736" {
				t.Errorf("traceparent sent on = %q, want the client's trace", tp)
			}
			if got := hits.Load() > 0; got != tt.export {
				t.Errorf("collector got %d exports", hits.Load())
			}
		})
	}
}
