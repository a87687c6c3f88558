package transport_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
)

// scripted is a Transport whose ModelInfer answers each attempt with the
// next error of its script (nil: success) and notes what it saw.
type scripted struct {
	transport.Transport // the other calls are not used here
	errs                []error
	follows             []bool
	deadlines           []time.Time
}

func (s *scripted) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	s.follows = append(s.follows, transport.RetryFollows(ctx))
	deadline, _ := ctx.Deadline()
	s.deadlines = append(s.deadlines, deadline)
	err := s.errs[len(s.follows)-1]
	if err != nil {
		return nil, err
	}
	return &pb.ModelInferResponse{ModelName: req.GetModelName()}, nil
}

func TestWithRetry(t *testing.T) {
	unavailable := status.Error(codes.Unavailable, "no worker")
	tests := []struct {
		name     string
		errs     []error
		wantCode codes.Code
		attempts int
	}{
		{"success needs one attempt", []error{nil}, codes.OK, 1},
		{"unavailable is retried once", []error{unavailable, nil}, codes.OK, 2},
		{"and only once", []error{unavailable, unavailable}, codes.Unavailable, 2},
		{"not found is an answer", []error{status.Error(codes.NotFound, "unknown model")}, codes.NotFound, 1},
		{"invalid argument is an answer", []error{status.Error(codes.InvalidArgument, "bad shape")}, codes.InvalidArgument, 1},
		{"overload is not retried", []error{status.Error(codes.ResourceExhausted, "queue full")}, codes.ResourceExhausted, 1},
		{"deadline is not retried", []error{status.Error(codes.DeadlineExceeded, "slow")}, codes.DeadlineExceeded, 1},
		{"internal is not retried", []error{status.Error(codes.Internal, "bug")}, codes.Internal, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &scripted{errs: tt.errs}
			tr := transport.WithRetry(s, time.Minute)
			_, err := tr.ModelInfer(t.Context(), &pb.ModelInferRequest{ModelName: "digits"})
			if got := status.Code(err); got != tt.wantCode {
				t.Errorf("code = %v (%v), want %v", got, err, tt.wantCode)
			}
			if len(s.follows) != tt.attempts {
				t.Fatalf("%d attempts, want %d", len(s.follows), tt.attempts)
			}
			// Only the first attempt is told that another may follow, and
			// both share one deadline: the second gets what is left.
			if !s.follows[0] || (tt.attempts == 2 && s.follows[1]) {
				t.Errorf("RetryFollows per attempt = %v, want [true false]", s.follows)
			}
			if tt.attempts == 2 && !s.deadlines[0].Equal(s.deadlines[1]) {
				t.Errorf("deadlines %v, want one deadline for both attempts", s.deadlines)
			}
		})
	}
}

// An attempt that used up the caller's deadline is not made again.
func TestWithRetryNotAfterDeadline(t *testing.T) {
	s := &scripted{errs: []error{status.Error(codes.Unavailable, "no reply"), nil}}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	tr := transport.WithRetry(&cancelling{scripted: s, cancel: cancel}, time.Minute)
	if _, err := tr.ModelInfer(ctx, &pb.ModelInferRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("err = %v, want UNAVAILABLE from the only attempt", err)
	}
	if len(s.follows) != 1 {
		t.Errorf("%d attempts after the deadline passed, want 1", len(s.follows))
	}
}

// cancelling ends the caller's context during each attempt, as a deadline
// that runs out while the attempt waits would.
type cancelling struct {
	*scripted
	cancel context.CancelFunc
}

func (c *cancelling) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	c.cancel()
	return c.scripted.ModelInfer(ctx, req)
}

// The timeout bounds the call even when the caller sets no deadline.
func TestWithRetryTimeout(t *testing.T) {
	s := &scripted{errs: []error{nil}}
	before := time.Now()
	if _, err := transport.WithRetry(s, time.Second).ModelInfer(context.Background(), &pb.ModelInferRequest{}); err != nil {
		t.Fatal(err)
	}
	if d := s.deadlines[0]; d.IsZero() || d.Before(before) || d.After(before.Add(2*time.Second)) {
		t.Errorf("deadline %v, want about a second after %v", d, before)
	}
}
