package natstransport_test

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/natsserver"
	"github.com/tandem-ml/tandem/edge-go/internal/natstest"
	"github.com/tandem-ml/tandem/edge-go/internal/oiperr"
	"github.com/tandem-ml/tandem/edge-go/internal/testkit"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/natstransport"
)

const prefix = "test.oip"

func startServer(t *testing.T, listen string, maxPayload int) *natsserver.Server {
	return natstest.StartServer(t, listen, maxPayload)
}

func startWorker(t *testing.T, url string, handle func(m *nats.Msg) *nats.Msg) *natstest.Worker {
	return natstest.StartWorker(t, url, prefix, handle)
}

func echo(t *testing.T) func(m *nats.Msg) *nats.Msg { return natstest.Echo(t, prefix) }

// bounded is the test's context with a deadline, as the edge always sets.
func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newTransport(t *testing.T, cfg natstransport.Config) transport.Client {
	t.Helper()
	return transport.NewClient(newInvoker(t, cfg))
}

func newInvoker(t *testing.T, cfg natstransport.Config) *natstransport.Transport {
	t.Helper()
	if cfg.SubjectPrefix == "" {
		cfg.SubjectPrefix = prefix
	}
	tr, err := natstransport.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// Each of the six RPCs goes out on its own subject and comes back decoded.
func TestRoundTrip(t *testing.T) {
	ns := startServer(t, "127.0.0.1:0", 1<<20)
	w := startWorker(t, ns.ClientURL(), echo(t))
	tr := newTransport(t, natstransport.Config{Server: ns})
	ctx := bounded(t)

	tests := []struct {
		subject string
		call    func() (proto.Message, error)
		want    proto.Message
	}{
		{prefix + ".server.live", func() (proto.Message, error) { return tr.ServerLive(ctx, &pb.ServerLiveRequest{}) },
			&pb.ServerLiveResponse{Live: true}},
		{prefix + ".server.ready", func() (proto.Message, error) { return tr.ServerReady(ctx, &pb.ServerReadyRequest{}) },
			&pb.ServerReadyResponse{Ready: true}},
		{prefix + ".server.metadata", func() (proto.Message, error) { return tr.ServerMetadata(ctx, &pb.ServerMetadataRequest{}) },
			&pb.ServerMetadataResponse{Name: "worker"}},
		{prefix + ".models.digits.ready", func() (proto.Message, error) {
			return tr.ModelReady(ctx, &pb.ModelReadyRequest{Name: "digits"})
		}, &pb.ModelReadyResponse{Ready: true}},
		{prefix + ".models.digits-torch.metadata", func() (proto.Message, error) {
			return tr.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "digits-torch"})
		}, &pb.ModelMetadataResponse{Name: "digits-torch", Platform: "onnxruntime"}},
		{prefix + ".models.digits.infer", func() (proto.Message, error) {
			return tr.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "digits", Id: "42"})
		}, &pb.ModelInferResponse{ModelName: "digits", ModelVersion: "1", Id: "42"}},
	}
	for i, tt := range tests {
		t.Run(tt.subject, func(t *testing.T) {
			got, err := tt.call()
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if msgs := w.Received(); len(msgs) != i+1 || msgs[i].Subject != tt.subject {
				t.Errorf("worker got %d messages, the last on %q; want %d, the last on %q",
					len(msgs), msgs[len(msgs)-1].Subject, i+1, tt.subject)
			}
		})
	}
}

// The worker's error codes map to gRPC codes and, through oiperr, to the
// HTTP statuses of proto/README.md; its messages pass through.
func TestServiceErrors(t *testing.T) {
	tests := []struct {
		code     string
		wantCode codes.Code
		wantHTTP int
	}{
		{"400", codes.InvalidArgument, http.StatusBadRequest},
		{"404", codes.NotFound, http.StatusNotFound},
		{"413", codes.ResourceExhausted, http.StatusRequestEntityTooLarge},
		{"429", codes.ResourceExhausted, http.StatusTooManyRequests},
		{"503", codes.Unavailable, http.StatusServiceUnavailable},
		{"504", codes.DeadlineExceeded, http.StatusGatewayTimeout},
		{"500", codes.Internal, http.StatusInternalServerError},
		{"418", codes.Internal, http.StatusInternalServerError},
	}
	ns := startServer(t, "127.0.0.1:0", 1<<20)
	startWorker(t, ns.ClientURL(), func(m *nats.Msg) *nats.Msg {
		var req pb.ModelInferRequest
		_ = proto.Unmarshal(m.Data, &req)
		return natstest.ErrorReply(req.GetId(), "worker says "+req.GetId())
	})
	tr := newTransport(t, natstransport.Config{Server: ns})
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			_, err := tr.ModelInfer(bounded(t), &pb.ModelInferRequest{ModelName: "digits", Id: tt.code})
			st := status.Convert(err)
			if st.Code() != tt.wantCode || st.Message() != "worker says "+tt.code {
				t.Errorf("err = %v %q, want %v %q", st.Code(), st.Message(), tt.wantCode, "worker says "+tt.code)
			}
			if got := oiperr.FromError(err).Status; got != tt.wantHTTP {
				t.Errorf("HTTP status %d, want %d", got, tt.wantHTTP)
			}
		})
	}
}

// With no worker subscribed, NATS says so at once: UNAVAILABLE long before
// the deadline, naming the model. When workers run but none serves the
// model, it is unknown: NOT_FOUND.
func TestNoResponders(t *testing.T) {
	ns := startServer(t, "127.0.0.1:0", 1<<20)
	tr := newTransport(t, natstransport.Config{Server: ns})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := tr.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "digits"})
	want := `no inference worker is serving model "digits" (no responders on test.oip.models.digits.infer)`
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != want {
		t.Errorf("err = %v, want UNAVAILABLE %q", err, want)
	}
	if ctx.Err() != nil {
		t.Error("the call waited for its deadline")
	}
	_, err = tr.ServerReady(ctx, &pb.ServerReadyRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("ServerReady with no worker: %v, want UNAVAILABLE", err)
	}

	// With a worker running that serves other models, the model is unknown.
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.QueueSubscribe(prefix+".server.live", "tandem-inference", func(m *nats.Msg) {
		_ = m.RespondMsg(natstest.Reply(t, &pb.ServerLiveResponse{Live: true}))
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	_, err = tr.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "digits"})
	want = `unknown model "digits": no inference worker serves it (no responders on test.oip.models.digits.infer)`
	if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != want {
		t.Errorf("err = %v, want NOT_FOUND %q", err, want)
	}
}

// A worker that holds a request without answering, as one killed with
// SIGKILL or one too slow does: the request fails when its deadline passes,
// and through Retry it is not sent again, since the worker may be running
// it.
func TestDeadlines(t *testing.T) {
	ns := startServer(t, "127.0.0.1:0", 1<<20)
	w := startWorker(t, ns.ClientURL(), func(*nats.Msg) *nats.Msg { return nil })
	tr := transport.NewClient(transport.Chain(newInvoker(t, natstransport.Config{Server: ns}), transport.Retry))
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := tr.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "digits"})
	want := "no inference worker answered test.oip.models.digits.infer in time"
	if st := status.Convert(err); st.Code() != codes.DeadlineExceeded || st.Message() != want {
		t.Errorf("err = %v, want DEADLINE_EXCEEDED %q", err, want)
	}
	if n := len(w.Received()); n != 1 {
		t.Errorf("the worker got the request %d times, want once", n)
	}
}

// A request that found no responders reached no worker: Retry sends it
// again, and the second attempt reaches the worker that has come up since.
func TestRetryNoResponders(t *testing.T) {
	ns := startServer(t, "127.0.0.1:0", 1<<20)
	var w *natstest.Worker
	first := &firstAttempt{after: func() { w = startWorker(t, ns.ClientURL(), echo(t)) }}
	var id string // the request's, as Retry set it
	noteID := func(next transport.Invoker) transport.Invoker {
		return transport.Wrap(next, func(ctx context.Context, rpc transport.RPC, req proto.Message) (proto.Message, error) {
			id = transport.RequestID(ctx)
			return next.Invoke(ctx, rpc, req)
		})
	}
	tr := transport.NewClient(transport.Chain(newInvoker(t, natstransport.Config{Server: ns}), first.note, noteID, transport.Retry))
	resp, err := tr.ModelInfer(bounded(t), &pb.ModelInferRequest{ModelName: "digits"})
	if err != nil || resp.GetModelName() != "digits" {
		t.Errorf("ModelInfer = %v, %v; want the second attempt's answer", resp, err)
	}
	if !transport.WasNotSent(first.err) || transport.ErrorKind(first.err) != transport.KindNoResponders {
		t.Errorf("first attempt: %v, want no responders, not sent", first.err)
	}
	if first.calls != 2 || len(w.Received()) != 1 {
		t.Fatalf("%d attempts, the worker got %d; want 2 and 1", first.calls, len(w.Received()))
	}
	if got := w.Received()[0].Header.Get("tandem-request-id"); got != id || id == "" {
		t.Errorf("the second attempt's tandem-request-id = %q, want the request's %q", got, id)
	}
}

// firstAttempt notes the error of the first attempt Retry makes, and then
// calls after, if set, before Retry sees the error.
type firstAttempt struct {
	err   error
	calls int
	after func()
}

func (f *firstAttempt) note(next transport.Invoker) transport.Invoker {
	return transport.Wrap(next, func(ctx context.Context, rpc transport.RPC, req proto.Message) (proto.Message, error) {
		resp, err := next.Invoke(ctx, rpc, req)
		if f.calls == 0 {
			f.err = err
			if f.after != nil {
				f.after()
			}
		}
		f.calls++
		return resp, err
	})
}

// A request over the server's max_payload is refused before it is sent:
// 413 over REST, RESOURCE_EXHAUSTED over gRPC, naming the limit.
func TestMaxPayload(t *testing.T) {
	ns := startServer(t, "127.0.0.1:0", 1024)
	w := startWorker(t, ns.ClientURL(), echo(t))
	tr := newTransport(t, natstransport.Config{Server: ns})
	if _, err := tr.ModelInfer(bounded(t), &pb.ModelInferRequest{ModelName: "digits"}); err != nil {
		t.Fatalf("a small request: %v", err) // also waits for the server's INFO
	}
	_, err := tr.ModelInfer(bounded(t), &pb.ModelInferRequest{
		ModelName: "digits", RawInputContents: [][]byte{make([]byte, 2048)},
	})
	resp := oiperr.FromError(err)
	if resp.Status != http.StatusRequestEntityTooLarge || !strings.Contains(resp.Message, "1024 bytes the NATS server accepts") {
		t.Errorf("REST answer %+v, want 413 naming the 1024-byte limit", resp)
	}
	if code := status.Code(err); code != codes.ResourceExhausted {
		t.Errorf("code %v, want RESOURCE_EXHAUSTED", code)
	}
	if n := len(w.Received()); n != 1 {
		t.Errorf("worker got %d messages, want only the small one", n)
	}
}

// Headers arrive with the keys as written, lowercase: tandem-timeout with
// the budget in milliseconds, tandem-deadline, tandem-request-id and
// whatever InjectHeaders adds.
func TestHeaders(t *testing.T) {
	ns := startServer(t, "127.0.0.1:0", 1<<20)
	w := startWorker(t, ns.ClientURL(), echo(t))
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tr := newTransport(t, natstransport.Config{
		Server: ns,
		InjectHeaders: func(_ context.Context, h natstransport.HeaderCarrier) {
			h.Set("Traceparent", traceparent) // as an http.Header-minded propagator would
			h.Set("tracestate", "congo=t61rcWkgMzE")
		},
	})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := tr.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "digits"}); err != nil {
		t.Fatal(err)
	}
	h := w.Received()[0].Header
	if got := h["traceparent"]; len(got) != 1 || got[0] != traceparent {
		t.Errorf("traceparent = %q in %v", got, h)
	}
	if got := h["tracestate"]; len(got) != 1 || got[0] != "congo=t61rcWkgMzE" {
		t.Errorf("tracestate = %q in %v", got, h)
	}
	ms, err := strconv.Atoi(h.Get("tandem-timeout"))
	if err != nil || ms <= 0 || ms > 5000 {
		t.Errorf("tandem-timeout = %q, want milliseconds in (0, 5000]", h.Get("tandem-timeout"))
	}
	deadline, _ := ctx.Deadline()
	if got, want := h.Get("tandem-deadline"), strconv.FormatInt(deadline.UnixMilli(), 10); got != want {
		t.Errorf("tandem-deadline = %q, want the caller's deadline in Unix ms, %s", got, want)
	}
	if id := h.Get("tandem-request-id"); len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Errorf("tandem-request-id = %q, want 32 hex digits", id)
	}
	for key := range h {
		if key != strings.ToLower(key) {
			t.Errorf("header key %q is not lowercase", key)
		}
	}
}

// Model names that are not subject tokens never reach NATS: none could name
// a model a worker serves, and some would be wildcards.
func TestModelNames(t *testing.T) {
	ns := startServer(t, "127.0.0.1:0", 1<<20)
	w := startWorker(t, ns.ClientURL(), echo(t))
	tr := newTransport(t, natstransport.Config{Server: ns})
	tests := []struct {
		model string
		want  codes.Code
	}{
		{"", codes.InvalidArgument},
		{"a.b", codes.NotFound},
		{"*", codes.NotFound},
		{">", codes.NotFound},
		{"digits.*", codes.NotFound},
		{"two words", codes.NotFound},
		{"tab\there", codes.NotFound},
		{"line\r\nbreak", codes.NotFound},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.model), func(t *testing.T) {
			_, err := tr.ModelInfer(bounded(t), &pb.ModelInferRequest{ModelName: tt.model})
			if code := status.Code(err); code != tt.want {
				t.Errorf("ModelInfer: %v, want %v", err, tt.want)
			}
			_, err = tr.ModelReady(bounded(t), &pb.ModelReadyRequest{Name: tt.model})
			if code := status.Code(err); code != tt.want {
				t.Errorf("ModelReady: %v, want %v", err, tt.want)
			}
			_, err = tr.ModelMetadata(bounded(t), &pb.ModelMetadataRequest{Name: tt.model})
			if code := status.Code(err); code != tt.want {
				t.Errorf("ModelMetadata: %v, want %v", err, tt.want)
			}
		})
	}
	if n := len(w.Received()); n != 0 {
		t.Errorf("the worker got %d messages", n)
	}
}

// After the server restarts on the same port, the transport reconnects by
// itself; while it is down, calls are UNAVAILABLE at once.
func TestReconnect(t *testing.T) {
	ns := startServer(t, "127.0.0.1:0", 1<<20)
	addr := ns.Addr().String()
	url := ns.ClientURL()
	startWorker(t, url, echo(t))
	tr := newTransport(t, natstransport.Config{URL: url})
	ready := func() error {
		ctx, cancel := context.WithTimeout(bounded(t), time.Second)
		defer cancel()
		_, err := tr.ServerReady(ctx, &pb.ServerReadyRequest{})
		return err
	}
	testkit.Eventually(t, "the server to be ready", func() bool { return ready() == nil })

	ns.Stop()
	// A request sent just before the client saw the connection drop is
	// lost; once it has seen it, calls fail at once.
	testkit.Eventually(t, "UNAVAILABLE with the server down", func() bool {
		return status.Code(ready()) == codes.Unavailable
	})
	startServer(t, addr, 1<<20)
	testkit.Eventually(t, "the server to be ready", func() bool { return ready() == nil }) // the worker reconnects as well
}

// A gateway may start before its NATS server: calls are UNAVAILABLE until
// the server is up, and then succeed without a restart.
func TestConnectLater(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	tr := newTransport(t, natstransport.Config{URL: "nats://" + addr})
	_, err = tr.ServerReady(bounded(t), &pb.ServerReadyRequest{})
	want := "not connected to the NATS server (nats://" + addr + "); reconnecting"
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != want {
		t.Errorf("before the server is up: %v, want UNAVAILABLE %q", err, want)
	}
	ns := startServer(t, addr, 1<<20)
	startWorker(t, ns.ClientURL(), echo(t))
	testkit.Eventually(t, "the server to be up", func() bool {
		_, err := tr.ServerReady(bounded(t), &pb.ServerReadyRequest{})
		return err == nil
	})
}

func TestHeaderCarrier(t *testing.T) {
	h := nats.Header{}
	c := natstransport.HeaderCarrier(h)
	c.Set("Traceparent", "a")
	c.Set("BAGGAGE", "b")
	if h.Get("traceparent") != "a" || h.Get("baggage") != "b" || len(h) != 2 {
		t.Errorf("header %v, want lowercase keys", h)
	}
	if c.Get("TRACEPARENT") != "a" || len(c.Keys()) != 2 {
		t.Errorf("Get or Keys do not see what Set wrote: %v", h)
	}
}
