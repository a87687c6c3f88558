package auth

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// TestGRPCEndToEnd sends the key through a real gRPC client and server, so
// the metadata travels as the `authorization` header does on the wire.
func TestGRPCEndToEnd(t *testing.T) {
	k := testKeys(t)
	ln := bufconn.Listen(1 << 20)
	// Nothing open, so the health check stands in for an OIP call.
	srv := grpc.NewServer(grpc.UnaryInterceptor(k.UnaryServerInterceptor(GRPCConfig{Open: func(string) bool { return false }})))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := healthpb.NewHealthClient(conn)

	for _, tt := range []struct {
		name, header string
		want         codes.Code
	}{
		{"no key", "", codes.Unauthenticated},
		{"wrong key", "Bearer nope", codes.Unauthenticated},
		{"right key", "Bearer " + keyAll, codes.OK},
		{"lower-case scheme", "bearer " + keyAll, codes.OK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.header != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", tt.header)
			}
			_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
			if c := status.Code(err); c != tt.want {
				t.Errorf("code %v (%v), want %v", c, err, tt.want)
			}
		})
	}
}
