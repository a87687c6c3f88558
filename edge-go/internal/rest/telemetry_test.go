package rest

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/metrics"
	"github.com/tandem-ml/tandem/edge-go/internal/oiptest"
	"github.com/tandem-ml/tandem/edge-go/internal/servertiming"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/grpctransport"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/transporttest"
)

// An infer answer carries Server-Timing and not the worker's parameter;
// answers and failures count in the metrics under their model and status.
func TestServerTimingAndMetrics(t *testing.T) {
	backend := oiptest.Start(t, "127.0.0.1:0", &transporttest.Double{
		ModelInferFunc: func(context.Context, *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
			time.Sleep(2 * time.Millisecond) // longer than the service's 0.5 ms
			return &pb.ModelInferResponse{ModelName: "digits", Parameters: map[string]*pb.InferParameter{
				servertiming.Param: {ParameterChoice: &pb.InferParameter_StringParam{StringParam: "queue;dur=0.1, model;dur=0.2, service;dur=0.5"}},
			}}, nil
		},
	})
	tr, err := grpctransport.New(grpctransport.Config{Addr: backend.Addr, MaxMessageBytes: testMaxMessage})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	m := metrics.New("grpc")
	h, err := New(Config{
		Transport: tr, Logger: slog.New(slog.DiscardHandler), Version: "test", Timeout: 5 * time.Second,
		MaxBodyBytes: testMaxBody, MaxMessageBytes: testMaxMessage, Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	g := &gateway{url: srv.URL}

	a := g.do(t, "POST", "/v2/models/digits/infer", inferBody)
	if a.status != 200 {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	if strings.Contains(a.body, servertiming.Param) {
		t.Errorf("the worker's %s parameter reached the client: %s", servertiming.Param, a.body)
	}
	pattern := regexp.MustCompile(`^edge;dur=[0-9.]+, hop;dur=[0-9.]+, python;dur=0\.200, queue;dur=0\.100, model;dur=0\.200$`)
	if got := a.header.Get("Server-Timing"); !pattern.MatchString(got) {
		t.Errorf("Server-Timing %q", got)
	}
	if a := g.do(t, "POST", "/v2/models/digits/infer", `{"inputs": [`); a.status != 400 {
		t.Fatalf("status %d for malformed JSON, want 400", a.status)
	}

	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "tandem_gateway_requests_total" {
			continue
		}
		for _, metric := range f.GetMetric() {
			labels := []string{}
			for _, l := range metric.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			got[strings.Join(labels, ",")] = metric.GetCounter().GetValue()
		}
	}
	for series, want := range map[string]float64{"code=200,model=digits,transport=grpc": 1, "code=400,model=digits,transport=grpc": 1} {
		if got[series] != want {
			t.Errorf("requests{%s} = %v, want %v (all: %v)", series, got[series], want, got)
		}
	}
}
