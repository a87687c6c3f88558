package metrics

import (
	"context"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
)

// Hop returns next with every failed attempt on the hop counted in
// tandem_gateway_hop_errors_total by transport.ErrorKind. Put it under
// transport.WithRetry, so that an attempt that is retried counts too.
func (m *Metrics) Hop(next transport.Transport) transport.Transport {
	if m == nil {
		return next
	}
	return &hop{next: next, m: m}
}

type hop struct {
	next transport.Transport
	m    *Metrics
}

func (h *hop) ServerLive(ctx context.Context, req *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	resp, err := h.next.ServerLive(ctx, req)
	return resp, h.m.note(err)
}

func (h *hop) ServerReady(ctx context.Context, req *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
	resp, err := h.next.ServerReady(ctx, req)
	return resp, h.m.note(err)
}

func (h *hop) ModelReady(ctx context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	resp, err := h.next.ModelReady(ctx, req)
	return resp, h.m.note(err)
}

func (h *hop) ServerMetadata(ctx context.Context, req *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error) {
	resp, err := h.next.ServerMetadata(ctx, req)
	return resp, h.m.note(err)
}

func (h *hop) ModelMetadata(ctx context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	resp, err := h.next.ModelMetadata(ctx, req)
	return resp, h.m.note(err)
}

func (h *hop) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	resp, err := h.next.ModelInfer(ctx, req)
	return resp, h.m.note(err)
}

func (h *hop) Close() error { return h.next.Close() }

// note counts err when it is a failure of the hop, and returns it.
func (m *Metrics) note(err error) error {
	if kind := transport.ErrorKind(err); kind != "" {
		m.HopError(kind)
	}
	return err
}
