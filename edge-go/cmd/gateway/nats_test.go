package main

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/natstest"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// With --transport nats and no --nats-url, the gateway runs nats-server
// itself: a worker that connects to --nats-listen makes the gateway ready,
// and both REST and the edge gRPC listener reach it.
func TestEmbeddedNATS(t *testing.T) {
	natsPort := freePort(t)
	gw := startServe(t, "--transport", "nats", "--nats-listen", "127.0.0.1:"+strconv.Itoa(natsPort),
		"--nats-monitor-addr", "", "--timeout", "5s")
	rest := "http://" + gw.httpAddr

	status, body := get(t, rest+"/v2/health/ready")
	want := `{"error":"no inference worker is connected to NATS (no responders on oip.v2.server.ready)"}`
	if status != http.StatusServiceUnavailable || body != want {
		t.Errorf("ready without a worker: %d %s, want 503 %s", status, body, want)
	}

	natstest.StartWorker(t, "nats://127.0.0.1:"+strconv.Itoa(natsPort), "oip.v2", natstest.Echo(t, "oip.v2"))
	for _, path := range []string{"/v2/health/ready", "/v2/models/digits/ready"} {
		if status, body := get(t, rest+path); status != http.StatusOK {
			t.Errorf("GET %s: %d %s, want 200", path, status, body)
		}
	}
	if status, body := get(t, rest+"/v2/models/a.b/ready"); status != http.StatusNotFound || !strings.Contains(body, "subject token") {
		t.Errorf("a model name with a dot: %d %s, want 404", status, body)
	}
	resp, err := http.Post(rest+"/v2/models/digits/infer", "application/json",
		strings.NewReader(`{"id": "r1", "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 1], "data": [1]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"id":"r1"`) {
		t.Errorf("infer over REST: %d %s", resp.StatusCode, b)
	}

	conn, err := grpc.NewClient(gw.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	out, err := pb.NewGRPCInferenceServiceClient(conn).ModelInfer(t.Context(), &pb.ModelInferRequest{ModelName: "digits", Id: "g1"})
	if err != nil || out.GetId() != "g1" {
		t.Errorf("infer over edge gRPC: %v, %v", out, err)
	}

	gw.shutdown()
	select {
	case err := <-gw.served:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after shutdown")
	}
	// The embedded server went down with the gateway.
	if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(natsPort)); err == nil {
		c.Close()
		t.Error("the embedded nats-server still listens after shutdown")
	}
}
