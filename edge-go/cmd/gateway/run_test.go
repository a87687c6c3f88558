package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/config"
	"github.com/tandem-ml/tandem/edge-go/internal/oiptest"
	"github.com/tandem-ml/tandem/edge-go/internal/testkit"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/transporttest"
)

// gateway is a gateway that startServe runs.
type gateway struct {
	httpAddr, grpcAddr string
	shutdown           func()
	served             <-chan error
}

// startServe runs the gateway with the given flags, its REST and edge gRPC
// listeners on free loopback ports, until shutdown is called; serve's
// result arrives on served.
func startServe(t *testing.T, args ...string) *gateway {
	t.Helper()
	// No drain delay unless a test asks: the listeners close at once.
	cfg, err := config.Load(append([]string{"--drain-delay=0"}, args...), testkit.Env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var ls listeners
	for _, ln := range []*net.Listener{&ls.http, &ls.grpc} {
		if *ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	result := make(chan error, 1)
	go func() { result <- serve(ctx, slog.New(slog.DiscardHandler), cfg, ls) }()
	return &gateway{ls.http.Addr().String(), ls.grpc.Addr().String(), cancel, result}
}

// On shutdown the gateway stops accepting connections at once, yet answers
// the request it is in the middle of, and only then returns.
func TestShutdownFinishesRequestInFlight(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	backend := oiptest.Start(t, "127.0.0.1:0", &transporttest.Double{
		ModelInferFunc: func(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
			close(arrived)
			<-release
			return &pb.ModelInferResponse{ModelName: req.GetModelName(), ModelVersion: "1"}, nil
		},
	})

	gw := startServe(t, "--inference-addr", backend.Addr, "--shutdown-timeout", "10s")
	addr, shutdown, served := gw.httpAddr, gw.shutdown, gw.served

	type answer struct {
		status int
		body   string
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := http.Post("http://"+addr+"/v2/models/digits/infer", "application/json",
			strings.NewReader(`{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}`))
		if err != nil {
			answered <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		answered <- answer{resp.StatusCode, string(b), err}
	}()
	<-arrived
	shutdown()

	// New connections are refused while the request in flight is pending.
	testkit.Eventually(t, "the listener to close", func() bool {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.Close()
		}
		return err != nil
	})
	select {
	case err := <-served:
		t.Fatalf("serve returned %v with a request still in flight", err)
	default:
	}

	close(release)
	a := <-answered
	if a.err != nil || a.status != 200 || !strings.Contains(a.body, `"model_name":"digits"`) {
		t.Errorf("request in flight got %d %q, %v; want 200", a.status, a.body, a.err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not return after the last request was answered")
	}
}

// A request that outlasts --shutdown-timeout is cut off, and serve says so.
func TestShutdownTimeout(t *testing.T) {
	arrived := make(chan struct{})
	backend := oiptest.Start(t, "127.0.0.1:0", &transporttest.Double{
		ModelInferFunc: func(ctx context.Context, _ *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
			close(arrived)
			<-ctx.Done()
			return nil, ctx.Err()
		},
	})
	gw := startServe(t, "--inference-addr", backend.Addr, "--shutdown-timeout", "100ms")
	addr, shutdown, served := gw.httpAddr, gw.shutdown, gw.served
	go func() {
		resp, err := http.Post("http://"+addr+"/v2/models/m/infer", "application/json",
			strings.NewReader(`{"inputs": []}`))
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-arrived
	shutdown()
	select {
	case err := <-served:
		if err == nil || !strings.Contains(err.Error(), "shut down http: context deadline exceeded") {
			t.Errorf("serve = %v, want the shutdown deadline reported", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not give up after --shutdown-timeout")
	}
}
