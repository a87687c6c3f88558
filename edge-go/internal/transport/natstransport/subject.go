package natstransport

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tandem-ml/tandem/edge-go/internal/natssubject"
)

// subjects names the subject of each RPC under a prefix (proto/README.md).
type subjects struct{ prefix string }

// server is the subject of a server-wide RPC: "<prefix>.server.<rpc>".
func (s subjects) server(rpc string) string {
	return s.prefix + ".server." + rpc
}

// repository is the subject of a repository RPC: "<prefix>.repository.<rpc>".
func (s subjects) repository(rpc string) string {
	return s.prefix + ".repository." + rpc
}

// cancel is the subject of cancels: "<prefix>.cancel".
func (s subjects) cancel() string {
	return s.prefix + ".cancel"
}

// model is the subject of a per-model RPC: "<prefix>.models.<model>.<rpc>".
// A name that cannot be a subject token names no model a worker can serve.
func (s subjects) model(model, rpc string) (string, error) {
	if model == "" {
		return "", status.Error(codes.InvalidArgument, "the model name is empty")
	}
	if !natssubject.ValidToken(model) {
		return "", status.Errorf(codes.NotFound,
			"unknown model %q: over NATS a model name is a subject token, without '.', '*', '>' or whitespace", model)
	}
	return s.prefix + ".models." + model + "." + rpc, nil
}
