package grpctransport

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clientTLS, err := tlsconf.Client(tt.ca, tt.pki.ClientCert, tt.pki.ClientKey, tlstest.ServerName)
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
		})
	}
}
