// Package metrics keeps the gateway's Prometheus metrics and serves them:
//
//	tandem_gateway_requests_total{model,transport,code}
//	tandem_gateway_request_duration_seconds{model,transport} (histogram, trace_id exemplars)
//	tandem_gateway_in_flight_requests
//	tandem_gateway_hop_errors_total{transport,kind}
//	tandem_gateway_refused_total{model,reason}
//
// transport is the hop (grpc or nats); code is the HTTP status of a REST
// request or the gRPC code name (OK, INVALID_ARGUMENT, ...) of an edge gRPC
// call. A nil *Metrics records nothing, so that tests may leave it out.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
)

// MaxModels bounds the model label: the name comes from the client's path or
// message, so after this many distinct ones the rest count as OtherModel and
// no client can grow the number of series without end.
const MaxModels = 100

// OtherModel is the model label past MaxModels.
const OtherModel = "_other"

// durationBuckets span a cached answer to a slow batch, in seconds.
var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Metrics is the gateway's registry and instruments.
type Metrics struct {
	registry  *prometheus.Registry
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	inFlight  prometheus.Gauge
	hopErrors *prometheus.CounterVec
	refused   *prometheus.CounterVec
	transport string

	mu     sync.Mutex
	models sync.Map // model name -> *modelSeries; written under mu
	count  int
}

// modelSeries holds one model's instruments with every label but code
// already filled in, so that the hot path does no label lookups.
type modelSeries struct {
	duration prometheus.Observer
	requests *prometheus.CounterVec // curried with model and transport
	codes    sync.Map               // code -> prometheus.Counter
	refused  *prometheus.CounterVec // curried with model
}

// New registers the metrics for a gateway whose hop is transport (grpc,
// nats), together with the Go runtime's and the process's.
func New(transport string) *Metrics {
	m := &Metrics{
		registry:  prometheus.NewRegistry(),
		transport: transport,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_gateway_requests_total",
			Help: "Requests answered, REST and edge gRPC, by model, hop transport and code (HTTP status or gRPC code name).",
		}, []string{"model", "transport", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tandem_gateway_request_duration_seconds",
			Help:    "Time from a request's arrival to its answer, by model and hop transport; exemplars carry the trace_id.",
			Buckets: durationBuckets,
		}, []string{"model", "transport"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tandem_gateway_in_flight_requests",
			Help: "Requests being answered now.",
		}),
		hopErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_gateway_hop_errors_total",
			Help: "Failed attempts on the hop to the inference service, by transport and kind (unavailable, deadline, too_large, no_responders, overloaded, canceled, internal).",
		}, []string{"transport", "kind"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_gateway_refused_total",
			Help: "Requests refused at once by the gateway, by model and reason (overloaded, rate_limited, deadline, unauthenticated, forbidden, draining).",
		}, []string{"model", "reason"}),
	}
	m.registry.MustRegister(m.requests, m.duration, m.inFlight, m.hopErrors, m.refused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format, or OpenMetrics
// (which carries the exemplars) when the scraper asks for it.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{EnableOpenMetrics: true})
}

// Registry is where the metrics are registered, for tests and for more.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Begin counts a request in flight; End must follow.
func (m *Metrics) Begin() {
	if m != nil {
		m.inFlight.Inc()
	}
}

// End counts a request that Begin counted, answered with code after d. The
// duration carries ctx's trace_id as an exemplar when the trace is sampled.
func (m *Metrics) End(ctx context.Context, model, code string, d time.Duration) {
	if m == nil {
		return
	}
	m.inFlight.Dec()
	s := m.series(model)
	counter, ok := s.codes.Load(code)
	if !ok {
		counter, _ = s.codes.LoadOrStore(code, s.requests.WithLabelValues(code))
	}
	counter.(prometheus.Counter).Inc()
	seconds := d.Seconds()
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		if eo, ok := s.duration.(prometheus.ExemplarObserver); ok {
			eo.ObserveWithExemplar(seconds, prometheus.Labels{"trace_id": sc.TraceID().String()})
			return
		}
	}
	s.duration.Observe(seconds)
}

// HTTPCode is the code label of an HTTP status.
func HTTPCode(status int) string { return strconv.Itoa(status) }

// GRPCCode is the code label of a gRPC code: its canonical name, as in the
// gRPC specification and Python's grpc.StatusCode (INVALID_ARGUMENT).
func GRPCCode(c codes.Code) string {
	if int(c) < len(grpcCodeNames) {
		return grpcCodeNames[c]
	}
	return "UNKNOWN"
}

var grpcCodeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

// HopError counts one failed attempt on the hop.
func (m *Metrics) HopError(kind string) {
	if m != nil {
		m.hopErrors.WithLabelValues(m.transport, kind).Inc()
	}
}

// Refused counts a request refused at once for reason.
func (m *Metrics) Refused(model, reason string) {
	if m != nil {
		m.series(model).refused.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) series(model string) *modelSeries {
	if s, ok := m.models.Load(model); ok {
		return s.(*modelSeries)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.count >= MaxModels {
		model = OtherModel
	}
	// A label must be UTF-8 (the client wrote the name; Prometheus panics
	// on anything else): the bytes that are not become U+FFFD.
	model = strings.ToValidUTF8(model, "\uFFFD")
	if s, ok := m.models.Load(model); ok {
		return s.(*modelSeries)
	}
	labels := prometheus.Labels{"model": model, "transport": m.transport}
	s := &modelSeries{
		duration: m.duration.With(labels),
		requests: m.requests.MustCurryWith(labels),
		refused:  m.refused.MustCurryWith(prometheus.Labels{"model": model}),
	}
	m.models.Store(model, s)
	m.count++
	return s
}
