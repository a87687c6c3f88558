package coalesce

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/oiptest"
	"github.com/tandem-ml/tandem/edge-go/internal/testkit"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/grpctransport"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/transporttest"
)

// double is the inference service for these tests: it derives its outputs
// from its inputs row by row, so a merged call split back gives each caller
// exactly what a call of its own would, and it records every call it sees.
type double struct {
	mu    sync.Mutex
	calls []seen
	// gate, when set, holds every call until it is closed.
	gate chan struct{}
	// fail, when set, decides the error of a call from its first column.
	fail func(firsts []float32) error
}

type seen struct {
	rows    int
	firsts  []float32 // the first element of every row: the tests' request marks
	version string
	params  int
}

// answer is the double's output for FP32 [n, k] "x": "sum" FP32 [n] of each
// row, and "echo", the input itself with its datatype and shape.
func answer(req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	in := req.GetInputs()[0]
	raw := req.GetRawInputContents()[0]
	rows := int(in.GetShape()[0])
	width := len(raw) / max(rows, 1)
	var sum []byte
	for r := range rows {
		s := float32(0)
		for i := r * width; i < (r+1)*width && in.GetDatatype() == "FP32"; i += 4 {
			s += math.Float32frombits(binary.LittleEndian.Uint32(raw[i:]))
		}
		sum = binary.LittleEndian.AppendUint32(sum, math.Float32bits(s))
	}
	all := map[string]*pb.ModelInferResponse_InferOutputTensor{
		"sum":  {Name: "sum", Datatype: "FP32", Shape: []int64{int64(rows)}},
		"echo": {Name: "echo", Datatype: in.GetDatatype(), Shape: in.GetShape()},
	}
	contents := map[string][]byte{"sum": sum, "echo": raw}
	names := []string{"sum", "echo"}
	if len(req.GetOutputs()) > 0 {
		names = nil
		for _, o := range req.GetOutputs() {
			names = append(names, o.GetName())
		}
	}
	resp := &pb.ModelInferResponse{
		ModelName:    req.GetModelName(),
		ModelVersion: "v" + req.GetModelVersion(),
		Id:           req.GetId(),
		Parameters:   map[string]*pb.InferParameter{"server_timing": {ParameterChoice: &pb.InferParameter_StringParam{StringParam: "queue;dur=1"}}},
	}
	for _, n := range names {
		resp.Outputs = append(resp.Outputs, all[n])
		resp.RawOutputContents = append(resp.RawOutputContents, contents[n])
	}
	return resp, nil
}

func (d *double) ModelInfer(_ context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	in := req.GetInputs()[0]
	if c := in.GetContents(); c != nil { // typed contents: as raw, as the service reads them
		var raw []byte
		for _, v := range c.GetFp32Contents() {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
		}
		req.RawInputContents, in.Contents = [][]byte{raw}, nil
	}
	rows := int(in.GetShape()[0])
	raw := req.GetRawInputContents()[0]
	if rows <= 0 || len(raw) != rows*int(in.GetShape()[1])*4 {
		return nil, status.Errorf(codes.InvalidArgument, "raw contents of %d bytes for shape %v", len(raw), in.GetShape())
	}
	var firsts []float32
	if rows > 0 && req.GetInputs()[0].GetDatatype() == "FP32" {
		width := len(raw) / rows
		for r := range rows {
			firsts = append(firsts, math.Float32frombits(binary.LittleEndian.Uint32(raw[r*width:])))
		}
	}
	d.mu.Lock()
	d.calls = append(d.calls, seen{rows: rows, firsts: firsts, version: req.GetModelVersion(), params: len(req.GetParameters())})
	gate, fail := d.gate, d.fail
	d.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if fail != nil {
		if err := fail(firsts); err != nil {
			return nil, err
		}
	}
	return answer(req)
}

func (d *double) seen() []seen {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

// setup serves d and returns the coalescer over it and the plain transport
// beneath.
func setup(t *testing.T, d *double, rule Rule) (*coalescer, transport.Client) {
	t.Helper()
	srv := oiptest.Start(t, "127.0.0.1:0", &transporttest.Double{ModelInferFunc: d.ModelInfer})
	plain, err := grpctransport.New(grpctransport.Config{Addr: srv.Addr, MaxMessageBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = plain.Close() })
	rule.Coalesce = true
	return coalescing(plain, rule), transport.NewClient(plain)
}

// coalescing is the coalescer over next, with rule for the model "m".
func coalescing(next transport.Invoker, rule Rule) *coalescer {
	rule.Coalesce = true
	return Middleware(map[string]Rule{"m": rule}, 4<<20)(next).(*coalescer)
}

// ModelInfer calls c as the handlers do, through the typed client.
func (c *coalescer) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	return transport.NewClient(c).ModelInfer(ctx, req)
}

// request is an FP32 [rows, width] request whose row r starts with mark+r.
func request(mark float32, rows, width int) *pb.ModelInferRequest {
	var raw []byte
	for r := range rows {
		for i := range width {
			v := float32(i) / 8
			if i == 0 {
				v = mark + float32(r)
			}
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
		}
	}
	return &pb.ModelInferRequest{
		ModelName: "m",
		Id:        fmt.Sprintf("req-%v", mark),
		Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "x", Datatype: "FP32", Shape: []int64{int64(rows), int64(width)}},
		},
		RawInputContents: [][]byte{raw},
	}
}

// queued is how many callers wait in all lanes.
func (c *coalescer) queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, l := range c.lanes {
		n += len(l.queue)
	}
	return n
}

func mustEqual(t *testing.T, what string, got, want *pb.ModelInferResponse) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Errorf("%s:\n got %v\nwant %v", what, got, want)
	}
}

func TestConcurrentCallersGetTheirOwnAnswers(t *testing.T) {
	d := &double{gate: make(chan struct{})}
	c, plain := setup(t, d, Rule{MaxRows: 64, MaxInFlight: 2, MaxQueueRows: 1 << 20}) // every caller queues
	const n = 1000
	reqs := make([]*pb.ModelInferRequest, n)
	for i := range reqs {
		reqs[i] = request(float32(i*10), 1+i%3, 8)
		if i%4 == 0 {
			reqs[i].Outputs = []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "sum"}}
		}
	}
	got := make([]*pb.ModelInferResponse, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range reqs {
		wg.Go(func() { got[i], errs[i] = c.ModelInfer(t.Context(), reqs[i]) })
	}
	// Two calls in flight in each of the two lanes (outputs differ), held
	// by the gate; everyone else queued.
	testkit.Eventually(t, "the callers to queue", func() bool { return c.queued() == n-4 })
	d.mu.Lock()
	close(d.gate)
	d.gate = nil
	d.mu.Unlock()
	wg.Wait()

	for i := range reqs {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		want, err := plain.ModelInfer(t.Context(), reqs[i]) // uncoalesced
		if err != nil {
			t.Fatal(err)
		}
		mustEqual(t, fmt.Sprintf("request %d", i), got[i], want)
	}
	calls, rows := 0, 0
	for _, s := range d.seen() {
		if s.rows > 64 {
			t.Errorf("a call of %d rows, above max_rows 64", s.rows)
		}
		if s.rows > 3 {
			calls++
		}
		rows += s.rows
	}
	if calls == 0 {
		t.Errorf("no call was merged")
	}
}

func TestOneAtATimeNeverWaits(t *testing.T) {
	d := &double{}
	c, _ := setup(t, d, Rule{MaxRows: 128, MaxInFlight: 1})
	for i := range 20 {
		req := request(float32(i*10), 1+i%2, 4)
		resp, err := c.ModelInfer(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := answer(req)
		mustEqual(t, "answer", resp, want)
	}
	calls := d.seen()
	if len(calls) != 20 {
		t.Fatalf("the service saw %d calls for 20 requests", len(calls))
	}
	for i, s := range calls {
		if s.rows != 1+i%2 {
			t.Errorf("call %d has %d rows: merged", i, s.rows)
		}
	}
}

func TestIncompatibleRequestsNeverMerge(t *testing.T) {
	withParam := request(3000, 1, 4)
	withParam.Parameters = map[string]*pb.InferParameter{"p": {ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: true}}}
	version := request(4000, 1, 4)
	version.ModelVersion = "2"
	outputs := request(5000, 1, 4)
	outputs.Outputs = []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "echo"}}
	int32s := request(6000, 1, 4)
	int32s.Inputs[0].Datatype = "INT32"
	typed := request(7000, 1, 4)
	typed.RawInputContents = nil
	typed.Inputs[0].Contents = &pb.InferTensorContents{Fp32Contents: []float32{7000, 1, 2, 3}}
	short := request(8000, 2, 4)
	short.RawInputContents[0] = short.RawInputContents[0][:20]
	kinds := []struct {
		name string
		req  *pb.ModelInferRequest
	}{
		{"base", request(1000, 1, 4)},
		{"wider", request(2000, 1, 8)},
		{"parameters", withParam},
		{"version", version},
		{"outputs", outputs},
		{"datatype", int32s},
		{"typed contents", typed},
		{"bad length", short},
	}
	d := &double{gate: make(chan struct{})}
	c, plain := setup(t, d, Rule{MaxRows: 128, MaxInFlight: 1})
	// Hold one call in flight so that the rest queue together.
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = c.ModelInfer(t.Context(), request(0, 1, 4)) })
	testkit.Eventually(t, "the first call", func() bool { return len(d.seen()) == 1 })
	type answerOf struct {
		resp *pb.ModelInferResponse
		err  error
	}
	got := make([][3]answerOf, len(kinds))
	for i, k := range kinds {
		for j := range 3 {
			wg.Go(func() {
				req := proto.Clone(k.req).(*pb.ModelInferRequest)
				resp, err := c.ModelInfer(t.Context(), req)
				got[i][j] = answerOf{resp, err}
			})
		}
	}
	// Three of the first kind queue behind the call held; of the other
	// mergeable kinds, one goes at once, in a lane of its own, and two queue
	// behind it. The rest go straight through.
	testkit.Eventually(t, "the callers to queue", func() bool { return c.queued() == 3+4*2 })
	d.mu.Lock()
	close(d.gate)
	d.gate = nil
	d.mu.Unlock()
	wg.Wait()
	for i, k := range kinds {
		want, wantErr := plain.ModelInfer(t.Context(), k.req)
		for j := range 3 {
			if status.Code(got[i][j].err) != status.Code(wantErr) {
				t.Errorf("%s: error %v, want %v", k.name, got[i][j].err, wantErr)
				continue
			}
			if wantErr == nil {
				mustEqual(t, k.name, got[i][j].resp, want)
			}
		}
	}
	// Every call held rows of one kind only: marks are 1000 apart.
	for _, s := range d.seen() {
		for _, f := range s.firsts {
			if int(f)/1000 != int(s.firsts[0])/1000 {
				t.Errorf("a call merged marks %v", s.firsts)
				break
			}
		}
	}
}

func TestQueuedCallerThatLeavesIsNotSent(t *testing.T) {
	d := &double{gate: make(chan struct{})}
	c, _ := setup(t, d, Rule{MaxRows: 128, MaxInFlight: 1})
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = c.ModelInfer(t.Context(), request(0, 1, 4)) })
	testkit.Eventually(t, "the first call", func() bool { return len(d.seen()) == 1 })

	ctx, cancel := context.WithCancel(t.Context())
	left := make(chan error, 1)
	go func() {
		_, err := c.ModelInfer(ctx, request(1000, 1, 4))
		left <- err
	}()
	var stayed error
	wg.Go(func() { _, stayed = c.ModelInfer(t.Context(), request(2000, 1, 4)) })
	testkit.Eventually(t, "two callers to queue", func() bool { return c.queued() == 2 })
	cancel()
	if err := <-left; status.Code(err) != codes.Canceled {
		t.Errorf("the caller that left got %v, want CANCELED", err)
	}
	testkit.Eventually(t, "the caller to leave the queue", func() bool { return c.queued() == 1 })
	d.mu.Lock()
	close(d.gate)
	d.gate = nil
	d.mu.Unlock()
	wg.Wait()
	if stayed != nil {
		t.Errorf("the caller that stayed: %v", stayed)
	}
	for _, s := range d.seen() {
		if slices.Contains(s.firsts, 1000) {
			t.Errorf("the service saw the request of the caller that left")
		}
	}
}

// queueBehindOne holds one call in flight (MaxInFlight 1), queues reqs
// behind it, then lets everything run; it returns each queued caller's answer.
func queueBehindOne(t *testing.T, d *double, rule Rule, reqs []*pb.ModelInferRequest) ([]*pb.ModelInferResponse, []error) {
	t.Helper()
	d.gate = make(chan struct{})
	rule.MaxInFlight = 1
	c, _ := setup(t, d, rule)
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = c.ModelInfer(t.Context(), request(-1000, 1, 4)) })
	testkit.Eventually(t, "the first call", func() bool { return len(d.seen()) == 1 })
	resps := make([]*pb.ModelInferResponse, len(reqs))
	errs := make([]error, len(reqs))
	for i, req := range reqs {
		wg.Go(func() { resps[i], errs[i] = c.ModelInfer(t.Context(), req) })
	}
	mergeable := 0 // the rest go at once, alone
	for _, req := range reqs {
		if req.GetInputs()[0].GetShape()[0] <= int64(rule.MaxRows) {
			mergeable++
		}
	}
	testkit.Eventually(t, "the callers to queue", func() bool { return c.queued() == mergeable })
	d.mu.Lock()
	close(d.gate)
	d.gate = nil
	d.mu.Unlock()
	wg.Wait()
	return resps, errs
}

func TestMergedCallErrors(t *testing.T) {
	bad := float32(2000)
	tests := []struct {
		name string
		fail func([]float32) error
		// want is the code each of the three queued callers gets.
		want [3]codes.Code
		// calls is how many calls the service sees after the first.
		calls int
	}{
		{
			name:  "an error of the merged call reaches every caller",
			fail:  func(f []float32) error { return maybe(len(f) > 1, codes.ResourceExhausted) },
			want:  [3]codes.Code{codes.ResourceExhausted, codes.ResourceExhausted, codes.ResourceExhausted},
			calls: 1,
		},
		{
			name:  "INVALID_ARGUMENT: each request alone, only the bad one fails",
			fail:  func(f []float32) error { return maybe(slices.Contains(f, bad), codes.InvalidArgument) },
			want:  [3]codes.Code{codes.OK, codes.InvalidArgument, codes.OK},
			calls: 1 + 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &double{fail: tt.fail}
			reqs := []*pb.ModelInferRequest{request(1000, 1, 4), request(bad, 1, 4), request(3000, 2, 4)}
			resps, errs := queueBehindOne(t, d, Rule{MaxRows: 128}, reqs)
			for i := range reqs {
				if status.Code(errs[i]) != tt.want[i] {
					t.Errorf("caller %d: %v, want %v", i, errs[i], tt.want[i])
				}
				if errs[i] == nil {
					want, _ := answer(reqs[i])
					mustEqual(t, "answer", resps[i], want)
				}
			}
			if got := len(d.seen()) - 1; got != tt.calls {
				t.Errorf("the service saw %d calls after the first, want %d", got, tt.calls)
			}
		})
	}
}

func maybe(cond bool, code codes.Code) error {
	if !cond {
		return nil
	}
	return status.Error(code, "refused by the double")
}

func TestMaxRows(t *testing.T) {
	d := &double{}
	var reqs []*pb.ModelInferRequest
	for i := range 12 {
		reqs = append(reqs, request(float32(1000*i), 1+i%3, 4)) // 24 rows
	}
	reqs = append(reqs, request(50000, 9, 4)) // above max_rows: alone
	resps, errs := queueBehindOne(t, d, Rule{MaxRows: 8}, reqs)
	for i := range reqs {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		want, _ := answer(reqs[i])
		mustEqual(t, "answer", resps[i], want)
	}
	merged := 0
	for _, s := range d.seen()[1:] {
		if s.rows > 8 && s.firsts[0] != 50000 {
			t.Errorf("a call of %d rows, above max_rows 8", s.rows)
		}
		if s.rows > 3 && s.rows <= 8 {
			merged++
		}
	}
	if merged == 0 {
		t.Errorf("nothing was merged")
	}
}

func TestErrorsAreStatuses(t *testing.T) {
	d := &double{}
	c, _ := setup(t, d, Rule{MaxRows: 8, MaxInFlight: 1})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.ModelInfer(ctx, request(0, 1, 4))
	if status.Code(err) != codes.Canceled {
		t.Errorf("error %v is not a CANCELED status", err)
	}
}

func TestParseRules(t *testing.T) {
	tests := []struct {
		name, text string
		want       map[string]Rule
		wantErr    string
	}{
		{"full", "[models.digits]\ncoalesce = true\nmax_rows = 64\nmax_in_flight = 3\n",
			map[string]Rule{"digits": {Coalesce: true, MaxRows: 64, MaxInFlight: 3, MaxQueueRows: 8 * 64}}, ""},
		{"queue rows", "[models.digits]\ncoalesce = true\nmax_queue_rows = 10\n",
			map[string]Rule{"digits": {Coalesce: true, MaxRows: DefaultMaxRows, MaxInFlight: DefaultMaxInFlight, MaxQueueRows: 10}}, ""},
		{"zero queue", "[models.digits]\nmax_queue_rows = 0\n", nil, "models.digits.max_queue_rows = 0: must be at least 1"},
		{"defaults", "[models.digits]\ncoalesce = true\n",
			map[string]Rule{"digits": {Coalesce: true, MaxRows: DefaultMaxRows, MaxInFlight: DefaultMaxInFlight, MaxQueueRows: 8 * DefaultMaxRows}}, ""},
		{"quoted name", "[models.\"digits-torch\"]\ncoalesce = false\n",
			map[string]Rule{"digits-torch": {MaxRows: DefaultMaxRows, MaxInFlight: DefaultMaxInFlight, MaxQueueRows: 8 * DefaultMaxRows}}, ""},
		{"empty", "", nil, ""},
		{"unknown key", "[models.digits]\ncoalesce = true\nmax_row = 3\n", nil, "unknown keys: models.digits.max_row"},
		{"zero rows", "[models.digits]\nmax_rows = 0\n", nil, "models.digits.max_rows = 0: must be at least 1"},
		{"zero in flight", "[models.digits]\nmax_in_flight = 0\n", nil, "models.digits.max_in_flight = 0: must be at least 1"},
		{"wrong type", "[models.digits]\ncoalesce = \"yes\"\n", nil, "coalesce"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRules(tt.text)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s: got %+v, want %+v", k, got[k], v)
				}
			}
		})
	}
}

// stuck is a hop whose calls return only when released, whatever their
// context says: it holds a lane's slot as long as the test wants.
func stuck(release <-chan struct{}, calls *atomic.Int32) *transporttest.Double {
	return &transporttest.Double{ModelInferFunc: func(_ context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		calls.Add(1)
		<-release
		return answer(req)
	}}
}

// A queued caller whose deadline passes leaves the queue: it is answered
// DEADLINE_EXCEEDED naming the wait, and never sent.
func TestQueuedCallerTimesOut(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	c := coalescing(stuck(release, &calls), Rule{MaxRows: 128, MaxInFlight: 1})
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = c.ModelInfer(t.Context(), request(0, 1, 4)) })
	testkit.Eventually(t, "the first call", func() bool { return calls.Load() == 1 })
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := c.ModelInfer(ctx, request(1000, 1, 4))
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(status.Convert(err).Message(), "waited behind other calls") {
		t.Errorf("queued caller got %v, want DEADLINE_EXCEEDED for its wait", err)
	}
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("the hop saw %d calls, want only the first", n)
	}
}

// A merged call goes on while one of its callers waits for it, and is
// cancelled as soon as the last one has left: the service does not work for
// nobody.
func TestMergedCallIsCancelledWhenEveryCallerLeaves(t *testing.T) {
	release := make(chan struct{})
	merged := make(chan context.Context, 1)
	var calls atomic.Int32
	d := &transporttest.Double{ModelInferFunc: func(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		calls.Add(1)
		if req.GetInputs()[0].GetShape()[0] == 1 { // the first call, alone
			<-release
			return answer(req)
		}
		merged <- ctx
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}}
	c := coalescing(d, Rule{MaxRows: 128, MaxInFlight: 1})
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = c.ModelInfer(t.Context(), request(0, 1, 4)) })
	testkit.Eventually(t, "the first call", func() bool { return calls.Load() == 1 })

	type caller struct {
		cancel context.CancelFunc
		done   chan error
	}
	callers := make([]caller, 2)
	for i := range callers {
		ctx, cancel := context.WithCancel(t.Context())
		callers[i] = caller{cancel, make(chan error, 1)}
		go func() {
			_, err := c.ModelInfer(ctx, request(float32(1000*(i+1)), 1, 4))
			callers[i].done <- err
		}()
	}
	testkit.Eventually(t, "two callers to queue", func() bool { return c.queued() == 2 })
	close(release)
	callCtx := <-merged // the two queued requests, in one call

	callers[0].cancel()
	if err := <-callers[0].done; status.Code(err) != codes.Canceled {
		t.Errorf("the caller that left got %v, want CANCELED", err)
	}
	if callCtx.Err() != nil {
		t.Fatal("the merged call was cancelled while a caller still waits for it")
	}
	callers[1].cancel()
	<-callers[1].done
	if callCtx.Err() == nil {
		t.Error("the merged call goes on after every caller left")
	}
	wg.Wait()
}

// A request that would take the queue past max_queue_rows is refused at
// once with RESOURCE_EXHAUSTED (ErrQueueFull) and a retry delay; the ones
// queued before it are served.
func TestQueueFull(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	c := coalescing(stuck(release, &calls), Rule{MaxRows: 8, MaxInFlight: 1, MaxQueueRows: 3})
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = c.ModelInfer(t.Context(), request(0, 1, 4)) })
	testkit.Eventually(t, "the first call", func() bool { return calls.Load() == 1 })
	errs := make([]error, 2)
	for i, rows := range []int{2, 1} { // three rows: the queue is full
		wg.Go(func() { _, errs[i] = c.ModelInfer(t.Context(), request(float32(1000*(i+1)), rows, 4)) })
	}
	testkit.Eventually(t, "three rows to queue", func() bool { return c.queued() == 2 })
	_, err := c.ModelInfer(t.Context(), request(9000, 1, 4))
	if !errors.Is(err, ErrQueueFull) || status.Code(err) != codes.ResourceExhausted || len(status.Convert(err).Details()) != 1 {
		t.Errorf("over max_queue_rows: %v, want RESOURCE_EXHAUSTED ErrQueueFull with a retry delay", err)
	}
	close(release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("queued caller %d: %v", i, err)
		}
	}
}
