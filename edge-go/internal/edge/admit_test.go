package edge_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/edge"
	"github.com/tandem-ml/tandem/edge-go/internal/limit"
	"github.com/tandem-ml/tandem/edge-go/internal/oiperr"
	"github.com/tandem-ml/tandem/edge-go/internal/testkit"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/transporttest"
)

// Past the in-flight limit a request is refused at once, 429 with
// Retry-After; other models and other calls are not held back.
func TestAdmitInFlight(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var reasons []string
	var arrived sync.WaitGroup
	arrived.Add(2)
	d := &transporttest.Double{ModelInferFunc: func(_ context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		if req.GetModelName() == "m" {
			arrived.Done()
			<-release
		}
		return &pb.ModelInferResponse{ModelName: req.GetModelName()}, nil
	}}
	c := transport.NewClient(transport.Chain(d, edge.Admit(limit.NewInFlight(limit.InFlightConfig{Max: 2}), func(model, reason string) {
		mu.Lock()
		reasons = append(reasons, model+" "+reason)
		mu.Unlock()
	})))
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { _, _ = c.ModelInfer(t.Context(), &pb.ModelInferRequest{ModelName: "m"}) })
	}
	arrived.Wait()
	_, err := c.ModelInfer(t.Context(), &pb.ModelInferRequest{ModelName: "m"})
	if resp := oiperr.FromError(err); resp.Status != 429 || resp.RetryAfter == "" {
		t.Errorf("the third call: %+v, want 429 with Retry-After", resp)
	}
	if _, err := c.ModelInfer(t.Context(), &pb.ModelInferRequest{ModelName: "other"}); err != nil {
		t.Errorf("another model: %v", err)
	}
	if _, err := c.ModelReady(t.Context(), &pb.ModelReadyRequest{Name: "m"}); err != nil {
		t.Errorf("readiness of the busy model: %v", err)
	}
	close(release)
	wg.Wait()
	if len(reasons) != 1 || reasons[0] != "m overloaded" {
		t.Errorf("refusals %q, want [m overloaded]", reasons)
	}
}

// A request whose deadline cannot cover the model's expected latency is
// refused at once with DEADLINE_EXCEEDED naming both.
func TestAdmitExpectedWait(t *testing.T) {
	slow := make(chan struct{})
	d := &transporttest.Double{ModelInferFunc: func(context.Context, *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		<-slow
		return &pb.ModelInferResponse{}, nil
	}}
	l := limit.NewInFlight(limit.InFlightConfig{})
	var refused []string
	c := transport.NewClient(transport.Chain(d, edge.Admit(l, func(_, reason string) { refused = append(refused, reason) })))
	done := make(chan error, 1)
	go func() {
		_, err := c.ModelInfer(t.Context(), &pb.ModelInferRequest{ModelName: "m"})
		done <- err
	}()
	testkit.Eventually(t, "the call in flight", func() bool { return l.InFlightNow("m") == 1 })
	time.Sleep(20 * time.Millisecond) // the call's latency, which the limiter learns
	close(slow)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
	defer cancel()
	_, err := c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "m"})
	if st := status.Convert(err); st.Code() != codes.DeadlineExceeded || len(refused) != 1 || refused[0] != "deadline" {
		t.Errorf("short deadline: %v (refused %q), want DEADLINE_EXCEEDED for the expected wait", err, refused)
	}
}
