package natstransport_test

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/natstest"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/natstransport"
)

// Triton's extensions go out on the subjects of proto/README.md, and the
// statistics of every model are asked of each loaded model in turn.
func TestTritonExtensions(t *testing.T) {
	ns := startServer(t, "127.0.0.1:0", 1<<20)
	w := startWorker(t, ns.ClientURL(), func(m *nats.Msg) *nats.Msg {
		switch m.Subject {
		case prefix + ".models.digits.config":
			return natstest.Reply(t, &pb.ModelConfigResponse{Config: &pb.ModelConfig{Name: "digits"}})
		case prefix + ".repository.index":
			return natstest.Reply(t, &pb.RepositoryIndexResponse{Models: []*pb.RepositoryIndexResponse_ModelIndex{
				{Name: "digits", Version: "1", State: "READY"},
				{Name: "digits", Version: "2", State: "READY"},
				{Name: "off", State: "UNAVAILABLE", Reason: "unloaded"},
				{Name: "torch", Version: "1", State: "READY"},
			}})
		case prefix + ".repository.load":
			return natstest.Reply(t, &pb.RepositoryModelLoadResponse{})
		case prefix + ".repository.unload":
			return natstest.Reply(t, &pb.RepositoryModelUnloadResponse{})
		}
		if model, ok := strings.CutSuffix(strings.TrimPrefix(m.Subject, prefix+".models."), ".stats"); ok {
			return natstest.Reply(t, &pb.ModelStatisticsResponse{ModelStats: []*pb.ModelStatistics{{Name: model, InferenceCount: 1}}})
		}
		return natstest.ErrorReply("INTERNAL", "unexpected "+m.Subject)
	})
	// Under Retry, as the gateway runs it: one request id for the call.
	tr := transport.NewClient(transport.Chain(newInvoker(t, natstransport.Config{Server: ns}), transport.Retry))
	ctx := bounded(t)

	subjects := func() []string {
		var s []string
		for _, m := range w.Received() {
			s = append(s, m.Subject)
		}
		return s
	}
	expect := func(want ...string) {
		t.Helper()
		got := subjects()
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("subjects %v, want %v", got, want)
		}
	}

	cfg, err := tr.ModelConfig(ctx, &pb.ModelConfigRequest{Name: "digits"})
	if err != nil || cfg.GetConfig().GetName() != "digits" {
		t.Fatalf("ModelConfig: %v %v", cfg, err)
	}
	expect(prefix + ".models.digits.config")

	one, err := tr.ModelStatistics(ctx, &pb.ModelStatisticsRequest{Name: "torch"})
	if err != nil || len(one.GetModelStats()) != 1 || one.GetModelStats()[0].GetName() != "torch" {
		t.Fatalf("ModelStatistics(torch): %v %v", one, err)
	}
	all, err := tr.ModelStatistics(ctx, &pb.ModelStatisticsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := &pb.ModelStatisticsResponse{ModelStats: []*pb.ModelStatistics{{Name: "digits", InferenceCount: 1}, {Name: "torch", InferenceCount: 1}}}
	if !proto.Equal(all, want) {
		t.Errorf("every model's statistics: %v, want %v", all, want)
	}
	if _, err := tr.RepositoryModelLoad(ctx, &pb.RepositoryModelLoadRequest{ModelName: "digits"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.RepositoryModelUnload(ctx, &pb.RepositoryModelUnloadRequest{ModelName: "digits"}); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, m := range w.Received() {
		ids[m.Header.Get(natstransport.HeaderRequestID)] = true
	}
	if len(ids) != len(w.Received()) {
		t.Errorf("%d request ids for %d requests: a worker would answer a repeated id with its first reply", len(ids), len(w.Received()))
	}
	expect(prefix+".models.digits.config", prefix+".models.torch.stats",
		prefix+".repository.index", prefix+".models.digits.stats", prefix+".models.torch.stats",
		prefix+".repository.load", prefix+".repository.unload")
}

// A model in the repository whose subjects nobody serves (unloaded) is not
// ready; one the repository does not know is NOT_FOUND.
func TestModelReadyUnloaded(t *testing.T) {
	ns := startServer(t, "127.0.0.1:0", 1<<20)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	for subject, reply := range map[string]proto.Message{
		prefix + ".server.live":      &pb.ServerLiveResponse{Live: true},
		prefix + ".repository.index": &pb.RepositoryIndexResponse{Models: []*pb.RepositoryIndexResponse_ModelIndex{{Name: "off", State: "UNAVAILABLE", Reason: "unloaded"}}},
	} {
		if _, err := nc.QueueSubscribe(subject, natstest.QueueGroup, func(m *nats.Msg) {
			_ = m.RespondMsg(natstest.Reply(t, reply))
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	tr := newTransport(t, natstransport.Config{Server: ns})
	resp, err := tr.ModelReady(bounded(t), &pb.ModelReadyRequest{Name: "off"})
	if err != nil || resp.GetReady() {
		t.Errorf("unloaded model: %v %v, want not ready", resp, err)
	}
	if _, err := tr.ModelReady(bounded(t), &pb.ModelReadyRequest{Name: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown model: %v, want NOT_FOUND", err)
	}
}
