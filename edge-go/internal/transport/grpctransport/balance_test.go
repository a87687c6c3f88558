package grpctransport

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/testkit"
	"github.com/tandem-ml/tandem/edge-go/internal/tlsconf"
	"github.com/tandem-ml/tandem/edge-go/internal/tlsconf/tlstest"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
)

// worker is an inference service that counts its ModelInfer calls and
// serves grpc.health.v1 as the Python one does.
type worker struct {
	pb.UnimplementedGRPCInferenceServiceServer
	addr   string
	calls  atomic.Int64
	health *health.Server
	srv    *grpc.Server
	opts   []grpc.ServerOption
}

func (w *worker) ModelInfer(_ context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	w.calls.Add(1)
	return &pb.ModelInferResponse{ModelName: req.GetModelName()}, nil
}

// startWorker serves on addr ("127.0.0.1:0" for a fresh port).
func startWorker(t *testing.T, addr string, opts ...grpc.ServerOption) *worker {
	t.Helper()
	w := &worker{opts: opts}
	w.listen(t, addr)
	return w
}

func (w *worker) listen(t *testing.T, addr string) {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	w.addr = lis.Addr().String()
	w.srv = grpc.NewServer(w.opts...)
	w.health = health.NewServer()
	w.health.SetServingStatus(HealthService, healthpb.HealthCheckResponse_SERVING)
	pb.RegisterGRPCInferenceServiceServer(w.srv, w)
	healthpb.RegisterHealthServer(w.srv, w.health)
	srv := w.srv
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
}

func balanced(t *testing.T, addr string, tlsCfg *tls.Config) transport.Client {
	t.Helper()
	tr, err := New(Config{Addr: addr, TLS: tlsCfg, MaxMessageBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return transport.NewClient(tr)
}

// infer makes n calls and fails the test on any error.
func infer(t *testing.T, c transport.Client, n int) {
	t.Helper()
	for range n {
		if _, err := c.ModelInfer(t.Context(), &pb.ModelInferRequest{ModelName: "m"}); err != nil {
			t.Fatalf("ModelInfer: %v", err)
		}
	}
}

// bothServe waits until a batch of calls reaches both workers.
func bothServe(t *testing.T, c transport.Client, a, b *worker, what string) {
	t.Helper()
	testkit.Eventually(t, what, func() bool {
		a0, b0 := a.calls.Load(), b.calls.Load()
		infer(t, c, 20)
		return a.calls.Load() > a0 && b.calls.Load() > b0
	})
}

// Calls are spread over both workers; with one stopped they all go to the
// other, none failing once the balancer knows; restarted, it serves again.
func TestBalancesAndFailsOver(t *testing.T) {
	a, b := startWorker(t, "127.0.0.1:0"), startWorker(t, "127.0.0.1:0")
	c := balanced(t, a.addr+", "+b.addr, nil)
	bothServe(t, c, a, b, "both workers to get calls")

	a.srv.Stop()
	// The first call after the stop may meet the dying connection; from the
	// moment the balancer has dropped it, every call succeeds on b.
	testkit.Eventually(t, "calls to go to b alone", func() bool {
		_, err := c.ModelInfer(t.Context(), &pb.ModelInferRequest{ModelName: "m"})
		return err == nil
	})
	before := a.calls.Load()
	infer(t, c, 50)
	if a.calls.Load() != before {
		t.Errorf("the stopped worker got calls")
	}

	a.listen(t, a.addr)
	bothServe(t, c, a, b, "the restarted worker to serve again")
}

// A worker that reports NOT_SERVING (loading, draining) leaves the rotation
// while its connection stays up, and is back once SERVING.
func TestNotServingLeavesRotation(t *testing.T) {
	a, b := startWorker(t, "127.0.0.1:0"), startWorker(t, "127.0.0.1:0")
	c := balanced(t, a.addr+","+b.addr, nil)
	bothServe(t, c, a, b, "both workers to get calls")

	a.health.SetServingStatus(HealthService, healthpb.HealthCheckResponse_NOT_SERVING)
	testkit.Eventually(t, "a to leave the rotation", func() bool {
		before := a.calls.Load()
		infer(t, c, 20)
		return a.calls.Load() == before
	})
	a.health.SetServingStatus(HealthService, healthpb.HealthCheckResponse_SERVING)
	bothServe(t, c, a, b, "a to serve again")
}

// A dns:/// target is balanced over every address the name resolves to.
func TestDNSTarget(t *testing.T) {
	a := startWorker(t, "127.0.0.1:0")
	_, port, _ := net.SplitHostPort(a.addr)
	c := balanced(t, "dns:///localhost:"+port, nil)
	infer(t, c, 5)
	if a.calls.Load() != 5 {
		t.Errorf("worker got %d calls, want 5", a.calls.Load())
	}
}

// mTLS works with a list: each worker is verified on its own connection.
func TestBalancedMutualTLS(t *testing.T) {
	p := tlstest.New(t)
	serverTLS, err := tlsconf.Server(p.ServerCert, p.ServerKey, p.CA)
	if err != nil {
		t.Fatal(err)
	}
	creds := grpc.Creds(credentials.NewTLS(serverTLS))
	a, b := startWorker(t, "127.0.0.1:0", creds), startWorker(t, "127.0.0.1:0", creds)
	for _, name := range []string{tlstest.ServerName, ""} { // "": each address's host, 127.0.0.1
		clientTLS, err := tlsconf.Client(p.CA, p.ClientCert, p.ClientKey, name)
		if err != nil {
			t.Fatal(err)
		}
		bothServe(t, balanced(t, a.addr+","+b.addr, clientTLS), a, b, "both workers over mTLS")
	}
}

func TestTargetFor(t *testing.T) {
	tests := []struct {
		addr, target string
		balanced     bool
		err          bool
	}{
		{"127.0.0.1:50051", "127.0.0.1:50051", false, false},
		{"dns:///inference.ns.svc:50051", "dns:///inference.ns.svc:50051", true, false},
		{"10.0.0.1:1, 10.0.0.2:1", staticScheme + ":///workers", true, false},
		{"10.0.0.1:1,", staticScheme + ":///workers", true, false},
		{"10.0.0.1,10.0.0.2:1", "", false, true},
		{",", "", false, true},
	}
	for _, tt := range tests {
		target, opts, err := targetFor(tt.addr)
		if (err != nil) != tt.err || target != tt.target || (len(opts) > 0) != tt.balanced {
			t.Errorf("targetFor(%q) = %q, %d options, %v", tt.addr, target, len(opts), err)
		}
		if err != nil && !strings.Contains(err.Error(), tt.addr) {
			t.Errorf("error %v does not name %q", err, tt.addr)
		}
	}
}
