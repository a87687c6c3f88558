// Package natstest is the NATS test kit: a real nats-server in process and a
// Go test double of the Python NATS worker (proto/README.md's mapping), so
// that the transport's and the gateway's tests speak to the same fake.
package natstest

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/natsserver"
)

// QueueGroup is the workers' queue group (proto/README.md).
const QueueGroup = "tandem-inference"

// StartServer runs a real nats-server on listen ("127.0.0.1:0" for any free
// port), ready for connections, until the end of the test.
func StartServer(t testing.TB, listen string, maxPayload int) *natsserver.Server {
	t.Helper()
	ns, err := natsserver.Start(natsserver.Config{Listen: listen, MaxPayload: maxPayload})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Stop)
	return ns
}

// Worker is a test double of the Python NATS worker: it answers every
// subject under its prefix in the workers' queue group, through handle, and
// keeps what arrived.
type Worker struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

// StartWorker connects a worker to url until the end of the test; handle
// returns each request's reply, or nil to drop it (as a killed worker does).
// It reconnects by itself when the server restarts.
func StartWorker(t testing.TB, url, prefix string, handle func(m *nats.Msg) *nats.Msg) *Worker {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	w := &Worker{}
	_, err = nc.QueueSubscribe(prefix+".>", QueueGroup, func(m *nats.Msg) {
		if m.Subject == prefix+".cancel" {
			return // not a request; a real worker has its own subscription
		}
		w.mu.Lock()
		w.msgs = append(w.msgs, m)
		w.mu.Unlock()
		if reply := handle(m); reply != nil {
			_ = m.RespondMsg(reply)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return w
}

// Received is what arrived, in order.
func (w *Worker) Received() []*nats.Msg {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*nats.Msg(nil), w.msgs...)
}

// Reply encodes a protobuf reply.
func Reply(t testing.TB, m proto.Message) *nats.Msg {
	data, err := proto.Marshal(m)
	if err != nil {
		t.Error(err)
	}
	return &nats.Msg{Data: data}
}

// ErrorReply is a worker's error reply: headers, empty body.
func ErrorReply(code, msg string) *nats.Msg {
	return &nats.Msg{Header: nats.Header{"Nats-Service-Error-Code": {code}, "Nats-Service-Error": {msg}}}
}

// Echo answers each RPC under prefix as a healthy worker would: ready
// only for the model "digits", and an inference with the model it named,
// version "1" and the request's id.
func Echo(t testing.TB, prefix string) func(m *nats.Msg) *nats.Msg {
	return func(m *nats.Msg) *nats.Msg {
		switch {
		case m.Subject == prefix+".server.live":
			return Reply(t, &pb.ServerLiveResponse{Live: true})
		case m.Subject == prefix+".server.ready":
			return Reply(t, &pb.ServerReadyResponse{Ready: true})
		case m.Subject == prefix+".server.metadata":
			return Reply(t, &pb.ServerMetadataResponse{Name: "worker"})
		case strings.HasSuffix(m.Subject, ".ready"):
			var req pb.ModelReadyRequest
			_ = proto.Unmarshal(m.Data, &req)
			return Reply(t, &pb.ModelReadyResponse{Ready: req.GetName() == "digits"})
		case strings.HasSuffix(m.Subject, ".metadata"):
			var req pb.ModelMetadataRequest
			_ = proto.Unmarshal(m.Data, &req)
			return Reply(t, &pb.ModelMetadataResponse{Name: req.GetName(), Platform: "onnxruntime"})
		case strings.HasSuffix(m.Subject, ".infer"):
			var req pb.ModelInferRequest
			_ = proto.Unmarshal(m.Data, &req)
			return Reply(t, &pb.ModelInferResponse{ModelName: req.GetModelName(), ModelVersion: "1", Id: req.GetId()})
		}
		return ErrorReply("500", "unexpected subject "+m.Subject)
	}
}
