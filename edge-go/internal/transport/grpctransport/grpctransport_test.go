package grpctransport

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/oiptest"
	"github.com/tandem-ml/tandem/edge-go/internal/testkit"
	"github.com/tandem-ml/tandem/edge-go/internal/tlsconf"
	"github.com/tandem-ml/tandem/edge-go/internal/tlsconf/tlstest"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/transporttest"
)

func newTransport(t *testing.T, addr string) transport.Client {
	t.Helper()
	tr, err := New(Config{Addr: addr, MaxMessageBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return transport.NewClient(tr)
}

// closedAddr returns a loopback address on which nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}

func TestCalls(t *testing.T) {
	svc := &transporttest.Double{
		ModelInferFunc: func(_ context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
			return &pb.ModelInferResponse{ModelName: req.GetModelName(), Id: req.GetId()}, nil
		},
		ModelMetadataFunc: func(_ context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
			return &pb.ModelMetadataResponse{Name: req.GetName(), Versions: []string{req.GetVersion()}}, nil
		},
	}
	tr := newTransport(t, oiptest.Start(t, "127.0.0.1:0", svc).Addr)
	ctx := t.Context()

	if r, err := tr.ServerLive(ctx, &pb.ServerLiveRequest{}); err != nil || !r.GetLive() {
		t.Errorf("ServerLive = %v, %v", r, err)
	}
	if r, err := tr.ServerReady(ctx, &pb.ServerReadyRequest{}); err != nil || !r.GetReady() {
		t.Errorf("ServerReady = %v, %v", r, err)
	}
	if r, err := tr.ModelReady(ctx, &pb.ModelReadyRequest{Name: "m"}); err != nil || !r.GetReady() {
		t.Errorf("ModelReady = %v, %v", r, err)
	}
	if r, err := tr.ServerMetadata(ctx, &pb.ServerMetadataRequest{}); err != nil || r.GetName() != "transporttest" {
		t.Errorf("ServerMetadata = %v, %v", r, err)
	}
	if r, err := tr.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "m", Version: "2"}); err != nil || r.GetName() != "m" || r.GetVersions()[0] != "2" {
		t.Errorf("ModelMetadata = %v, %v", r, err)
	}
	if r, err := tr.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "m", Id: "7"}); err != nil || r.GetModelName() != "m" || r.GetId() != "7" {
		t.Errorf("ModelInfer = %v, %v", r, err)
	}
}

func TestErrors(t *testing.T) {
	block := func(ctx context.Context, _ *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	fail := func(code codes.Code, msg string) func(context.Context, *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		return func(context.Context, *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
			return nil, status.Error(code, msg)
		}
	}
	tests := []struct {
		name     string
		infer    func(context.Context, *pb.ModelInferRequest) (*pb.ModelInferResponse, error)
		down     bool          // no server at all
		deadline time.Duration // the caller's, 0 for none
		request  *pb.ModelInferRequest
		code     codes.Code
		message  string // a prefix of the status message
	}{
		{name: "service error passes through", infer: fail(codes.InvalidArgument, `input "x": bad`), code: codes.InvalidArgument, message: `input "x": bad`},
		{name: "not found passes through", infer: fail(codes.NotFound, "unknown model"), code: codes.NotFound, message: "unknown model"},
		{name: "service down", down: true, code: codes.Unavailable, message: "inference service at 127.0.0.1:"},
		{name: "caller deadline names the service", infer: block, deadline: 100 * time.Millisecond, code: codes.DeadlineExceeded, message: "inference service at 127.0.0.1:"},
		{name: "message too large", infer: block, request: &pb.ModelInferRequest{RawInputContents: [][]byte{make([]byte, 2<<20)}}, code: codes.ResourceExhausted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := closedAddr(t)
			if !tt.down {
				addr = oiptest.Start(t, "127.0.0.1:0", &transporttest.Double{ModelInferFunc: tt.infer}).Addr
			}
			tr := newTransport(t, addr)
			ctx := t.Context()
			if tt.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			req := tt.request
			if req == nil {
				req = &pb.ModelInferRequest{ModelName: "m"}
			}
			_, err := tr.ModelInfer(ctx, req)
			st := status.Convert(err)
			if st.Code() != tt.code || !strings.HasPrefix(st.Message(), tt.message) {
				t.Errorf("error = %v, want code %v and message starting %q", err, tt.code, tt.message)
			}
		})
	}
}

// A call retried by Retry is one that provably reached no service: one that
// found no connection. A service's UNAVAILABLE, and a call that timed out
// while the service held it, may have run: those are made once.
func TestRetryOnlyUnsent(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{}) // closed when the caller has given up
	late := func(context.Context, *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		calls.Add(1)
		<-release
		return &pb.ModelInferResponse{}, nil
	}
	shuttingDown := func(context.Context, *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		calls.Add(1)
		return nil, status.Error(codes.Unavailable, "shutting down")
	}
	tests := []struct {
		name    string
		infer   func(context.Context, *pb.ModelInferRequest) (*pb.ModelInferResponse, error)
		code    codes.Code
		notSent bool
	}{
		{"no connection", nil, codes.Unavailable, true},
		{"the service's unavailable", shuttingDown, codes.Unavailable, false},
		{"a late answer", late, codes.DeadlineExceeded, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls.Store(0)
			addr := closedAddr(t)
			if tt.infer != nil {
				addr = oiptest.Start(t, "127.0.0.1:0", &transporttest.Double{ModelInferFunc: tt.infer}).Addr
			}
			tr, err := New(Config{Addr: addr, MaxMessageBytes: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = tr.Close() })
			var errs []error
			note := func(next transport.Invoker) transport.Invoker {
				return transport.Wrap(next, func(ctx context.Context, rpc transport.RPC, req proto.Message) (proto.Message, error) {
					resp, err := next.Invoke(ctx, rpc, req)
					errs = append(errs, err)
					return resp, err
				})
			}
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			_, err = transport.NewClient(transport.Chain(tr, note, transport.Retry)).ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "m"})
			if tt.code == codes.DeadlineExceeded {
				close(release)
			}
			if status.Code(err) != tt.code {
				t.Errorf("err = %v, want %v", err, tt.code)
			}
			if got := transport.WasNotSent(errs[0]); got != tt.notSent {
				t.Errorf("first attempt %v: not sent = %v, want %v", errs[0], got, tt.notSent)
			}
			wantAttempts := 1
			if tt.notSent {
				wantAttempts = 2
			}
			if len(errs) != wantAttempts {
				t.Errorf("%d attempts, want %d", len(errs), wantAttempts)
			}
			if tt.infer != nil && calls.Load() != 1 {
				t.Errorf("the service was called %d times, want once", calls.Load())
			}
		})
	}
}

// The caller giving up cancels the RPC on the service, not only the wait.
func TestCancelPropagates(t *testing.T) {
	started := make(chan struct{})
	ended := make(chan error, 1)
	svc := &transporttest.Double{ModelInferFunc: func(ctx context.Context, _ *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		close(started)
		<-ctx.Done()
		ended <- ctx.Err()
		return nil, ctx.Err()
	}}
	tr := newTransport(t, oiptest.Start(t, "127.0.0.1:0", svc).Addr)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-started
		cancel()
	}()
	if _, err := tr.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "m"}); status.Code(err) != codes.Canceled {
		t.Errorf("err = %v, want CANCELED", err)
	}
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("the service's context ended with %v, want canceled", err)
	}
}

// After the service goes away and comes back on the same address, calls
// succeed again without any action from the caller.
func TestReconnectsAfterRestart(t *testing.T) {
	srv := oiptest.Start(t, "127.0.0.1:0", &transporttest.Double{})
	tr := newTransport(t, srv.Addr)
	ctx := t.Context()
	if _, err := tr.ServerReady(ctx, &pb.ServerReadyRequest{}); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	if _, err := tr.ServerReady(ctx, &pb.ServerReadyRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("with the service down: %v, want UNAVAILABLE", err)
	}

	oiptest.Start(t, srv.Addr, &transporttest.Double{})
	testkit.Eventually(t, "the service to be back", func() bool {
		_, err := tr.ServerReady(ctx, &pb.ServerReadyRequest{})
		return err == nil
	})
}

// With TLS the hop takes a service whose certificate chains to the CA, and
// presents the gateway's certificate to one that asks (mTLS).
func TestMutualTLS(t *testing.T) {
	p, other := tlstest.New(t), tlstest.New(t)
	serverTLS, err := tlsconf.Server(p.ServerCert, p.ServerKey, p.CA)
	if err != nil {
		t.Fatal(err)
	}
	srv := oiptest.Start(t, "127.0.0.1:0", &transporttest.Double{}, grpc.Creds(credentials.NewTLS(serverTLS)))
	tests := []struct {
		name string
		pki  *tlstest.PKI // the client certificate's
		ca   string
		ok   bool
	}{
		{"client certificate of the CA", p, p.CA, true},
		{"client certificate of another CA", other, p.CA, false},
		{"server of another CA", p, other.CA, false},
		{"no client certificate", nil, p.CA, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, key := "", ""
			if tt.pki != nil {
				cert, key = tt.pki.ClientCert, tt.pki.ClientKey
			}
			clientTLS, err := tlsconf.Client(tt.ca, cert, key, tlstest.ServerName)
			if err != nil {
				t.Fatal(err)
			}
			tr, err := New(Config{Addr: srv.Addr, TLS: clientTLS, MaxMessageBytes: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			_, err = transport.NewClient(tr).ServerReady(t.Context(), &pb.ServerReadyRequest{})
			if (err == nil) != tt.ok {
				t.Errorf("ServerReady: %v, want ok %v", err, tt.ok)
			}
			// A refused handshake is the service unreachable: 503.
			if !tt.ok && status.Code(err) != codes.Unavailable {
				t.Errorf("ServerReady: %v, want UNAVAILABLE", err)
			}
		})
	}
}
