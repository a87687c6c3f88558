// Package rest serves the Open Inference Protocol's REST API (v2) over HTTP,
// forwarding everything that concerns models to the inference service
// through a transport.Invoker.
package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/auth"
	"github.com/tandem-ml/tandem/edge-go/internal/edge"
	"github.com/tandem-ml/tandem/edge-go/internal/limit"
	"github.com/tandem-ml/tandem/edge-go/internal/metrics"
	"github.com/tandem-ml/tandem/edge-go/internal/oiperr"
	"github.com/tandem-ml/tandem/edge-go/internal/restcodec"
	"github.com/tandem-ml/tandem/edge-go/internal/servertiming"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
)

// ServerName is what GET /v2 calls the gateway.
const ServerName = "tandem"

// Extensions lists the OIP extensions the gateway implements, for GET /v2
// and the edge gRPC ServerMetadata.
// Triton's model_configuration, model_repository and statistics are the
// inference service's, forwarded.
var Extensions = append([]string{"binary_tensor_data"}, tritonExtensions...)

// headerBinaryLength marks a request body that carries binary tensor data
// after its JSON header (OIP's binary tensor extension).
const headerBinaryLength = "Inference-Header-Content-Length"

// Config is what the handler needs; every field must be set.
type Config struct {
	Transport transport.Invoker
	Logger    *slog.Logger
	// Timeout bounds every call to the inference service (--timeout), on
	// top of the client's own deadline.
	Timeout time.Duration
	// Version is the gateway's version, reported by GET /v2.
	Version string
	// MaxBodyBytes bounds a request body; a larger one gets 413.
	MaxBodyBytes int64
	// MaxMessageBytes bounds the encoded request sent to the inference
	// service; a request that would exceed it gets 413 rather than reaching
	// a service that would refuse it.
	MaxMessageBytes int
	// Metrics counts every request and every refusal; nil: none.
	Metrics *metrics.Metrics
	// Keys are the API keys clients must present; nil or empty: none.
	Keys *auth.Keys
	// Rate limits each client's requests (per key, or per IP without
	// keys); nil: no limit.
	Rate *limit.Rate
	// Draining reports that the gateway is shutting down: readiness is
	// then 503 while requests are still served. nil: never.
	Draining func() bool
}

// Handler serves the OIP REST API.
type Handler struct {
	cfg     Config
	tr      transport.Client
	mux     *http.ServeMux
	logged  http.Handler
	metaRaw []byte // GET /v2 never changes: encoded once
}

// New returns the handler for every OIP REST route.
func New(cfg Config) (*Handler, error) {
	meta, err := restcodec.MarshalServerMetadata(&pb.ServerMetadataResponse{
		Name: ServerName, Version: cfg.Version, Extensions: Extensions,
	})
	if err != nil {
		return nil, fmt.Errorf("rest: encode server metadata: %w", err)
	}
	h := &Handler{cfg: cfg, tr: transport.NewClient(cfg.Transport), mux: http.NewServeMux(), metaRaw: meta}
	h.mux.HandleFunc("GET /v2", h.serverMetadata)
	h.mux.HandleFunc("GET /v2/health/live", h.live)
	h.mux.HandleFunc("GET /v2/health/ready", h.ready)
	for _, model := range []string{"/v2/models/{model}", "/v2/models/{model}/versions/{version}"} {
		h.mux.HandleFunc("GET "+model, h.modelMetadata)
		h.mux.HandleFunc("GET "+model+"/ready", h.modelReady)
		h.mux.HandleFunc("POST "+model+"/infer", h.infer)
		h.mux.HandleFunc("GET "+model+"/config", h.modelConfig)
		h.mux.HandleFunc("GET "+model+"/stats", h.modelStats)
	}
	// Triton's extensions (triton.go). GET /v2/models/stats is every
	// model's statistics: the mux prefers it, the more specific pattern, to
	// the metadata of a model named "stats".
	h.mux.HandleFunc("GET /v2/models/stats", h.modelStats)
	h.mux.HandleFunc("POST /v2/repository/index", h.repositoryIndex)
	h.mux.HandleFunc("POST /v2/repository/models/{model}/load", h.repositoryLoad)
	h.mux.HandleFunc("POST /v2/repository/models/{model}/unload", h.repositoryUnload)
	// Outermost first: the log line and count see what recovery answered,
	// and a request is checked (URL, key, rate) before it is routed.
	h.logged = logRequests(edge.Observer{Log: cfg.Logger, Metrics: cfg.Metrics},
		recoverPanics(cfg.Logger,
			checkURL(
				cfg.Keys.HTTP(
					rateLimit(cfg.Rate, cfg.Metrics, http.HandlerFunc(h.route)),
					auth.HTTPConfig{
						ModelOf:    modelOfPath,
						Refused:    func(_ *http.Request, model string, o auth.Outcome) { cfg.Metrics.Refused(model, o.String()) },
						WriteError: writeError,
					}))))
	return h, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.logged.ServeHTTP(w, r)
}

// route dispatches through the mux, and answers what has no route in JSON
// too, so that every error a client sees has the same shape.
func (h *Handler) route(w http.ResponseWriter, r *http.Request) {
	if _, pattern := h.mux.Handler(r); pattern != "" {
		// The mux fills the path values in on r: the log line's model.
		defer func() { noteModel(w, r.PathValue("model")) }()
		h.mux.ServeHTTP(w, r)
		return
	}
	// The mux knows whether the path exists for other methods (405, with an
	// Allow header) or not at all (404): let it set status and headers.
	probe := &statusOnlyWriter{header: w.Header()}
	h.mux.ServeHTTP(probe, r)
	msg := fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)
	if probe.status == http.StatusMethodNotAllowed {
		msg = fmt.Sprintf("method %s is not allowed for %s; allowed: %s", r.Method, r.URL.Path, w.Header().Get("Allow"))
	}
	writeJSONError(w, probe.status, msg)
}

func (h *Handler) serverMetadata(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, h.metaRaw)
}

// live answers for the gateway process alone: restarting the gateway would
// not bring back an inference service that is down.
func (h *Handler) live(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, []byte(`{"live":true}`))
}

// ready answers for the whole path: the gateway is ready when the service is.
func (h *Handler) ready(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Draining != nil && h.cfg.Draining() {
		writeJSONError(w, http.StatusServiceUnavailable, "the gateway is shutting down")
		return
	}
	ctx, cancel, err := h.callContext(r, 0)
	if err != nil {
		writeError(w, r, err)
		return
	}
	defer cancel()
	resp, err := h.tr.ServerReady(ctx, &pb.ServerReadyRequest{})
	if err != nil {
		writeError(w, r, err)
		return
	}
	if !resp.GetReady() {
		writeJSONError(w, http.StatusServiceUnavailable, "the inference service is not ready")
		return
	}
	writeJSON(w, http.StatusOK, []byte(`{"ready":true}`))
}

func (h *Handler) modelMetadata(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, err := h.callContext(r, 0)
	if err != nil {
		writeError(w, r, err)
		return
	}
	defer cancel()
	resp, err := h.tr.ModelMetadata(ctx, &pb.ModelMetadataRequest{
		Name: r.PathValue("model"), Version: r.PathValue("version"),
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	body, err := restcodec.MarshalModelMetadata(resp)
	if err != nil {
		writeError(w, r, fmt.Errorf("encode model metadata: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func (h *Handler) modelReady(w http.ResponseWriter, r *http.Request) {
	model, version := r.PathValue("model"), r.PathValue("version")
	ctx, cancel, err := h.callContext(r, 0)
	if err != nil {
		writeError(w, r, err)
		return
	}
	defer cancel()
	resp, err := h.tr.ModelReady(ctx, &pb.ModelReadyRequest{Name: model, Version: version})
	if err != nil {
		writeError(w, r, err)
		return
	}
	if !resp.GetReady() {
		writeJSONError(w, http.StatusServiceUnavailable, fmt.Sprintf("model %q%s is not ready", model, versionSuffix(version)))
		return
	}
	writeJSON(w, http.StatusOK, []byte(`{"ready":true}`))
}

func versionSuffix(version string) string {
	if version == "" {
		return ""
	}
	return fmt.Sprintf(" version %q", version)
}

func (h *Handler) infer(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	body, err := readBody(w, r, h.cfg.MaxBodyBytes)
	if err != nil {
		writeError(w, r, err)
		return
	}
	req, enc, err := restcodec.DecodeInferRequest(body, r.Header.Get(headerBinaryLength))
	if err != nil {
		writeError(w, r, err)
		return
	}
	req.ModelName, req.ModelVersion = r.PathValue("model"), r.PathValue("version")
	budget, err := timeoutParameter(req)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if size := proto.Size(req); size > h.cfg.MaxMessageBytes {
		writeError(w, r, fmt.Errorf("%w: its tensors take %d bytes, more than the %d the inference service accepts",
			transport.ErrTooLarge, size, h.cfg.MaxMessageBytes))
		return
	}
	ctx, cancel, err := h.callContext(r, budget)
	if err != nil {
		writeError(w, r, err)
		return
	}
	defer cancel()
	resp, timing, err := edge.Infer(ctx, h.tr, start, req)
	if err != nil {
		writeError(w, r, err)
		return
	}
	// JSON numbers take about three times the bytes of raw float32s.
	out, blobs, err := restcodec.AppendInferResponse(make([]byte, 0, 256+3*rawSize(resp)), resp, enc)
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set(servertiming.Header, timing.Value())
	if blobs != nil {
		writeBinary(w, out, blobs)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// callContext is the context of a request's call to the inference service:
// its deadline is set here, once (edge.WithTimeout), and only read below.
// It is the earliest of --timeout, the Request-Timeout header and param
// (the infer request's timeout parameter; 0: none).
func (h *Handler) callContext(r *http.Request, param time.Duration) (context.Context, context.CancelFunc, error) {
	budget, err := requestTimeout(r)
	if err != nil {
		return nil, nil, err
	}
	if param > 0 && (budget == 0 || param < budget) {
		budget = param
	}
	ctx, cancel := edge.WithTimeout(r.Context(), h.cfg.Timeout, budget)
	return ctx, cancel, nil
}

// headerRequestTimeout is the client's budget in seconds (decimal, "0.25").
const headerRequestTimeout = "Request-Timeout"

// maxClientBudget bounds what a client may ask for, so that the seconds
// convert to a time.Duration; --timeout bounds it further.
const maxClientBudget = 24 * time.Hour

// requestTimeout reads the Request-Timeout header; 0 when absent.
func requestTimeout(r *http.Request) (time.Duration, error) {
	v := r.Header.Get(headerRequestTimeout)
	if v == "" {
		return 0, nil
	}
	secs, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || !(secs > 0) || secs > maxClientBudget.Seconds() {
		return 0, status.Errorf(codes.InvalidArgument,
			"header %s %q: want a positive number of seconds, such as 0.25", headerRequestTimeout, v)
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// paramTimeout is the OIP request parameter of a client's budget, in
// microseconds, as Triton reads it.
const paramTimeout = "timeout"

// timeoutParameter takes the timeout parameter out of req (it is the
// gateway's to apply, and a request with parameters is never coalesced)
// and returns it; 0 when absent.
func timeoutParameter(req *pb.ModelInferRequest) (time.Duration, error) {
	p, ok := req.GetParameters()[paramTimeout]
	if !ok {
		return 0, nil
	}
	delete(req.Parameters, paramTimeout)
	var us int64
	switch v := p.GetParameterChoice().(type) {
	case *pb.InferParameter_Int64Param:
		us = v.Int64Param
	case *pb.InferParameter_Uint64Param:
		us = int64(min(v.Uint64Param, uint64(maxClientBudget/time.Microsecond)))
	default:
		us = -1
	}
	if us <= 0 || us > int64(maxClientBudget/time.Microsecond) {
		return 0, status.Errorf(codes.InvalidArgument,
			"parameter %q: want a positive whole number of microseconds, such as 250000", paramTimeout)
	}
	return time.Duration(us) * time.Microsecond, nil
}

func rawSize(resp *pb.ModelInferResponse) int {
	n := 0
	for _, raw := range resp.GetRawOutputContents() {
		n += len(raw)
	}
	return n
}

// readBody reads the whole request body, refusing one over limit: at once
// when Content-Length says so, else as soon as the limit is passed. The
// buffer grows as bytes arrive; it is never sized from what the client
// claims, so a client that claims megabytes and sends one byte costs
// little more than that byte.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	var b bytes.Buffer
	if r.ContentLength > 0 {
		b.Grow(int(min(r.ContentLength, initialBodyBytes)))
	}
	if _, err := b.ReadFrom(http.MaxBytesReader(w, r.Body, limit)); err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	return b.Bytes(), nil
}

// initialBodyBytes is the most a body's buffer starts with, before any
// bytes arrive: a typical request fits, and a lying client gets no more.
const initialBodyBytes = 16 << 10

// writeError answers with the status and message oiperr maps err to. A
// client that went away gets nothing, but its request is logged as 499.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	resp := oiperr.FromError(err)
	if resp.Status == oiperr.StatusClientClosedRequest {
		noteStatus(w, resp.Status, resp.Message)
		return
	}
	if resp.RetryAfter != "" {
		w.Header().Set("Retry-After", resp.RetryAfter)
	}
	writeJSONError(w, resp.Status, resp.Message)
}

// writeJSONError writes the OIP REST error body, {"error": "..."}.
func writeJSONError(w http.ResponseWriter, status int, msg string) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // messages quote JSON and shapes; keep them legible
	_ = enc.Encode(struct {
		Error string `json:"error"`
	}{msg}) // a struct of one string always encodes
	noteStatus(w, status, msg)
	writeJSON(w, status, bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body) // a failed write means the client left; nothing to tell it
}

// statusOnlyWriter keeps the status and headers a handler sets and drops its
// body.
type statusOnlyWriter struct {
	header http.Header
	status int
}

func (w *statusOnlyWriter) Header() http.Header         { return w.header }
func (w *statusOnlyWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *statusOnlyWriter) WriteHeader(status int)      { w.status = status }
