// Package natstransport implements transport.Invoker over NATS
// request/reply, as proto/README.md maps the OIP RPCs: one subject per RPC
// (per model for the model RPCs), the serialized protobuf messages as
// payloads, the caller's budget in the tandem-timeout and tandem-deadline
// headers, a tandem-request-id, and errors in the Nats-Service-Error
// headers. Workers answer in a queue group, so any number of them share the
// load with no change here. A request its caller gives up on is cancelled
// on <prefix>.cancel, so that a worker drops it if it has not started it.
package natstransport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/natsauth"
	"github.com/tandem-ml/tandem/edge-go/internal/natssubject"
	"github.com/tandem-ml/tandem/edge-go/internal/redact"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
)

// The headers of the NATS mapping (proto/README.md). Tandem's own are
// lowercase; the error headers follow the NATS services convention.
const (
	HeaderTimeout    = "tandem-timeout"
	HeaderDeadline   = "tandem-deadline"
	HeaderRequestID  = "tandem-request-id"
	HeaderError      = "Nats-Service-Error"
	HeaderErrorCode  = "Nats-Service-Error-Code"
	reconnectWait    = 250 * time.Millisecond
	clientName       = "tandem-gateway"
	embeddedURLLabel = "embedded"
)

// Config says where NATS is and how calls over it are bounded.
type Config struct {
	// URL is one or more NATS server URLs, comma-separated; user:pass@ in
	// it is used and never logged. It is ignored when Server is set.
	URL string
	// Server, when set, is a nats-server running in this process: the
	// client connects to it without a socket.
	Server nats.InProcessConnProvider
	// Auth is the gateway's credentials and TLS, for the in-process
	// connection too (the server may demand them of every client).
	Auth natsauth.Config
	// SubjectPrefix starts every subject ("oip.v2").
	SubjectPrefix string
	// InjectHeaders, when set, adds headers to every request, such as the
	// W3C trace context of ctx. The carrier keeps keys lowercase.
	InjectHeaders func(ctx context.Context, h HeaderCarrier)
	// TracerProvider makes the PRODUCER span of every request ("send
	// <subject>"); nil means OpenTelemetry's global one.
	TracerProvider trace.TracerProvider
	// Logger receives connection events: disconnects, reconnects, errors.
	Logger *slog.Logger
	// NoteCancel, when set, is told of every cancel published (err nil) or
	// not (the connection refused it), for a counter.
	NoteCancel func(err error)
}

// Transport is a transport.Invoker over one NATS connection.
type Transport struct {
	nc       *nats.Conn
	where    string // the server(s), for messages
	subjects subjects
	inject   func(context.Context, HeaderCarrier)
	tracer   trace.Tracer
	noted    func(error)
}

// instrumentationName names the tracer of the send spans.
const instrumentationName = "github.com/tandem-ml/tandem/edge-go/internal/transport/natstransport"

var _ transport.Invoker = (*Transport)(nil)

// New connects to NATS. It does not wait for the server: when none answers
// yet, it keeps trying in the background (every 250 ms, for ever) and calls
// fail with UNAVAILABLE until one does. A server that answers and refuses
// the gateway's credentials or TLS is an error here, at start, since
// trying again cannot help.
func New(cfg Config) (*Transport, error) {
	if err := natssubject.ValidatePrefix(cfg.SubjectPrefix); err != nil {
		return nil, fmt.Errorf("nats transport: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	authOpts, err := natsauth.Options(cfg.Auth)
	if err != nil {
		return nil, fmt.Errorf("nats transport: %w", err)
	}
	where := redact.URL(cfg.URL)
	if cfg.Server != nil {
		where = embeddedURLLabel
	}
	server := func(nc *nats.Conn) string {
		if cfg.Server != nil {
			return where
		}
		return nc.ConnectedUrlRedacted()
	}
	opts := []nats.Option{
		nats.Name(clientName),
		// Reconnect for ever and fast: the gateway is useless without
		// NATS, and a restarted server is back within a second.
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		// No buffering while disconnected: a request then fails at once
		// with UNAVAILABLE (and is retried once) rather than waiting, out
		// of sight, for a server that may not come back in time.
		nats.ReconnectBufSize(-1),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("nats connected", "server", server(nc))
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() {
				return // Close, on shutdown: nothing to reconnect
			}
			log.Warn("nats disconnected; reconnecting", "server", where, "error", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "server", server(nc))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Error("nats error", "subject", subject, "error", err)
		}),
	}
	opts = append(opts, authOpts...)
	if cfg.Server != nil {
		opts = append(opts, nats.InProcessServer(cfg.Server))
	}
	nc, err := connect(cfg.URL, opts, cfg.Server != nil)
	if err != nil {
		return nil, fmt.Errorf("nats transport: connect to %s: %w", where, err)
	}
	return &Transport{
		nc:       nc,
		where:    where,
		subjects: subjects{prefix: cfg.SubjectPrefix},
		inject:   cfg.InjectHeaders,
		noted:    cfg.NoteCancel,
		tracer:   tracerProvider(cfg.TracerProvider).Tracer(instrumentationName),
	}, nil
}

// ErrRefused marks a connection the server turned away: bad credentials or
// TLS. Trying again cannot help, so New returns it at once.
var ErrRefused = errors.New("the NATS server refused the gateway's connection")

// connect makes one attempt at once and fails on a refusal (see refused);
// on any other failure (the server is not up yet, its name does not
// resolve yet) it returns a client that keeps trying in the background. A
// server in this process is up, so its connection can only fail by being
// refused; it closes the pipe before the client can read why.
func connect(url string, opts []nats.Option, inProcess bool) (*nats.Conn, error) {
	nc, err := nats.Connect(url, opts...)
	switch {
	case err == nil:
		return nc, nil
	case inProcess, refused(err):
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return nats.Connect(url, append(opts, nats.RetryOnFailedConnect(true))...)
}

// refused reports whether a server answered and turned the client away:
// bad credentials, or TLS that one side demands or cannot verify. nats.go
// wraps the TLS failures of its handshake in ErrTLS; an alert the server
// sends after it (TLS 1.3 checks the client's certificate then) comes as
// crypto/tls's "remote error".
func refused(err error) bool {
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "remote error" {
		return true
	}
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired) ||
		errors.Is(err, nats.ErrTLS) || errors.Is(err, nats.ErrSecureConnRequired) ||
		errors.Is(err, nats.ErrSecureConnWanted) || errors.Is(err, nats.ErrClientCertOrRootCAsRequired)
}

// Close closes the connection; calls in flight fail.
func (t *Transport) Close() error {
	t.nc.Close()
	return nil
}

// verbs end the subject of each RPC (proto/README.md): the server's
// "<prefix>.server.<verb>", the models' "<prefix>.models.<model>.<verb>"
// and the repository's "<prefix>.repository.<verb>".
var verbs = [...]string{
	transport.ServerLive:            "live",
	transport.ServerReady:           "ready",
	transport.ServerMetadata:        "metadata",
	transport.ModelReady:            "ready",
	transport.ModelMetadata:         "metadata",
	transport.ModelInfer:            "infer",
	transport.ModelConfig:           "config",
	transport.ModelStatistics:       "stats",
	transport.RepositoryIndex:       "index",
	transport.RepositoryModelLoad:   "load",
	transport.RepositoryModelUnload: "unload",
}

// Invoke makes one request on the subject of rpc and decodes the reply.
func (t *Transport) Invoke(ctx context.Context, rpc transport.RPC, req proto.Message) (proto.Message, error) {
	switch rpc {
	case transport.RepositoryIndex, transport.RepositoryModelLoad, transport.RepositoryModelUnload:
		return call(ctx, t, t.subjects.repository(verbs[rpc]), "", req, rpc.NewResponse())
	case transport.ModelStatistics:
		if transport.ModelOf(req) == "" {
			return t.allStatistics(ctx, req)
		}
	}
	if !rpc.PerModel() {
		return call(ctx, t, t.subjects.server(verbs[rpc]), "", req, rpc.NewResponse())
	}
	model := transport.ModelOf(req)
	subject, err := t.subjects.model(model, verbs[rpc])
	if err != nil {
		return nil, err
	}
	resp, err := call(ctx, t, subject, model, req, rpc.NewResponse())
	var u unserved
	if rpc == transport.ModelReady && errors.As(err, &u) && t.inRepository(ctx, model) {
		// A model in the repository that no worker has loaded (unloaded,
		// or not loaded under --model-control explicit) is not ready, as
		// over gRPC, rather than unknown.
		return &pb.ModelReadyResponse{Ready: false}, nil
	}
	return resp, err
}

// unserved is the NOT_FOUND of a model subject nobody subscribes while
// some worker is connected: a model no worker has loaded.
type unserved struct{ st *status.Status }

func (u unserved) Error() string              { return u.st.Err().Error() }
func (u unserved) GRPCStatus() *status.Status { return u.st }

// inRepository reports whether the repository index (of one worker) lists
// model, loaded or not.
func (t *Transport) inRepository(ctx context.Context, model string) bool {
	idx, err := call(transport.WithNewRequestID(ctx), t, t.subjects.repository(verbs[transport.RepositoryIndex]), "",
		&pb.RepositoryIndexRequest{}, &pb.RepositoryIndexResponse{})
	if err != nil {
		return false
	}
	for _, m := range idx.(*pb.RepositoryIndexResponse).GetModels() {
		if m.GetName() == model {
			return true
		}
	}
	return false
}

// allStatistics answers ModelStatistics for every model (an empty name).
// There is no server-wide statistics subject: a worker counts only what it
// served, and the models may be spread over workers. So the gateway asks
// the repository index (of one worker) which models are loaded, then each
// loaded model's subject in turn, and joins the answers. Each model's
// counts are those of the one worker that answered on its subject, as for
// a single model's statistics; a model unloaded in between is left out.
// Each of those requests has a request id of its own: a worker answers an
// id it has seen with that id's first reply.
func (t *Transport) allStatistics(ctx context.Context, req proto.Message) (proto.Message, error) {
	idx, err := call(transport.WithNewRequestID(ctx), t, t.subjects.repository(verbs[transport.RepositoryIndex]), "",
		&pb.RepositoryIndexRequest{Ready: true}, &pb.RepositoryIndexResponse{})
	if err != nil {
		return nil, err
	}
	version := ""
	if r, ok := req.(*pb.ModelStatisticsRequest); ok {
		version = r.GetVersion()
	}
	all := &pb.ModelStatisticsResponse{}
	seen := map[string]bool{}
	for _, m := range idx.(*pb.RepositoryIndexResponse).GetModels() {
		if seen[m.GetName()] || m.GetState() != "READY" {
			continue
		}
		seen[m.GetName()] = true
		subject, err := t.subjects.model(m.GetName(), verbs[transport.ModelStatistics])
		if err != nil {
			continue // a name no worker can serve over NATS
		}
		resp, err := call(transport.WithNewRequestID(ctx), t, subject, m.GetName(),
			&pb.ModelStatisticsRequest{Name: m.GetName(), Version: version}, &pb.ModelStatisticsResponse{})
		if status.Code(err) == codes.NotFound {
			continue // unloaded since the index
		}
		if err != nil {
			return nil, err
		}
		all.ModelStats = append(all.ModelStats, resp.(*pb.ModelStatisticsResponse).GetModelStats()...)
	}
	return all, nil
}

// call makes one request on subject and decodes the reply into resp. model
// names the model in messages; it is empty for the server RPCs.
//
// The request is bounded by ctx's deadline, which it must have, and by
// nothing shorter: NATS does not tell a requester that the subscriber it
// picked went away (a worker killed with SIGKILL silently loses what it
// held), and nobody can tell such a worker from a slow one, which may be
// running the request. So a request held by a killed worker waits out its
// deadline (504) rather than being sent again (transport.Retry).
func call(ctx context.Context, t *Transport, subject, model string, req, resp proto.Message) (proto.Message, error) {
	// One span per attempt: a retried request shows both sends.
	ctx, span := t.tracer.Start(ctx, "send "+subject, trace.WithSpanKind(trace.SpanKindProducer))
	defer span.End()
	if span.IsRecording() { // nothing to build for a span that is thrown away
		span.SetAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.name", "send"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", subject),
		)
	}
	resp, err := request(ctx, t, subject, model, req, resp)
	if err != nil {
		span.SetStatus(otelcodes.Error, err.Error())
		span.SetAttributes(attribute.String("error.type", status.Code(err).String()))
	}
	return resp, err
}

// request is call's work, inside the span.
func request(ctx context.Context, t *Transport, subject, model string, req, resp proto.Message) (proto.Message, error) {
	data, err := proto.Marshal(req)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode %s request: %v", subject, err)
	}
	if limit := t.nc.MaxPayload(); limit > 0 && int64(len(data)) > limit {
		return nil, transport.TooLarge(fmt.Sprintf(
			"request too large: it takes %d bytes, more than the %d bytes the NATS server accepts in one message (its max_payload)", len(data), limit))
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	deadline, ok := ctx.Deadline()
	if !ok {
		// nats.go refuses it too: the edge always sets one.
		return nil, status.Errorf(codes.Internal, "request on %s without a deadline", subject)
	}
	// Both the budget and the deadline: the worker takes the earlier of its
	// receipt time + budget and the deadline, so neither clock skew nor
	// time queued in NATS makes it work past what the gateway waits for.
	msg.Header.Set(HeaderTimeout, budgetMillis(time.Until(deadline)))
	msg.Header.Set(HeaderDeadline, strconv.FormatInt(deadline.UnixMilli(), 10))
	id := transport.RequestID(ctx) // Retry's, the same on every attempt
	if id == "" {
		id = transport.NewRequestID()
	}
	msg.Header.Set(HeaderRequestID, id)
	if t.inject != nil {
		// ctx holds the send span: the worker's span is its child.
		t.inject(ctx, HeaderCarrier(msg.Header))
	}

	// Before the first connection the client knows nothing of the server
	// (not even that it takes headers), so say plainly what is wrong.
	if !t.nc.IsConnected() {
		return nil, t.notConnected()
	}
	reply, err := t.nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			t.cancel(id)
		}
		return nil, t.explain(ctx, subject, model, err)
	}
	if code := reply.Header.Get(HeaderErrorCode); code != "" {
		return nil, serviceError(code, reply.Header.Get(HeaderError))
	}
	if err := proto.Unmarshal(reply.Data, resp); err != nil {
		return nil, status.Errorf(codes.Internal, "inference worker sent a reply on %s that does not decode: %v", subject, err)
	}
	return resp, nil
}

// cancel tells the workers that nobody waits for request id any more: an
// empty message on <prefix>.cancel, which every worker subscribes to. It is
// best effort and does not wait: PublishMsg only buffers, and a worker that
// has started the request finishes it anyway.
func (t *Transport) cancel(id string) {
	err := t.nc.PublishMsg(&nats.Msg{Subject: t.subjects.cancel(), Header: nats.Header{HeaderRequestID: {id}}})
	if t.noted != nil {
		t.noted(err)
	}
}

// budgetMillis writes a budget in whole milliseconds, rounded up as gRPC
// rounds grpc-timeout, so that a worker never drops work the gateway is
// still waiting for.
func budgetMillis(d time.Duration) string {
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return strconv.FormatInt(int64(max(ms, 0)), 10)
}

// explain turns a failed request into a status: UNAVAILABLE when no worker
// took it or it could not be sent (both NotSent: Retry makes it again), or
// when the connection closed under it; DEADLINE_EXCEEDED when the budget ran
// out.
func (t *Transport) explain(ctx context.Context, subject, model string, err error) error {
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		if model == "" {
			return transport.NotSent(transport.KindNoResponders, status.Newf(codes.Unavailable,
				"no inference worker is connected to NATS (no responders on %s)", subject))
		}
		if t.anyWorker(ctx) {
			return unserved{status.Newf(codes.NotFound, "unknown model %q: no inference worker serves it (no responders on %s)", model, subject)}
		}
		return transport.NotSent(transport.KindNoResponders, status.Newf(codes.Unavailable,
			"no inference worker is serving model %q (no responders on %s)", model, subject))
	case errors.Is(err, context.Canceled):
		return status.FromContextError(err).Err()
	case errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.DeadlineExceeded, "no inference worker answered %s in time", subject)
	case errors.Is(err, nats.ErrMaxPayload):
		return transport.TooLarge(fmt.Sprintf(
			"request too large: with its headers it takes more than the %d bytes the NATS server accepts in one message (its max_payload)", t.nc.MaxPayload()))
	case errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrNoServers):
		return t.notConnected()
	case errors.Is(err, nats.ErrConnectionClosed):
		return status.Error(codes.Unavailable, "the NATS connection is closed: the gateway is shutting down")
	}
	return status.Errorf(codes.Internal, "request on %s: %v", subject, err)
}

// anyWorker reports whether some worker answers on the server subjects. It
// tells an unknown model from an absent fleet: workers subscribe one subject
// per model they serve, so a model nobody has heard of gets no responders
// just as every model does when no worker runs. The first is NOT_FOUND (404,
// as over gRPC), the second UNAVAILABLE (503, retried). The probe is made
// only on that error path, and any answer, even an error, counts.
func (t *Transport) anyWorker(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	_, err := t.nc.RequestWithContext(ctx, t.subjects.server("live"), nil)
	return err == nil
}

// probeTimeout bounds anyWorker's probe: a live worker answers "live" in
// well under a millisecond, whatever its inference load.
const probeTimeout = time.Second

// notConnected is the error of a request that was never written: the
// client had no connection, and with no reconnect buffer (ReconnectBufSize
// -1) nats.go refuses a publish rather than keep it for later.
func (t *Transport) notConnected() error {
	return transport.NotSent(transport.KindNotSent, status.Newf(codes.Unavailable,
		"not connected to the NATS server (%s); reconnecting", t.where))
}

// serviceErrors maps the NATS error codes of proto/README.md to gRPC codes;
// 413 is handled apart, and codes not listed are INTERNAL.
var serviceErrors = map[string]codes.Code{
	"400": codes.InvalidArgument,
	"404": codes.NotFound,
	"429": codes.ResourceExhausted,
	"503": codes.Unavailable,
	"504": codes.DeadlineExceeded,
	"500": codes.Internal,
}

// serviceError is the status of a worker's error reply; the worker's
// message passes through as it wrote it.
func serviceError(code, msg string) error {
	code = strings.TrimSpace(code)
	if msg == "" {
		msg = "inference worker answered with error code " + code
	}
	if code == "413" {
		return transport.TooLarge(msg)
	}
	if c, ok := serviceErrors[code]; ok {
		return status.Error(c, msg)
	}
	return status.Error(codes.Internal, msg)
}

func tracerProvider(tp trace.TracerProvider) trace.TracerProvider {
	if tp == nil {
		return otel.GetTracerProvider()
	}
	return tp
}
