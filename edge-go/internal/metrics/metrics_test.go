package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
)

func TestRequests(t *testing.T) {
	m := New("nats")
	m.Begin()
	if got := testutil.ToFloat64(m.inFlight); got != 1 {
		t.Errorf("in flight = %v during a request, want 1", got)
	}
	m.End(t.Context(), "digits", HTTPCode(200), 3*time.Millisecond)
	m.Begin()
	m.End(t.Context(), "digits", HTTPCode(400), time.Millisecond)
	m.Begin()
	m.End(t.Context(), "digits", GRPCCode(codes.InvalidArgument), time.Millisecond)

	for code, want := range map[string]float64{"200": 1, "400": 1, "INVALID_ARGUMENT": 1, "500": 0} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues("digits", "nats", code)); got != want {
			t.Errorf("requests{code=%q} = %v, want %v", code, got, want)
		}
	}
	if got := testutil.ToFloat64(m.inFlight); got != 0 {
		t.Errorf("in flight = %v after, want 0", got)
	}
	if n := testutil.CollectAndCount(m.duration, "tandem_gateway_request_duration_seconds"); n != 1 {
		t.Errorf("%d duration series, want 1", n)
	}
}

// A sampled request's duration carries its trace_id as an exemplar, which
// the OpenMetrics exposition shows.
func TestExemplar(t *testing.T) {
	m := New("grpc")
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 1},
		SpanID:     trace.SpanID{1},
		TraceFlags: trace.FlagsSampled,
	})
	m.Begin()
	m.End(trace.ContextWithSpanContext(t.Context(), sc), "digits", "200", 2*time.Millisecond)

	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if want := `trace_id="` + sc.TraceID().String() + `"`; !strings.Contains(string(body), want) {
		t.Errorf("no exemplar %s in:\n%s", want, body)
	}
}

// Client-chosen model names cannot grow the series without end.
func TestModelsAreBounded(t *testing.T) {
	m := New("grpc")
	for i := range MaxModels + 10 {
		m.Begin()
		m.End(context.Background(), fmt.Sprintf("m%d", i), "404", time.Millisecond)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues(OtherModel, "grpc", "404")); got != 10 {
		t.Errorf("requests{model=%q} = %v, want 10", OtherModel, got)
	}
	if n := testutil.CollectAndCount(m.duration); n != MaxModels+1 {
		t.Errorf("%d duration series, want %d", n, MaxModels+1)
	}
}

func TestNilRecordsNothing(t *testing.T) {
	var m *Metrics
	m.Begin()
	m.End(t.Context(), "digits", "200", time.Millisecond)
	m.HopError("unavailable")
}

func TestGRPCCode(t *testing.T) {
	for c, want := range map[codes.Code]string{codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unauthenticated: "UNAUTHENTICATED", 99: "UNKNOWN"} {
		if got := GRPCCode(c); got != want {
			t.Errorf("GRPCCode(%v) = %q, want %q", c, got, want)
		}
	}
}

// A model name that is not UTF-8 (the client's bytes) is counted under its
// valid form rather than panicking in the label code, once.
func TestInvalidUTF8Model(t *testing.T) {
	m := New("grpc")
	for range 3 {
		m.Begin()
		m.End(t.Context(), "\xff\xfe", "400", time.Millisecond)
		m.Refused("\xff", "overloaded")
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("\uFFFD", "grpc", "400")); got != 3 {
		t.Errorf("requests{model=U+FFFD} = %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.refused.WithLabelValues("\uFFFD", "overloaded")); got != 3 {
		t.Errorf("refused{model=U+FFFD} = %v, want 3", got)
	}
}
