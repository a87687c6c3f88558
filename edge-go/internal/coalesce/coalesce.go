// Package coalesce merges concurrent infer requests for the same model into
// fewer, larger calls to the inference service, and splits each answer back
// per caller. The service's cost is per call (decoding, queueing, the event
// loop), not per row, so one call of 64 rows costs little more than one of 1.
//
// It is a transport.Middleware, so both edges (REST and gRPC) and both
// transports get it. Only the models a rule names are coalesced, and it
// never delays a request that has nothing to merge with: while fewer than
// MaxInFlight calls are in flight for a key, a request goes out at once; only
// beyond that do arrivals queue, and each call that finishes sends whatever
// queued (up to MaxRows) as its successor.
package coalesce

import (
	"context"
	"errors"
	"maps"
	"math"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
)

// Middleware coalesces the infer requests of the models rules name with
// Coalesce set and passes every other call to next as it is.
// maxMessageBytes bounds the size of a merged request: merging never builds
// one that the hop would refuse. A coalesced request's wait to be sent and
// its call share one bound, its context's deadline.
func Middleware(rules map[string]Rule, maxMessageBytes int) transport.Middleware {
	active := map[string]Rule{}
	for name, r := range rules {
		if r.Coalesce {
			if r.MaxQueueRows <= 0 {
				r.MaxQueueRows = QueueRowsPerMaxRows * r.MaxRows
			}
			active[name] = r
		}
	}
	if maxMessageBytes <= 0 {
		maxMessageBytes = math.MaxInt
	}
	return func(next transport.Invoker) transport.Invoker {
		if len(active) == 0 {
			return next
		}
		return &coalescer{next: next, rules: active, maxBytes: maxMessageBytes, lanes: map[string]*lane{}}
	}
}

type coalescer struct {
	next     transport.Invoker
	rules    map[string]Rule
	maxBytes int

	mu    sync.Mutex
	lanes map[string]*lane // by signature; removed when idle
}

// A lane is the calls in flight and the requests queued for one key.
// Invariant: requests queue only while inFlight == rule.MaxInFlight.
type lane struct {
	key       string
	rule      Rule
	inFlight  int
	queue     []*waiter
	queueRows int // the rows of queue, at most rule.MaxQueueRows
}

// A waiter is a caller queued in a lane.
type waiter struct {
	ctx  context.Context
	req  *pb.ModelInferRequest
	sig  *signature
	done chan result // buffered: the sender never waits for the caller
	// Guarded by coalescer.mu:
	queued bool
	left   bool        // its caller has gone
	call   *mergedCall // the call that took it, once taken
}

type result struct {
	resp *pb.ModelInferResponse
	err  error
	solo bool // send the request on its own (the merged call could not serve it)
}

// A mergedCall is one call made for several waiters; its context ends when
// the last of them has left.
type mergedCall struct {
	cancel context.CancelFunc
	left   int // guarded by coalescer.mu
	size   int
}

func (c *coalescer) Invoke(ctx context.Context, rpc transport.RPC, req proto.Message) (proto.Message, error) {
	if infer, ok := req.(*pb.ModelInferRequest); ok && rpc == transport.ModelInfer {
		return c.modelInfer(ctx, infer)
	}
	return c.next.Invoke(ctx, rpc, req)
}

func (c *coalescer) Close() error { return c.next.Close() }

// call sends one request to next.
func (c *coalescer) call(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	return transport.NewClient(c.next).ModelInfer(ctx, req)
}

func (c *coalescer) modelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	rule, ok := c.rules[req.GetModelName()]
	if !ok {
		return c.call(ctx, req)
	}
	sig, ok := signatureOf(req)
	if !ok || sig.rows > rule.MaxRows {
		return c.call(ctx, req)
	}

	c.mu.Lock()
	l := c.lanes[sig.key]
	if l == nil {
		l = &lane{key: sig.key, rule: rule}
		c.lanes[sig.key] = l
	}
	if l.inFlight < rule.MaxInFlight {
		// Nothing to wait for: go at once, on the caller's own goroutine.
		l.inFlight++
		c.mu.Unlock()
		resp, err := c.call(ctx, req)
		if next := c.finished(l); next != nil {
			go c.run(l, next)
		}
		return resp, err
	}
	if l.queueRows+sig.rows > rule.MaxQueueRows {
		c.mu.Unlock()
		return nil, queueFull(req.GetModelName(), rule.MaxQueueRows)
	}
	w := &waiter{ctx: ctx, req: req, sig: sig, done: make(chan result, 1), queued: true}
	l.queue = append(l.queue, w)
	l.queueRows += sig.rows
	c.mu.Unlock()

	select {
	case r := <-w.done:
		if r.solo {
			return c.call(ctx, req)
		}
		return r.resp, r.err
	case <-ctx.Done():
		wasQueued := c.leave(l, w)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			if wasQueued {
				return nil, status.Errorf(codes.DeadlineExceeded,
					"no answer in time: the request for model %q waited behind other calls to be sent until its deadline", req.GetModelName())
			}
			return nil, status.Errorf(codes.DeadlineExceeded,
				"no answer in time: the call that carried the request for model %q, merged with others, did not return before its deadline", req.GetModelName())
		}
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// ErrQueueFull is what a request gets when its lane's queue holds
// max_queue_rows already: RESOURCE_EXHAUSTED (429 with Retry-After), at
// once, since waiting behind that many rows would not be served in time.
var ErrQueueFull = errors.New("coalesce: queue full")

// queueRetryAfter is the retry delay a queue-full refusal suggests.
const queueRetryAfter = time.Second

func queueFull(model string, maxRows int) error {
	st := status.Newf(codes.ResourceExhausted,
		"model %q is overloaded: %d rows already wait to be sent (max_queue_rows); retry later", model, maxRows)
	if withInfo, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(queueRetryAfter)}); err == nil {
		st = withInfo
	}
	return &queueFullError{st: st}
}

type queueFullError struct{ st *status.Status }

func (e *queueFullError) Error() string              { return e.st.Message() }
func (e *queueFullError) Is(target error) bool       { return target == ErrQueueFull }
func (e *queueFullError) GRPCStatus() *status.Status { return e.st }

// leave takes a waiter whose caller went away out of its queue, so that it is
// never sent, or, when a call already took it, lets that call end once no
// caller waits for it any more. It reports whether the waiter was queued.
func (c *coalescer) leave(l *lane, w *waiter) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w.queued {
		for i, q := range l.queue {
			if q == w {
				l.queue = append(l.queue[:i], l.queue[i+1:]...)
				l.queueRows -= w.sig.rows
				break
			}
		}
		w.queued = false
		return true
	}
	w.left = true
	if call := w.call; call != nil {
		call.left++
		if call.left == call.size {
			call.cancel()
		}
	}
	return false
}

// finished is called when a call of the lane ends: it takes the next batch
// from the queue, which inherits the call's slot, or frees the slot.
func (c *coalescer) finished(l *lane) []*waiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(l.queue) == 0 {
		l.inFlight--
		if l.inFlight == 0 {
			delete(c.lanes, l.key)
		}
		return nil
	}
	rows, bytes := 0, 0
	n := 0
	for _, w := range l.queue {
		if n > 0 && (rows+w.sig.rows > l.rule.MaxRows || bytes+w.sig.bytes > c.maxBytes-w.sig.overhead) {
			break
		}
		rows += w.sig.rows
		bytes += w.sig.bytes
		n++
	}
	batch := make([]*waiter, n)
	copy(batch, l.queue)
	// Shift rather than reslice, so the queue's array does not creep
	// forward and keep taken waiters alive.
	rest := copy(l.queue, l.queue[n:])
	clear(l.queue[rest:])
	l.queue = l.queue[:rest]
	l.queueRows -= rows
	for _, w := range batch {
		w.queued = false
	}
	return batch
}

// run makes the calls of one slot of the lane until its queue is empty.
func (c *coalescer) run(l *lane, batch []*waiter) {
	for batch != nil {
		if len(batch) == 1 {
			w := batch[0]
			resp, err := c.call(w.ctx, w.req)
			w.done <- result{resp: resp, err: err}
		} else {
			c.merged(batch)
		}
		batch = c.finished(l)
	}
}

// merged makes one call for a batch of waiters and answers each of them.
func (c *coalescer) merged(batch []*waiter) {
	ctx, call := c.mergedContext(batch)
	defer call.cancel()
	req, buf := merge(batch)
	resp, err := c.call(ctx, req)
	putBuffers(buf)
	if err != nil {
		// A request the service refuses never fails the others: each is
		// sent again on its own, and the bad one gets its own answer.
		solo := status.Code(err) == codes.InvalidArgument
		for _, w := range batch {
			w.done <- result{err: err, solo: solo}
		}
		return
	}
	parts, ok := split(resp, batch)
	for i, w := range batch {
		if !ok {
			// An answer that cannot be split by rows (a model without a
			// batch dimension that a rule names by mistake, typed
			// contents): each request goes on its own.
			w.done <- result{solo: true}
			continue
		}
		w.done <- result{resp: parts[i]}
	}
}

// mergedContext is the context of a merged call: the first caller's values
// (its trace), the latest of the callers' deadlines, and cancelled when every
// caller has left.
func (c *coalescer) mergedContext(batch []*waiter) (context.Context, *mergedCall) {
	var deadline time.Time
	bounded := true
	for _, w := range batch {
		d, ok := w.ctx.Deadline()
		if !ok {
			bounded = false
			break
		}
		if d.After(deadline) {
			deadline = d
		}
	}
	ctx := context.WithoutCancel(batch[0].ctx)
	var cancel context.CancelFunc
	if bounded {
		ctx, cancel = context.WithDeadline(ctx, deadline)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	call := &mergedCall{cancel: cancel, size: len(batch)}
	c.mu.Lock()
	for _, w := range batch {
		w.call = call
		if w.left { // left between being taken and now
			call.left++
		}
	}
	if call.left == call.size {
		cancel()
	}
	c.mu.Unlock()
	return ctx, call
}

// split cuts a merged response into one response per waiter, each holding
// its own rows: sub-slices of the merged raw outputs, not copies.
func split(resp *pb.ModelInferResponse, batch []*waiter) ([]*pb.ModelInferResponse, bool) {
	outputs, raw := resp.GetOutputs(), resp.GetRawOutputContents()
	if len(raw) != len(outputs) {
		return nil, false
	}
	total := 0
	for _, w := range batch {
		total += w.sig.rows
	}
	// Where each output's rows start, per waiter, plus the end.
	cuts := make([][]int, len(outputs))
	for i, out := range outputs {
		shape := out.GetShape()
		if len(shape) == 0 || shape[0] != int64(total) || out.GetContents() != nil {
			return nil, false
		}
		var ok bool
		if cuts[i], ok = rowCuts(out.GetDatatype(), shape, raw[i], batch); !ok {
			return nil, false
		}
	}
	// One allocation per kind of thing for the whole batch, rather than
	// one per caller and output.
	n, m := len(batch), len(outputs)
	parts := make([]*pb.ModelInferResponse, n)
	resps := make([]pb.ModelInferResponse, n)
	tensors := make([]pb.ModelInferResponse_InferOutputTensor, n*m)
	tensorPtrs := make([]*pb.ModelInferResponse_InferOutputTensor, n*m)
	raws := make([][]byte, n*m)
	dims := 0
	for _, out := range outputs {
		dims += len(out.GetShape())
	}
	shapes := make([]int64, n*dims)
	for k, w := range batch {
		part := &resps[k]
		part.ModelName = resp.GetModelName()
		part.ModelVersion = resp.GetModelVersion()
		part.Id = w.req.GetId()
		// Each caller's own: the REST handler takes server_timing out.
		part.Parameters = maps.Clone(resp.GetParameters())
		part.Outputs = tensorPtrs[k*m : (k+1)*m : (k+1)*m]
		part.RawOutputContents = raws[k*m : (k+1)*m : (k+1)*m]
		for i, out := range outputs {
			shape := shapes[:len(out.GetShape()):len(out.GetShape())]
			shapes = shapes[len(shape):]
			copy(shape, out.GetShape())
			shape[0] = int64(w.sig.rows)
			t := &tensors[k*m+i]
			t.Name, t.Datatype, t.Shape = out.GetName(), out.GetDatatype(), shape
			t.Parameters = maps.Clone(out.GetParameters())
			part.Outputs[i] = t
			part.RawOutputContents[i] = raw[i][cuts[i][k]:cuts[i][k+1]:cuts[i][k+1]]
		}
		parts[k] = part
	}
	return parts, true
}
