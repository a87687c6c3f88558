package auth

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// GRPCConfig says how the gRPC interceptors see a call.
type GRPCConfig struct {
	// ModelOf names the model a request is for ("" for none); nil uses the
	// request's GetModelName method, which every OIP request with a model
	// has.
	ModelOf func(req any) string
	// Open reports methods that need no key; nil uses OpenGRPCHealth.
	Open func(fullMethod string) bool
	// Refused, when set, is told of every refusal (see HTTPConfig.Refused).
	Refused func(ctx context.Context, model string, o Outcome)
}

// UnaryServerInterceptor refuses calls without an allowed key with
// UNAUTHENTICATED or PERMISSION_DENIED, and puts the key's ID in the
// context of the others (see KeyID). With auth disabled it lets every call
// through. Put it first in grpc.ChainUnaryInterceptor, after panic recovery
// and before rate limiting.
func (k *Keys) UnaryServerInterceptor(cfg GRPCConfig) grpc.UnaryServerInterceptor {
	cfg = k.grpcDefaults(cfg)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !k.Enabled() || cfg.Open(info.FullMethod) {
			return handler(ctx, req)
		}
		ctx, err := k.checkGRPC(ctx, cfg, cfg.ModelOf(req))
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streams. A stream's
// model is not known when it opens, so a scoped key is checked as for model
// "": a stream handler that serves models must check each with Check.
func (k *Keys) StreamServerInterceptor(cfg GRPCConfig) grpc.StreamServerInterceptor {
	cfg = k.grpcDefaults(cfg)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !k.Enabled() || cfg.Open(info.FullMethod) {
			return handler(srv, ss)
		}
		ctx, err := k.checkGRPC(ss.Context(), cfg, "")
		if err != nil {
			return err
		}
		return handler(srv, &keyedStream{ServerStream: ss, ctx: ctx})
	}
}

func (k *Keys) grpcDefaults(cfg GRPCConfig) GRPCConfig {
	if cfg.ModelOf == nil {
		cfg.ModelOf = func(req any) string {
			if m, ok := req.(interface{ GetModelName() string }); ok {
				return m.GetModelName()
			}
			return ""
		}
	}
	if cfg.Open == nil {
		cfg.Open = OpenGRPCHealth
	}
	return cfg
}

func (k *Keys) checkGRPC(ctx context.Context, cfg GRPCConfig, model string) (context.Context, error) {
	var authorization string
	if v := metadata.ValueFromIncomingContext(ctx, "authorization"); len(v) > 0 {
		authorization = v[0]
	}
	id, err := k.Check(authorization, model)
	if err != nil {
		if cfg.Refused != nil {
			cfg.Refused(ctx, model, OutcomeOf(err))
		}
		return ctx, err
	}
	return WithKeyID(ctx, id), nil
}

type keyedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *keyedStream) Context() context.Context { return s.ctx }

// OpenGRPCHealth reports the health checks that need no key: the standard
// grpc.health.v1 service and OIP's ServerLive and ServerReady (the gRPC
// twins of /v2/health/live and /v2/health/ready).
func OpenGRPCHealth(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/") ||
		fullMethod == "/inference.GRPCInferenceService/ServerLive" ||
		fullMethod == "/inference.GRPCInferenceService/ServerReady"
}
