// Package edgegrpc serves the Open Inference Protocol's gRPC API (v2) to
// clients, beside the REST API: Triton's and KServe's generated clients work
// against it unchanged. The model RPCs are forwarded through the configured
// transport.Invoker with the same limits, deadline and error mapping as
// REST; the standard gRPC health service is served too.
package edgegrpc

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/auth"
	"github.com/tandem-ml/tandem/edge-go/internal/edge"
	"github.com/tandem-ml/tandem/edge-go/internal/graceful"
	"github.com/tandem-ml/tandem/edge-go/internal/limit"
	"github.com/tandem-ml/tandem/edge-go/internal/metrics"
	"github.com/tandem-ml/tandem/edge-go/internal/oiperr"
	"github.com/tandem-ml/tandem/edge-go/internal/servertiming"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
)

// Config is what the server needs; every field must be set.
type Config struct {
	Transport transport.Invoker
	Logger    *slog.Logger
	// Name and Version are what ServerMetadata reports: the gateway's, as
	// GET /v2 does.
	Name, Version string
	// Extensions are the OIP extensions ServerMetadata advertises: the
	// gateway's, as GET /v2 lists them.
	Extensions []string
	// Timeout bounds every call (--timeout), on top of the client's own
	// deadline (grpc-timeout).
	Timeout time.Duration
	// MaxRecvBytes bounds a request message; a larger one is refused with
	// RESOURCE_EXHAUSTED before it is read. MaxSendBytes bounds a response.
	MaxRecvBytes, MaxSendBytes int
	// Metrics counts the OIP calls (health checks aside) and every
	// refusal; nil: none.
	Metrics *metrics.Metrics
	// Keys are the API keys clients must present; nil or empty: none.
	Keys *auth.Keys
	// Rate limits each client's calls (per key, or per IP without keys);
	// nil: no limit.
	Rate *limit.Rate
	// Draining reports that the gateway is shutting down: ServerReady is
	// then not ready (and Drain has set the health service NOT_SERVING)
	// while calls are still served. nil: never.
	Draining func() bool
	// ServerOptions are added to the server's, such as the telemetry's (a
	// SERVER span per OIP call).
	ServerOptions []grpc.ServerOption
}

// Server is the edge gRPC server.
type Server struct {
	grpc   *grpc.Server
	health *health.Server
	log    *slog.Logger
}

// New builds the server; Serve runs it.
func New(cfg Config) *Server {
	// The given options first: their interceptors (the trace context) run
	// before the log line's.
	srv := grpc.NewServer(append(slices.Clip(cfg.ServerOptions),
		grpc.MaxRecvMsgSize(cfg.MaxRecvBytes),
		grpc.MaxSendMsgSize(cfg.MaxSendBytes),
		// Outermost first: the log line and count see what recovery answered.
		grpc.ChainUnaryInterceptor(
			observeCalls(edge.Observer{Log: cfg.Logger, Metrics: cfg.Metrics}),
			recoverPanics(cfg.Logger),
			cfg.Keys.UnaryServerInterceptor(auth.GRPCConfig{
				ModelOf: modelOf,
				Refused: func(_ context.Context, model string, o auth.Outcome) { cfg.Metrics.Refused(model, o.String()) },
			}),
			rateLimit(cfg.Rate, cfg.Metrics),
			withDeadline(cfg.Timeout),
		),
		grpc.ChainStreamInterceptor(cfg.Keys.StreamServerInterceptor(auth.GRPCConfig{})),
	)...)
	pb.RegisterGRPCInferenceServiceServer(srv, &service{
		tr:       transport.NewClient(cfg.Transport),
		meta:     &pb.ServerMetadataResponse{Name: cfg.Name, Version: cfg.Version, Extensions: cfg.Extensions},
		draining: cfg.Draining,
	})
	hs := health.NewServer() // SERVING for "" until Shutdown
	hs.SetServingStatus(pb.GRPCInferenceService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	return &Server{grpc: srv, health: hs, log: cfg.Logger}
}

// Drain reports NOT_SERVING on the health service at once, while calls
// are still served: the first step of a shutdown.
func (s *Server) Drain() { s.health.Shutdown() }

// Serve serves on ln until Shutdown or Close (graceful.Serve runs it).
func (s *Server) Serve(ln net.Listener) error { return graceful.GRPC(s.grpc).Serve(ln) }

// Shutdown reports NOT_SERVING on the health service, stops accepting
// connections and waits for the calls in flight until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.health.Shutdown()
	return graceful.GRPC(s.grpc).Shutdown(ctx)
}

// Close cuts off every call, health Watch streams among them, which never
// end by themselves.
func (s *Server) Close() error { return graceful.GRPC(s.grpc).Close() }

// service implements the six OIP RPCs and five of Triton's extensions.
type service struct {
	pb.UnimplementedGRPCInferenceServiceServer
	tr       transport.Client
	meta     *pb.ServerMetadataResponse
	draining func() bool
}

// ServerLive answers for the gateway process alone, as GET /v2/health/live
// does: restarting the gateway would not bring back a worker that is down.
func (s *service) ServerLive(context.Context, *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	return &pb.ServerLiveResponse{Live: true}, nil
}

// ServerReady answers for the whole path: ready when a worker is, and
// not while the gateway drains.
func (s *service) ServerReady(ctx context.Context, req *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
	if s.draining != nil && s.draining() {
		return &pb.ServerReadyResponse{Ready: false}, nil
	}
	return forward(ctx, s.tr.ServerReady, req)
}

func (s *service) ModelReady(ctx context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	return forward(ctx, s.tr.ModelReady, req)
}

// ServerMetadata describes the gateway, as GET /v2 does.
func (s *service) ServerMetadata(context.Context, *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error) {
	return s.meta, nil
}

func (s *service) ModelMetadata(ctx context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	return forward(ctx, s.tr.ModelMetadata, req)
}

// ModelInfer forwards the call and reports where its time went in the
// server-timing trailer (package servertiming).
func (s *service) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	resp, timing, err := edge.Infer(ctx, s.tr, callStart(ctx), req)
	if err != nil {
		return nil, oiperr.ToGRPC(err)
	}
	_ = grpc.SetTrailer(ctx, metadata.Pairs(strings.ToLower(servertiming.Header), timing.Value()))
	return resp, nil
}

// ModelConfig, ModelStatistics and the repository's RPCs are Triton's
// extensions, forwarded as they are. The auth interceptor has checked the
// model scope of those that name a model (ModelStatistics of every model,
// RepositoryIndex: any key). A load or unload is made at most once: Retry
// sends a call again only when no worker received it.

func (s *service) ModelConfig(ctx context.Context, req *pb.ModelConfigRequest) (*pb.ModelConfigResponse, error) {
	return forward(ctx, s.tr.ModelConfig, req)
}

func (s *service) ModelStatistics(ctx context.Context, req *pb.ModelStatisticsRequest) (*pb.ModelStatisticsResponse, error) {
	return forward(ctx, s.tr.ModelStatistics, req)
}

func (s *service) RepositoryIndex(ctx context.Context, req *pb.RepositoryIndexRequest) (*pb.RepositoryIndexResponse, error) {
	return forward(ctx, s.tr.RepositoryIndex, req)
}

func (s *service) RepositoryModelLoad(ctx context.Context, req *pb.RepositoryModelLoadRequest) (*pb.RepositoryModelLoadResponse, error) {
	return forward(ctx, s.tr.RepositoryModelLoad, req)
}

func (s *service) RepositoryModelUnload(ctx context.Context, req *pb.RepositoryModelUnloadRequest) (*pb.RepositoryModelUnloadResponse, error) {
	return forward(ctx, s.tr.RepositoryModelUnload, req)
}

// forward makes one call through the transport. Status codes pass through;
// other errors are mapped by oiperr.ToGRPC (a request too large is
// RESOURCE_EXHAUSTED).
func forward[Req, Resp any](ctx context.Context, call func(context.Context, Req) (Resp, error), req Req) (Resp, error) {
	resp, err := call(ctx, req)
	if err != nil {
		var zero Resp
		return zero, oiperr.ToGRPC(err)
	}
	return resp, nil
}

// healthService prefixes the health checks' methods, which are not
// counted: probes would drown the calls that matter.
const healthService = "/grpc.health.v1."

// startKey holds when a call arrived, for its Server-Timing.
type startKey struct{}

func callStart(ctx context.Context) time.Time {
	if start, ok := ctx.Value(startKey{}).(time.Time); ok {
		return start
	}
	return time.Now()
}

// observeCalls counts and logs every OIP call through o, once it is
// answered; the health checks are neither.
func observeCalls(o edge.Observer) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if strings.HasPrefix(info.FullMethod, healthService) {
			return handler(ctx, req)
		}
		start := o.Begin()
		resp, err := handler(context.WithValue(ctx, startKey{}, start), req)
		st := status.Convert(err)
		model := modelOf(req)
		o.End(ctx, start, edge.Call{
			Msg: "rpc",
			Attrs: []slog.Attr{
				slog.String("method", info.FullMethod),
				slog.String("code", st.Code().String()),
			},
			Model:  model,
			Code:   metrics.GRPCCode(st.Code()),
			Failed: err != nil,
			Err:    errMessage(st),
		})
		return resp, err
	}
}

func errMessage(st *status.Status) string {
	if st.Code() == codes.OK {
		return ""
	}
	return st.Message()
}

// recoverPanics answers a call whose handler panicked with INTERNAL
// "internal error" and logs the panic with its stack: one bad request never
// takes the gateway down.
func recoverPanics(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if v := recover(); v != nil {
				edge.Panicked(ctx, log, info.FullMethod, v)
				resp, err = nil, status.Error(codes.Internal, edge.InternalError)
			}
		}()
		return handler(ctx, req)
	}
}

// withDeadline bounds every call by timeout (--timeout), or sooner when
// the client's grpc-timeout says so (edge.WithTimeout).
func withDeadline(timeout time.Duration) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, cancel := edge.WithTimeout(ctx, timeout, 0)
		defer cancel()
		return handler(ctx, req)
	}
}

// modelOf is the model an OIP request names, "" for the server's calls.
func modelOf(req any) string {
	if m, ok := req.(proto.Message); ok {
		return transport.ModelOf(m)
	}
	return ""
}

// rateLimit refuses, with RESOURCE_EXHAUSTED and a retry delay, a client
// over its rate: per API key when the call carries one (auth.KeyID), else
// per client IP. Health checks are never limited.
func rateLimit(rl *limit.Rate, m *metrics.Metrics) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !rl.Enabled() || auth.OpenGRPCHealth(info.FullMethod) {
			return handler(ctx, req)
		}
		client, ok := auth.KeyID(ctx)
		if !ok {
			if p, found := peer.FromContext(ctx); found {
				client = p.Addr.String()
				if host, _, err := net.SplitHostPort(client); err == nil {
					client = host
				}
			}
		}
		if err := rl.Err(client); err != nil {
			m.Refused(modelOf(req), limit.ReasonRateLimited)
			return nil, err
		}
		return handler(ctx, req)
	}
}
