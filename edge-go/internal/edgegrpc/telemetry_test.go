package edgegrpc_test

import (
	"context"
	"log/slog"
	"net"
	"regexp"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/edgegrpc"
	"github.com/tandem-ml/tandem/edge-go/internal/graceful"
	"github.com/tandem-ml/tandem/edge-go/internal/metrics"
	"github.com/tandem-ml/tandem/edge-go/internal/servertiming"
	"github.com/tandem-ml/tandem/edge-go/internal/telemetry"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/transporttest"
)

// timed answers infer as a worker that reports its times does.
func timed() *transporttest.Double {
	d := &double{}
	inv := d.invoker()
	inv.ModelInferFunc = func(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		if req.GetModelName() != "digits" {
			return d.modelInfer(ctx, req)
		}
		time.Sleep(2 * time.Millisecond) // longer than the service's 0.5 ms
		return &pb.ModelInferResponse{ModelName: "digits", Parameters: map[string]*pb.InferParameter{
			servertiming.Param: {ParameterChoice: &pb.InferParameter_StringParam{StringParam: "queue;dur=0.1, model;dur=0.2, service;dur=0.5"}},
		}}, nil
	}
	return inv
}

// Calls are traced and counted, health checks neither; an infer answer
// carries the server-timing trailer and not the worker's parameter.
func TestTelemetry(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	m := metrics.New("grpc")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := edgegrpc.New(edgegrpc.Config{
		Transport: timed(), Logger: slog.New(slog.DiscardHandler), Name: "tandem",
		Timeout: 5 * time.Second, MaxRecvBytes: 1024, MaxSendBytes: 1 << 20,
		Metrics: m, ServerOptions: telemetry.Recording(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))).GRPCServerOptions(),
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = graceful.Serve(ctx, slog.New(slog.DiscardHandler), "grpc", srv, ln, time.Second)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := pb.NewGRPCInferenceServiceClient(conn)

	var trailer metadata.MD
	resp, err := client.ModelInfer(t.Context(), &pb.ModelInferRequest{ModelName: "digits"}, grpc.Trailer(&trailer))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := resp.GetParameters()[servertiming.Param]; ok {
		t.Errorf("the worker's %s parameter reached the client", servertiming.Param)
	}
	timing := trailer.Get("server-timing")
	pattern := regexp.MustCompile(`^edge;dur=[0-9.]+, hop;dur=[0-9.]+, python;dur=0\.200, queue;dur=0\.100, model;dur=0\.200$`)
	if len(timing) != 1 || !pattern.MatchString(timing[0]) {
		t.Errorf("server-timing trailer %q", timing)
	}
	if _, err := client.ModelInfer(t.Context(), &pb.ModelInferRequest{ModelName: "nope"}); err != nil {
		t.Fatal(err)
	}
	if _, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		model, code string
		want        float64
	}{{"digits", "OK", 1}, {"nope", "OK", 1}, {"", "OK", 0}} {
		if got := requests(t, m, tt.model, tt.code); got != tt.want {
			t.Errorf("requests{model=%q,code=%q} = %v, want %v", tt.model, tt.code, got, tt.want)
		}
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		names := []string{}
		for _, s := range spans {
			names = append(names, s.Name())
		}
		t.Errorf("spans %q, want one per ModelInfer call and none for the health check", names)
	}
}

// requests reads tandem_gateway_requests_total{model,transport="grpc",code}.
func requests(t *testing.T, m *metrics.Metrics, model, code string) float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "tandem_gateway_requests_total" {
			continue
		}
		for _, metric := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range metric.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["model"] == model && labels["code"] == code && labels["transport"] == "grpc" {
				return metric.GetCounter().GetValue()
			}
		}
	}
	return 0
}
