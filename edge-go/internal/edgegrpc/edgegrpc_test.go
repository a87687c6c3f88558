package edgegrpc_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/edgegrpc"
	"github.com/tandem-ml/tandem/edge-go/internal/graceful"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/transporttest"
)

// double notes the calls that reach the transport and answers them through
// invoker, the transport the edge is given.
type double struct {
	err     error         // returned by every call when set
	panics  bool          // ModelInfer panics
	block   chan struct{} // when set, ModelInfer waits for it to close
	arrived chan struct{} // when set, ModelInfer closes it on arrival

	mu       sync.Mutex
	deadline time.Time
	calls    int
}

func (d *double) note(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deadline, _ = ctx.Deadline()
	d.calls++
	return d.err
}

// seen returns the number of calls and the last one's deadline.
func (d *double) seen() (int, time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls, d.deadline
}

func (d *double) invoker() *transporttest.Double {
	return &transporttest.Double{
		ServerLiveFunc: func(ctx context.Context, _ *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
			return &pb.ServerLiveResponse{Live: true}, d.note(ctx)
		},
		ServerReadyFunc: func(ctx context.Context, _ *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
			return &pb.ServerReadyResponse{Ready: true}, d.note(ctx)
		},
		ModelReadyFunc: func(ctx context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
			return &pb.ModelReadyResponse{Ready: req.GetName() == "digits"}, d.note(ctx)
		},
		ServerMetadataFunc: func(ctx context.Context, _ *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error) {
			return &pb.ServerMetadataResponse{Name: "worker"}, d.note(ctx)
		},
		ModelMetadataFunc: func(ctx context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
			return &pb.ModelMetadataResponse{Name: req.GetName(), Versions: []string{"1"}}, d.note(ctx)
		},
		ModelInferFunc: d.modelInfer,
		ModelConfigFunc: func(ctx context.Context, req *pb.ModelConfigRequest) (*pb.ModelConfigResponse, error) {
			return &pb.ModelConfigResponse{Config: &pb.ModelConfig{Name: req.GetName(), MaxBatchSize: 8}}, d.note(ctx)
		},
		ModelStatisticsFunc: func(ctx context.Context, req *pb.ModelStatisticsRequest) (*pb.ModelStatisticsResponse, error) {
			return &pb.ModelStatisticsResponse{ModelStats: []*pb.ModelStatistics{{Name: req.GetName(), InferenceCount: 3}}}, d.note(ctx)
		},
		RepositoryIndexFunc: func(ctx context.Context, _ *pb.RepositoryIndexRequest) (*pb.RepositoryIndexResponse, error) {
			return &pb.RepositoryIndexResponse{Models: []*pb.RepositoryIndexResponse_ModelIndex{{Name: "digits", Version: "1", State: "READY"}}}, d.note(ctx)
		},
		RepositoryModelLoadFunc: func(ctx context.Context, _ *pb.RepositoryModelLoadRequest) (*pb.RepositoryModelLoadResponse, error) {
			return &pb.RepositoryModelLoadResponse{}, d.note(ctx)
		},
		RepositoryModelUnloadFunc: func(ctx context.Context, _ *pb.RepositoryModelUnloadRequest) (*pb.RepositoryModelUnloadResponse, error) {
			return &pb.RepositoryModelUnloadResponse{}, d.note(ctx)
		},
	}
}

func (d *double) modelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	if d.panics {
		panic("secret internals")
	}
	if d.arrived != nil {
		close(d.arrived)
	}
	if d.block != nil {
		select { // as a transport does, give up when the call is canceled
		case <-d.block:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	return &pb.ModelInferResponse{ModelName: req.GetModelName(), Id: req.GetId()}, d.note(ctx)
}

// start serves the edge listener over tr on a free port until the test
// ends; stop starts the graceful shutdown, and Serve's result arrives on
// served.
func start(t *testing.T, tr *double, timeout time.Duration) (client pb.GRPCInferenceServiceClient, conn *grpc.ClientConn, stop func(), served <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := edgegrpc.New(edgegrpc.Config{
		Transport: tr.invoker(), Logger: slog.New(slog.DiscardHandler),
		Name: "tandem", Version: "v9", Extensions: []string{"binary_tensor_data"},
		Timeout: timeout, MaxRecvBytes: 1024, MaxSendBytes: 1 << 20,
	})
	ctx, cancel := context.WithCancel(context.Background())
	result, done := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(done)
		result <- graceful.Serve(ctx, slog.New(slog.DiscardHandler), "grpc", srv, ln, 200*time.Millisecond)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	conn, err = grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return pb.NewGRPCInferenceServiceClient(conn), conn, cancel, result
}

// The model RPCs and readiness go through the transport; liveness and
// server metadata are the gateway's own, as over REST.
func TestRPCs(t *testing.T) {
	tr := &double{}
	client, _, _, _ := start(t, tr, time.Minute)
	ctx := t.Context()
	tests := []struct {
		name      string
		call      func() (proto.Message, error)
		want      proto.Message
		forwarded bool
	}{
		{"ServerLive", func() (proto.Message, error) { return client.ServerLive(ctx, &pb.ServerLiveRequest{}) },
			&pb.ServerLiveResponse{Live: true}, false},
		{"ServerMetadata", func() (proto.Message, error) { return client.ServerMetadata(ctx, &pb.ServerMetadataRequest{}) },
			&pb.ServerMetadataResponse{Name: "tandem", Version: "v9", Extensions: []string{"binary_tensor_data"}}, false},
		{"ServerReady", func() (proto.Message, error) { return client.ServerReady(ctx, &pb.ServerReadyRequest{}) },
			&pb.ServerReadyResponse{Ready: true}, true},
		{"ModelReady", func() (proto.Message, error) { return client.ModelReady(ctx, &pb.ModelReadyRequest{Name: "digits"}) },
			&pb.ModelReadyResponse{Ready: true}, true},
		{"ModelMetadata", func() (proto.Message, error) {
			return client.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "digits"})
		}, &pb.ModelMetadataResponse{Name: "digits", Versions: []string{"1"}}, true},
		{"ModelInfer", func() (proto.Message, error) {
			return client.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "digits", Id: "7"})
		}, &pb.ModelInferResponse{ModelName: "digits", Id: "7"}, true},
		{"ModelConfig", func() (proto.Message, error) {
			return client.ModelConfig(ctx, &pb.ModelConfigRequest{Name: "digits"})
		}, &pb.ModelConfigResponse{Config: &pb.ModelConfig{Name: "digits", MaxBatchSize: 8}}, true},
		{"ModelStatistics", func() (proto.Message, error) {
			return client.ModelStatistics(ctx, &pb.ModelStatisticsRequest{Name: "digits"})
		}, &pb.ModelStatisticsResponse{ModelStats: []*pb.ModelStatistics{{Name: "digits", InferenceCount: 3}}}, true},
		{"RepositoryIndex", func() (proto.Message, error) {
			return client.RepositoryIndex(ctx, &pb.RepositoryIndexRequest{})
		}, &pb.RepositoryIndexResponse{Models: []*pb.RepositoryIndexResponse_ModelIndex{{Name: "digits", Version: "1", State: "READY"}}}, true},
		{"RepositoryModelLoad", func() (proto.Message, error) {
			return client.RepositoryModelLoad(ctx, &pb.RepositoryModelLoadRequest{ModelName: "digits"})
		}, &pb.RepositoryModelLoadResponse{}, true},
		{"RepositoryModelUnload", func() (proto.Message, error) {
			return client.RepositoryModelUnload(ctx, &pb.RepositoryModelUnloadRequest{ModelName: "digits"})
		}, &pb.RepositoryModelUnloadResponse{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := tr.seen()
			got, err := tt.call()
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			after, _ := tr.seen()
			if forwarded := after > before; forwarded != tt.forwarded {
				t.Errorf("forwarded to the transport: %v, want %v", forwarded, tt.forwarded)
			}
		})
	}
}

// The transport's statuses pass through; other errors map as oiperr says.
func TestErrors(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantCode codes.Code
		wantMsg  string
	}{
		{"not found", status.Error(codes.NotFound, `unknown model "x"`), codes.NotFound, `unknown model "x"`},
		{"invalid", status.Error(codes.InvalidArgument, "bad shape"), codes.InvalidArgument, "bad shape"},
		{"overloaded", status.Error(codes.ResourceExhausted, "queue full"), codes.ResourceExhausted, "queue full"},
		{"unavailable", status.Error(codes.Unavailable, "no worker"), codes.Unavailable, "no worker"},
		{"deadline", status.Error(codes.DeadlineExceeded, "slow"), codes.DeadlineExceeded, "slow"},
		{"too large", transport.TooLarge("over max_payload"), codes.ResourceExhausted, "over max_payload"},
		{"wrapped too large", fmt.Errorf("%w: 9 bytes", transport.ErrTooLarge), codes.ResourceExhausted, "request too large: 9 bytes"},
		{"context deadline", context.DeadlineExceeded, codes.DeadlineExceeded, "context deadline exceeded"},
		{"bug", errors.New("boom"), codes.Internal, "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, _, _, _ := start(t, &double{err: tt.err}, time.Minute)
			_, err := client.ModelInfer(t.Context(), &pb.ModelInferRequest{ModelName: "digits"})
			if st := status.Convert(err); st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
				t.Errorf("got %v %q, want %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
		})
	}
}

// Calls are bounded by the timeout, or the client's deadline when sooner.
func TestDeadline(t *testing.T) {
	tr := &double{}
	client, _, _, _ := start(t, tr, time.Minute)
	before := time.Now()
	if _, err := client.ModelInfer(t.Context(), &pb.ModelInferRequest{ModelName: "digits"}); err != nil {
		t.Fatal(err)
	}
	if _, deadline := tr.seen(); deadline.IsZero() || deadline.After(before.Add(time.Minute+time.Second)) {
		t.Errorf("without a client deadline: %v, want at most a minute from %v", deadline, before)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := client.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "digits"}); err != nil {
		t.Fatal(err)
	}
	// gRPC sends the client's deadline as a relative timeout, rounded up.
	clientDeadline, _ := ctx.Deadline()
	if _, deadline := tr.seen(); deadline.After(clientDeadline.Add(time.Second)) {
		t.Errorf("deadline %v is well after the client's %v", deadline, clientDeadline)
	}
}

// A request over the receive limit is refused before the transport sees it.
func TestMaxRecv(t *testing.T) {
	tr := &double{}
	client, _, _, _ := start(t, tr, time.Minute)
	_, err := client.ModelInfer(t.Context(), &pb.ModelInferRequest{
		ModelName: "digits", RawInputContents: [][]byte{make([]byte, 2048)},
	})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("err = %v, want RESOURCE_EXHAUSTED", err)
	}
	if calls, _ := tr.seen(); calls != 0 {
		t.Errorf("the transport got %d calls", calls)
	}
}

func TestHealth(t *testing.T) {
	_, conn, _, _ := start(t, &double{}, time.Minute)
	health := healthpb.NewHealthClient(conn)
	for _, service := range []string{"", "inference.GRPCInferenceService"} {
		resp, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: service})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check(%q) = %v, %v; want SERVING", service, resp, err)
		}
	}
}

// On shutdown, a call in flight is answered before Serve returns; one that
// outlasts the shutdown timeout is cut off and Serve says so.
func TestShutdown(t *testing.T) {
	t.Run("graceful", func(t *testing.T) {
		tr := &double{block: make(chan struct{}), arrived: make(chan struct{})}
		client, _, stop, served := start(t, tr, time.Minute)
		answered := make(chan error, 1)
		go func() {
			_, err := client.ModelInfer(context.Background(), &pb.ModelInferRequest{ModelName: "digits"})
			answered <- err
		}()
		<-tr.arrived
		stop()
		close(tr.block)
		if err := <-answered; err != nil {
			t.Errorf("call in flight: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve = %v", err)
		}
	})
	t.Run("cut off", func(t *testing.T) {
		tr := &double{block: make(chan struct{}), arrived: make(chan struct{})}
		defer close(tr.block)
		client, _, stop, served := start(t, tr, time.Minute)
		go func() { _, _ = client.ModelInfer(context.Background(), &pb.ModelInferRequest{ModelName: "digits"}) }()
		<-tr.arrived
		stop()
		if err := <-served; err == nil || !strings.Contains(err.Error(), "cut off") {
			t.Errorf("Serve = %v, want the calls cut off reported", err)
		}
	})
}

// A call whose handler panics is INTERNAL "internal error", with nothing
// of the panic; the server goes on serving.
func TestPanicIsRecovered(t *testing.T) {
	client, _, _, _ := start(t, &double{panics: true}, time.Minute)
	_, err := client.ModelInfer(t.Context(), &pb.ModelInferRequest{ModelName: "digits"})
	if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Errorf("got %v %q, want INTERNAL \"internal error\"", st.Code(), st.Message())
	}
	if _, err := client.ServerReady(t.Context(), &pb.ServerReadyRequest{}); err != nil {
		t.Errorf("after the panic: %v", err)
	}
}
