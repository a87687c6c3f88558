package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/metrics"
	"github.com/tandem-ml/tandem/edge-go/internal/oiptest"
	"github.com/tandem-ml/tandem/edge-go/internal/testkit"
	"github.com/tandem-ml/tandem/edge-go/internal/tlsconf/tlstest"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/transporttest"
)

func echoBackend(t *testing.T) *oiptest.Server {
	return oiptest.Start(t, "127.0.0.1:0", &transporttest.Double{
		ModelInferFunc: func(_ context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
			return &pb.ModelInferResponse{ModelName: req.GetModelName(), Id: req.GetId()}, nil
		},
	})
}

const oneRow = `{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}`

func post(t *testing.T, client *http.Client, url string) int {
	t.Helper()
	resp, err := client.Post(url, "application/json", strings.NewReader(oneRow))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// On SIGTERM the gateway drains: readiness is 503 and NOT_SERVING at once,
// inference is still served during --drain-delay, then the listeners close
// and serve returns.
func TestDrain(t *testing.T) {
	gw := startServe(t, "--inference-addr", echoBackend(t).Addr, "--drain-delay", "3s")
	rest := "http://" + gw.httpAddr
	conn, err := grpc.NewClient(gw.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	if status, _ := get(t, rest+"/v2/health/ready"); status != 200 {
		t.Fatalf("ready before the signal: %d", status)
	}

	gw.shutdown()
	testkit.Eventually(t, "readiness to turn 503", func() bool {
		status, _ := get(t, rest+"/v2/health/ready")
		return status == http.StatusServiceUnavailable
	})
	if status := post(t, http.DefaultClient, rest+"/v2/models/m/infer"); status != 200 {
		t.Errorf("infer while draining: %d, want 200", status)
	}
	resp, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("grpc health while draining: %v, %v; want NOT_SERVING", resp, err)
	}
	ready, err := pb.NewGRPCInferenceServiceClient(conn).ServerReady(t.Context(), &pb.ServerReadyRequest{})
	if err != nil || ready.GetReady() {
		t.Errorf("ServerReady while draining: %v, %v; want not ready", ready, err)
	}

	select {
	case err := <-gw.served:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not return after the drain delay")
	}
	if c, err := net.Dial("tcp", gw.httpAddr); err == nil {
		c.Close()
		t.Error("the REST listener is open after the drain")
	}
}

// Go's profiles are served on the admin listener only with --pprof.
func TestPProfOnlyWhenAsked(t *testing.T) {
	for _, on := range []bool{false, true} {
		srv := httptest.NewServer(adminHandler(metrics.New("grpc"), on))
		status, _ := get(t, srv.URL+"/debug/pprof/")
		srv.Close()
		if want := map[bool]int{false: 404, true: 200}[on]; status != want {
			t.Errorf("--pprof=%v: /debug/pprof/ %d, want %d", on, status, want)
		}
	}
	srv := httptest.NewServer(adminHandler(metrics.New("grpc"), false))
	defer srv.Close()
	if status, _ := get(t, srv.URL+"/metrics"); status != 200 {
		t.Errorf("/metrics %d", status)
	}
}

// tlsClient trusts p's CA and presents cert/key when given.
func tlsClient(t *testing.T, p *tlstest.PKI, cert, key string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(p.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool, ServerName: tlstest.ServerName}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}

// With --tls-cert, --tls-key and --tls-client-ca, both client listeners
// speak TLS and take only clients whose certificate the CA signed.
func TestEdgeTLS(t *testing.T) {
	p, other := tlstest.New(t), tlstest.New(t)
	gw := startServe(t, "--inference-addr", echoBackend(t).Addr,
		"--tls-cert", p.ServerCert, "--tls-key", p.ServerKey, "--tls-client-ca", p.CA)
	tests := []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{"client certificate of the CA", tlsClient(t, p, p.ClientCert, p.ClientKey), true},
		{"no client certificate", tlsClient(t, p, "", ""), false},
		{"client certificate of another CA", tlsClient(t, p, other.ClientCert, other.ClientKey), false},
		{"server not trusted", tlsClient(t, other, other.ClientCert, other.ClientKey), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: tt.cfg}}
			resp, err := client.Post("https://"+gw.httpAddr+"/v2/models/m/infer", "application/json", strings.NewReader(oneRow))
			if err == nil {
				resp.Body.Close()
			}
			if ok := err == nil && resp.StatusCode == 200; ok != tt.ok {
				t.Errorf("REST: %v (ok %v), want ok %v", err, ok, tt.ok)
			}

			conn, err := grpc.NewClient(gw.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(tt.cfg)))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			_, err = pb.NewGRPCInferenceServiceClient(conn).ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "m"})
			if ok := err == nil; ok != tt.ok {
				t.Errorf("gRPC: %v, want ok %v", err, tt.ok)
			}
		})
	}
	// Plain HTTP gets nothing it can use.
	if resp, err := http.Get("http://" + gw.httpAddr + "/v2/health/live"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP was served")
		}
	}
}

// With --api-keys both edges want a key and health stays open; the key
// never reaches the log.
func TestAPIKeysOnBothEdges(t *testing.T) {
	gw := startServe(t, "--inference-addr", echoBackend(t).Addr, "--api-keys", "k-one,k-two")
	rest := "http://" + gw.httpAddr
	if status, _ := get(t, rest+"/v2/health/ready"); status != 200 {
		t.Errorf("REST health without a key: %d", status)
	}
	if status := post(t, http.DefaultClient, rest+"/v2/models/m/infer"); status != 401 {
		t.Errorf("REST infer without a key: %d, want 401", status)
	}
	req, _ := http.NewRequest("POST", rest+"/v2/models/m/infer", strings.NewReader(oneRow))
	req.Header.Set("Authorization", "Bearer k-two")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("REST infer with a key: %d", resp.StatusCode)
	}

	conn, err := grpc.NewClient(gw.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewGRPCInferenceServiceClient(conn)
	if _, err := client.ServerReady(t.Context(), &pb.ServerReadyRequest{}); err != nil {
		t.Errorf("gRPC ServerReady without a key: %v", err)
	}
	if _, err := client.ModelInfer(t.Context(), &pb.ModelInferRequest{ModelName: "m"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC infer without a key: %v, want UNAUTHENTICATED", err)
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer k-one")
	if _, err := client.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "m"}); err != nil {
		t.Errorf("gRPC infer with a key: %v", err)
	}
}

// A listener on every interface is beyond loopback; 127.0.0.1 and ::1 are not.
func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:8000": true, "[::1]:8000": true, "0.0.0.0:8000": false, "[::]:8000": false, "10.0.0.5:8000": false} {
		tcp, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := loopback(tcp); got != want {
			t.Errorf("loopback(%s) = %v, want %v", addr, got, want)
		}
	}
}
