package edge

import (
	"context"
	"errors"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tandem-ml/tandem/edge-go/internal/coalesce"
	"github.com/tandem-ml/tandem/edge-go/internal/limit"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
)

// Admit refuses infer calls the gateway cannot serve in time, at once,
// rather than queueing them: past --max-in-flight for the model (429 with
// Retry-After / RESOURCE_EXHAUSTED), or with a remaining deadline shorter
// than the model's expected latency (504 / DEADLINE_EXCEEDED, naming both).
// It goes on top of the chain both edges share, so the count is the
// model's across REST and gRPC, and the latency it learns is the whole
// call's, a coalesced request's wait included. refused is told of every
// refusal, a full coalescing queue's among them, by its reason.
func Admit(l *limit.InFlight, refused func(model, reason string)) transport.Middleware {
	return func(next transport.Invoker) transport.Invoker {
		return transport.Wrap(next, func(ctx context.Context, rpc transport.RPC, req proto.Message) (proto.Message, error) {
			if rpc != transport.ModelInfer {
				return next.Invoke(ctx, rpc, req)
			}
			model := transport.ModelOf(req)
			if err := l.Admit(ctx, model); err != nil {
				refused(model, limit.Reason(err))
				return nil, err
			}
			release, err := l.Acquire(model)
			if err != nil {
				refused(model, limit.Reason(err))
				return nil, err
			}
			start := time.Now()
			resp, err := next.Invoke(ctx, rpc, req)
			release(err == nil, time.Since(start))
			if errors.Is(err, coalesce.ErrQueueFull) {
				refused(model, limit.ReasonOverloaded)
			}
			return resp, err
		})
	}
}
