package edge_test

import (
	"context"
	"testing"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/coalesce"
	"github.com/tandem-ml/tandem/edge-go/internal/edge"
	"github.com/tandem-ml/tandem/edge-go/internal/limit"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/transporttest"
)

// BenchmarkChain is the gateway's own cost per infer call between the
// handler and the hop: the chain run.go builds, over a hop that answers at
// once, against the hop called directly.
func BenchmarkChain(b *testing.B) {
	resp := &pb.ModelInferResponse{ModelName: "digits"}
	hop := &transporttest.Double{ModelInferFunc: func(context.Context, *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		return resp, nil
	}}
	req := &pb.ModelInferRequest{ModelName: "digits"}
	for _, c := range []struct {
		name string
		inv  transport.Invoker
	}{
		{"hop", hop},
		{"chain", transport.Chain(hop,
			transport.ObserveFailures(func(string) {}),
			transport.Retry,
			coalesce.Middleware(map[string]coalesce.Rule{"other": {Coalesce: true, MaxRows: 8, MaxInFlight: 1}}, 1<<20),
			edge.Admit(limit.NewInFlight(limit.InFlightConfig{Max: 256}), func(string, string) {}),
		)},
	} {
		client := transport.NewClient(c.inv)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			for b.Loop() {
				if _, err := client.ModelInfer(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
