// Package edgegrpc serves the Open Inference Protocol's gRPC API (v2) to
// clients, beside the REST API: Triton's and KServe's generated clients work
// against it unchanged. The model RPCs are forwarded through the configured
// transport.Transport with the same limits, deadline and error mapping as
// REST; the standard gRPC health service is served too.
package edgegrpc

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/metrics"
	"github.com/tandem-ml/tandem/edge-go/internal/oiperr"
	"github.com/tandem-ml/tandem/edge-go/internal/servertiming"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
)

// Config is what the server needs; every field must be set.
type Config struct {
	Transport transport.Transport
	Logger    *slog.Logger
	// Name and Version are what ServerMetadata reports: the gateway's, as
	// GET /v2 does.
	Name, Version string
	// Extensions are the OIP extensions ServerMetadata advertises: the
	// gateway's, as GET /v2 lists them.
	Extensions []string
	// Timeout bounds every call, on top of the client's own deadline.
	Timeout time.Duration
	// MaxRecvBytes bounds a request message; a larger one is refused with
	// RESOURCE_EXHAUSTED before it is read. MaxSendBytes bounds a response.
	MaxRecvBytes, MaxSendBytes int
	// Metrics counts the OIP calls (health checks aside); nil: none.
	Metrics *metrics.Metrics
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
		grpc.ChainUnaryInterceptor(observeCalls(cfg.Logger, cfg.Metrics)),
	)...)
	pb.RegisterGRPCInferenceServiceServer(srv, &service{
		tr:      cfg.Transport,
		timeout: cfg.Timeout,
		meta:    &pb.ServerMetadataResponse{Name: cfg.Name, Version: cfg.Version, Extensions: cfg.Extensions},
	})
	hs := health.NewServer() // SERVING for "" until Shutdown
	hs.SetServingStatus(pb.GRPCInferenceService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	return &Server{grpc: srv, health: hs, log: cfg.Logger}
}

// Serve serves on ln until ctx ends, then reports NOT_SERVING on the health
// service, stops accepting connections and gives the calls in flight up to
// shutdownTimeout to finish; whatever is left after that is cut off (health
// Watch streams among them, which never end by themselves) and reported.
func (s *Server) Serve(ctx context.Context, ln net.Listener, shutdownTimeout time.Duration) error {
	served := make(chan error, 1)
	go func() { served <- s.grpc.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve grpc on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	s.log.Info("shutting down grpc: finishing calls in flight", "timeout", shutdownTimeout)
	s.health.Shutdown()
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(shutdownTimeout)
	defer timer.Stop()
	var err error
	select {
	case <-stopped:
	case <-timer.C:
		s.grpc.Stop() // cut off what did not finish in time
		<-stopped
		err = fmt.Errorf("shut down grpc: calls still in flight after %v were cut off", shutdownTimeout)
	}
	if serveErr := <-served; serveErr != nil && err == nil {
		err = fmt.Errorf("serve grpc on %s: %w", ln.Addr(), serveErr)
	}
	return err
}

// service implements the six OIP RPCs.
type service struct {
	pb.UnimplementedGRPCInferenceServiceServer
	tr      transport.Transport
	timeout time.Duration
	meta    *pb.ServerMetadataResponse
}

// ServerLive answers for the gateway process alone, as GET /v2/health/live
// does: restarting the gateway would not bring back a worker that is down.
func (s *service) ServerLive(context.Context, *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	return &pb.ServerLiveResponse{Live: true}, nil
}

// ServerReady answers for the whole path: ready when a worker is.
func (s *service) ServerReady(ctx context.Context, req *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
	return forward(ctx, s, s.tr.ServerReady, req)
}

func (s *service) ModelReady(ctx context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	return forward(ctx, s, s.tr.ModelReady, req)
}

// ServerMetadata describes the gateway, as GET /v2 does.
func (s *service) ServerMetadata(context.Context, *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error) {
	return s.meta, nil
}

func (s *service) ModelMetadata(ctx context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	return forward(ctx, s, s.tr.ModelMetadata, req)
}

// ModelInfer forwards the call and reports where its time went in the
// server-timing trailer (package servertiming).
func (s *service) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	start := time.Now()
	var hop time.Duration
	resp, err := forward(ctx, s, func(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		hopStart := time.Now()
		defer func() { hop = time.Since(hopStart) }()
		return s.tr.ModelInfer(ctx, req)
	}, req)
	if err != nil {
		return nil, err
	}
	reported, ok := servertiming.Take(resp)
	timing := servertiming.Value(time.Since(start), hop, reported, ok)
	_ = grpc.SetTrailer(ctx, metadata.Pairs(strings.ToLower(servertiming.Header), timing))
	return resp, nil
}

// forward makes one call through the transport under min(the client's
// deadline, the timeout). Status codes pass through; other errors are
// mapped by oiperr.ToGRPC (a request too large is RESOURCE_EXHAUSTED).
func forward[Req, Resp any](ctx context.Context, s *service, call func(context.Context, Req) (Resp, error), req Req) (Resp, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
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

// observeCalls counts every OIP call in the metrics and logs one line per
// call once it is answered: at debug when it succeeded and at info when it
// failed, as the REST API does.
func observeCalls(log *slog.Logger, m *metrics.Metrics) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		counted := m != nil && !strings.HasPrefix(info.FullMethod, healthService)
		if counted {
			m.Begin()
		}
		resp, err := handler(ctx, req)
		elapsed := time.Since(start)
		model := ""
		if named, ok := req.(interface{ GetName() string }); ok {
			model = named.GetName()
		} else if infer, ok := req.(*pb.ModelInferRequest); ok {
			model = infer.GetModelName()
		}
		code := status.Code(err)
		if counted {
			m.End(ctx, model, metrics.GRPCCode(code), elapsed)
		}
		level := slog.LevelDebug
		if err != nil {
			level = slog.LevelInfo
		}
		if !log.Enabled(ctx, level) {
			return resp, err
		}
		st := status.Convert(err)
		attrs := []slog.Attr{
			slog.String("method", info.FullMethod),
			slog.String("code", code.String()),
			slog.Float64("duration_ms", float64(elapsed)/float64(time.Millisecond)),
		}
		if model != "" {
			attrs = append(attrs, slog.String("model", model))
		}
		if err != nil {
			attrs = append(attrs, slog.String("error", st.Message()))
		}
		log.LogAttrs(ctx, level, "rpc", attrs...)
		return resp, err
	}
}
