package transport_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/transporttest"
)

// scripted answers each attempt with the next error of errs (nil: success)
// and notes what each attempt saw; during saw, it may act (as cancelling).
type scripted struct {
	errs      []error
	ids       []string
	deadlines []time.Time
	during    func()
}

func (s *scripted) double() *transporttest.Double {
	return &transporttest.Double{ModelInferFunc: func(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		if s.during != nil {
			s.during()
		}
		s.ids = append(s.ids, transport.RequestID(ctx))
		deadline, _ := ctx.Deadline()
		s.deadlines = append(s.deadlines, deadline)
		if err := s.errs[len(s.ids)-1]; err != nil {
			return nil, err
		}
		return &pb.ModelInferResponse{ModelName: req.GetModelName()}, nil
	}}
}

func TestRetry(t *testing.T) {
	unsent := transport.NotSent(transport.KindNoResponders, status.New(codes.Unavailable, "no worker"))
	// UNAVAILABLE alone (a connection lost mid-call, a worker's 503) does
	// not prove the request unsent.
	unavailable := status.Error(codes.Unavailable, "connection lost")
	tests := []struct {
		name     string
		errs     []error
		wantCode codes.Code
		attempts int
	}{
		{"success needs one attempt", []error{nil}, codes.OK, 1},
		{"unsent is retried once", []error{unsent, nil}, codes.OK, 2},
		{"and only once", []error{unsent, unsent}, codes.Unavailable, 2},
		{"unavailable may have run: not retried", []error{unavailable}, codes.Unavailable, 1},
		{"not found is an answer", []error{status.Error(codes.NotFound, "unknown model")}, codes.NotFound, 1},
		{"invalid argument is an answer", []error{status.Error(codes.InvalidArgument, "bad shape")}, codes.InvalidArgument, 1},
		{"overload is not retried", []error{status.Error(codes.ResourceExhausted, "queue full")}, codes.ResourceExhausted, 1},
		{"deadline is not retried", []error{status.Error(codes.DeadlineExceeded, "slow")}, codes.DeadlineExceeded, 1},
		{"internal is not retried", []error{status.Error(codes.Internal, "bug")}, codes.Internal, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &scripted{errs: tt.errs}
			tr := transport.NewClient(transport.Chain(s.double(), transport.Retry))
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			_, err := tr.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "digits"})
			if got := status.Code(err); got != tt.wantCode {
				t.Errorf("code = %v (%v), want %v", got, err, tt.wantCode)
			}
			if len(s.ids) != tt.attempts {
				t.Fatalf("%d attempts, want %d", len(s.ids), tt.attempts)
			}
			// Both attempts are of one request: one id, 32 hex digits, and
			// the caller's deadline (the second gets what is left).
			if len(s.ids[0]) != 32 || (tt.attempts == 2 && s.ids[1] != s.ids[0]) {
				t.Errorf("request ids per attempt = %q, want one of 32 hex digits", s.ids)
			}
			want, _ := ctx.Deadline()
			for i, d := range s.deadlines {
				if !d.Equal(want) {
					t.Errorf("attempt %d: deadline %v, want the caller's %v", i+1, d, want)
				}
			}
		})
	}
}

// An attempt that used up the caller's deadline is not made again.
func TestRetryNotAfterDeadline(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// The caller's context ends during each attempt, as a deadline that
	// runs out while the attempt waits would.
	s := &scripted{errs: []error{transport.NotSent(transport.KindNoResponders, status.New(codes.Unavailable, "no worker")), nil}, during: cancel}
	tr := transport.NewClient(transport.Chain(s.double(), transport.Retry))
	if _, err := tr.ModelInfer(ctx, &pb.ModelInferRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("err = %v, want UNAVAILABLE from the only attempt", err)
	}
	if len(s.ids) != 1 {
		t.Errorf("%d attempts after the deadline passed, want 1", len(s.ids))
	}
}

// Failures of the hop are noted by kind; the service's answers are not.
func TestObserveFailures(t *testing.T) {
	tests := []struct {
		err  error
		kind string
	}{
		{status.Error(codes.Unavailable, "down"), "unavailable"},
		{status.Error(codes.DeadlineExceeded, "slow"), "deadline"},
		{transport.TooLarge("big"), "too_large"},
		{transport.WithKind(transport.KindNoResponders, status.New(codes.Unavailable, "nobody")), "no_responders"},
		{transport.NotSent(transport.KindNotSent, status.New(codes.Unavailable, "no connection")), "not_sent"},
		{status.Error(codes.Internal, "bug"), "internal"},
		{status.Error(codes.InvalidArgument, "bad input"), ""},
		{status.Error(codes.NotFound, "unknown model"), ""},
		{nil, ""},
	}
	for _, tt := range tests {
		var noted []string
		failing := &transporttest.Double{ServerReadyFunc: func(context.Context, *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
			return &pb.ServerReadyResponse{}, tt.err
		}}
		inv := transport.Chain(failing, transport.ObserveFailures(func(kind string) { noted = append(noted, kind) }))
		_, err := transport.NewClient(inv).ServerReady(t.Context(), &pb.ServerReadyRequest{})
		if !errors.Is(err, tt.err) {
			t.Errorf("the error changed: %v", err)
		}
		want := []string{tt.kind}
		if tt.kind == "" {
			want = nil
		}
		if len(noted) != len(want) || (len(want) == 1 && noted[0] != want[0]) {
			t.Errorf("%v: noted %q, want %q", tt.err, noted, want)
		}
	}
}

// Chain lists middleware from the hop up: the last is called first.
func TestChainOrder(t *testing.T) {
	var order []string
	mark := func(name string) transport.Middleware {
		return func(next transport.Invoker) transport.Invoker {
			return transport.Wrap(next, func(ctx context.Context, rpc transport.RPC, req proto.Message) (proto.Message, error) {
				order = append(order, name)
				return next.Invoke(ctx, rpc, req)
			})
		}
	}
	inv := transport.Chain(&transporttest.Double{}, mark("hop"), mark("top"))
	if _, err := transport.NewClient(inv).ServerLive(t.Context(), &pb.ServerLiveRequest{}); err != nil {
		t.Fatal(err)
	}
	if len(order) != 2 || order[0] != "top" || order[1] != "hop" {
		t.Errorf("called in order %q, want [top hop]", order)
	}
}

// The typed client refuses an answer of the wrong type rather than panic.
func TestClientWrongResponseType(t *testing.T) {
	wrong := transport.Wrap(&transporttest.Double{}, func(context.Context, transport.RPC, proto.Message) (proto.Message, error) {
		return &pb.ServerLiveResponse{}, nil
	})
	_, err := transport.NewClient(wrong).ModelInfer(t.Context(), &pb.ModelInferRequest{})
	if status.Code(err) != codes.Internal {
		t.Errorf("err = %v, want INTERNAL", err)
	}
}
