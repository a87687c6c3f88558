// Package grpctransport implements transport.Invoker over gRPC: one
// long-lived client connection to the inference service's OIP endpoint,
// balanced round robin over several workers when the address names more
// than one.
package grpctransport

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	// Registers client-side health checking, which healthCheckConfig asks for.
	_ "google.golang.org/grpc/health"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-ml/tandem/edge-go/internal/transport"
)

// Connection tuning. The service is a sidecar or a neighbour, so these are
// fixed for a fast local hop rather than exposed as settings.
const (
	// maxReconnectDelay caps the reconnect backoff: once the service is back
	// after a restart, the gateway is serving again within about a second.
	maxReconnectDelay = time.Second
	// minConnectTimeout bounds one connection attempt, so that a host that
	// drops packets is given up on and retried rather than waited for.
	minConnectTimeout = 5 * time.Second
	// keepaliveTime and keepaliveTimeout find a dead connection (a peer gone
	// without a FIN) while calls are waiting on it. Pings are sent only while
	// calls are in flight: servers refuse idle pings more often than every
	// five minutes by default.
	keepaliveTime    = 30 * time.Second
	keepaliveTimeout = 10 * time.Second
)

// HealthService is the name the workers report in grpc.health.v1, the
// OIP service's full name, as the Python service registers it.
const HealthService = "inference.GRPCInferenceService"

// balancedConfig spreads calls round robin over every address that is
// connected and reports HealthService SERVING: a worker that is gone,
// loading or draining (NOT_SERVING) leaves the rotation, and returns to it
// once it serves again.
const balancedConfig = `{"loadBalancingConfig":[{"round_robin":{}}],"healthCheckConfig":{"serviceName":"` + HealthService + `"}}`

// staticScheme is the scheme of the in-process resolver for a list of
// addresses.
const staticScheme = "tandem-static"

// Config says where the service is.
type Config struct {
	// Addr is the service's gRPC target: host:port (one worker, as before:
	// pick_first, no health checking); a comma-separated list of host:port
	// (several workers); or any grpc-go target URI, dns:///name:port (a
	// Kubernetes headless Service) being balanced over what it resolves to.
	Addr string
	// TLS, when set, secures the hop (mTLS when it holds a certificate);
	// nil: plain TCP, for a loopback or private hop.
	TLS *tls.Config
	// MaxMessageBytes is the largest message sent or received; the service
	// must accept at least as much.
	MaxMessageBytes int
	// DialOptions are added to the connection's, such as the telemetry's
	// (a CLIENT span per call, hence per attempt of a retried one, and the
	// trace context carried to the service).
	DialOptions []grpc.DialOption
}

// Transport is a transport.Invoker over one gRPC client connection.
type Transport struct {
	addr string
	conn *grpc.ClientConn
}

var _ transport.Invoker = (*Transport)(nil)

// New creates the client connection. It performs no I/O: the connection is
// made on the first call and remade after the service restarts.
func New(cfg Config) (*Transport, error) {
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS)
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  100 * time.Millisecond,
				Multiplier: backoff.DefaultConfig.Multiplier,
				Jitter:     backoff.DefaultConfig.Jitter,
				MaxDelay:   maxReconnectDelay,
			},
			MinConnectTimeout: minConnectTimeout,
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                keepaliveTime,
			Timeout:             keepaliveTimeout,
			PermitWithoutStream: false,
		}),
		// Calls stay fail-fast (grpc-go's default, no WaitForReady): with the
		// service down a call is UNAVAILABLE at once instead of queuing until
		// its deadline.
		grpc.WithDefaultCallOptions(
			grpc.MaxCallSendMsgSize(cfg.MaxMessageBytes),
			grpc.MaxCallRecvMsgSize(cfg.MaxMessageBytes),
		),
	}, cfg.DialOptions...)
	target, balanced, err := targetFor(cfg.Addr)
	if err != nil {
		return nil, err
	}
	opts = append(opts, balanced...)
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("grpc transport: client for %q: %w", cfg.Addr, err)
	}
	return &Transport{addr: cfg.Addr, conn: conn}, nil
}

// targetFor is the target to dial for addr and the options that balance
// over it. One plain host:port keeps pick_first without health checking:
// with a single worker there is nowhere else to send a call, and a call to
// a worker reporting NOT_SERVING gets the worker's own answer.
func targetFor(addr string) (string, []grpc.DialOption, error) {
	if strings.Contains(addr, ",") {
		var state resolver.State
		for a := range strings.SplitSeq(addr, ",") {
			a = strings.TrimSpace(a)
			if a == "" {
				continue
			}
			host, _, err := net.SplitHostPort(a)
			if err != nil || host == "" {
				return "", nil, fmt.Errorf("grpc transport: %q in %q is not host:port", a, addr)
			}
			// ServerName is each worker's TLS name and :authority, as its
			// host alone would be; --inference-tls-server-name still wins.
			state.Addresses = append(state.Addresses, resolver.Address{Addr: a, ServerName: host})
		}
		if len(state.Addresses) == 0 {
			return "", nil, fmt.Errorf("grpc transport: no address in %q", addr)
		}
		r := manual.NewBuilderWithScheme(staticScheme)
		r.InitialState(state)
		return staticScheme + ":///workers", []grpc.DialOption{
			grpc.WithResolvers(r),
			grpc.WithDefaultServiceConfig(balancedConfig),
		}, nil
	}
	if strings.Contains(addr, ":///") {
		return addr, []grpc.DialOption{grpc.WithDefaultServiceConfig(balancedConfig)}, nil
	}
	return addr, nil, nil
}

// Close closes the client connection; calls in flight fail with CANCELED.
func (t *Transport) Close() error {
	if err := t.conn.Close(); err != nil {
		return fmt.Errorf("grpc transport: close: %w", err)
	}
	return nil
}

// Invoke makes one RPC; the context's deadline travels as grpc-timeout, and
// its end (a client gone, the deadline) cancels the RPC on the service too
// (RST_STREAM), which grpc-go does by itself.
func (t *Transport) Invoke(ctx context.Context, rpc transport.RPC, req proto.Message) (proto.Message, error) {
	resp := rpc.NewResponse()
	var p peer.Peer
	if err := t.conn.Invoke(ctx, rpc.FullMethod(), req, resp, grpc.Peer(&p)); err != nil {
		return nil, t.explain(err, p.Addr == nil)
	}
	return resp, nil
}

// explain names the service in the errors that are about reaching it, so
// that a 503 or 504 says what was down or slow. The service's own errors
// (a bad input, an unknown model) pass through as it wrote them.
//
// noStream says that the call never got a stream on a connection: grpc-go
// fills the Peer call option only from the stream of the last attempt, and
// a fail-fast call finds none when no connection is ready (refused,
// TRANSIENT_FAILURE, a TLS handshake failed). Such a call wrote nothing to
// any server, so its UNAVAILABLE is NotSent and Retry makes it again. Every
// other UNAVAILABLE (a connection lost mid-call, GOAWAY, the service's own
// "shutting down") had a stream and may have run. Streams that were opened
// but never processed are what grpc-go already retries transparently.
func (t *Transport) explain(err error, noStream bool) error {
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unavailable:
		st := status.Newf(codes.Unavailable, "inference service at %s is unavailable: %s", t.addr, st.Message())
		if noStream {
			return transport.NotSent(transport.KindNotSent, st)
		}
		return st.Err()
	case codes.DeadlineExceeded:
		return status.Errorf(codes.DeadlineExceeded, "inference service at %s did not answer in time: %s", t.addr, st.Message())
	}
	return err
}
