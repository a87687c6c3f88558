package limit

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
)

// OtherModel names the slot shared by the models past InFlightConfig.MaxModels,
// the same overflow label as the gateway's metrics.
const OtherModel = "_other"

// InFlightConfig configures an InFlight.
type InFlightConfig struct {
	// Max is the cap on each model's calls in flight; <= 0 means no cap (the
	// latency estimate is still kept).
	Max int
	// MaxModels bounds how many models get a slot of their own (default 64);
	// the later ones share OtherModel's, so a stream of odd model names cannot
	// grow memory.
	MaxModels int
	// Alpha is the EWMA weight of the newest latency, in (0, 1]; default 0.1
	// (roughly the last 20 calls).
	Alpha float64
	// RetryAfter is the Retry-After of an overload refusal; default 1s.
	RetryAfter time.Duration
	// Now is the clock Admit reads deadlines against; default time.Now.
	Now func() time.Time
}

// InFlight counts each model's calls in flight, refuses those past the cap,
// and estimates each model's latency. Its hot path is atomic operations on
// a per-model slot found in a sync.Map; it is safe for concurrent use.
type InFlight struct {
	cfg    InFlightConfig
	models sync.Map // model name -> *slot
	mu     sync.Mutex
	count  int // slots in models, under mu
	other  *slot
}

// slot is one model's state.
type slot struct {
	name     string
	inFlight atomic.Int64
	// ewma is the latency estimate as float64 nanoseconds bits; 0: none yet.
	ewma atomic.Uint64
}

// NewInFlight returns an InFlight with cfg's defaults filled in.
func NewInFlight(cfg InFlightConfig) *InFlight {
	if cfg.MaxModels <= 0 {
		cfg.MaxModels = 64
	}
	if cfg.Alpha <= 0 || cfg.Alpha > 1 {
		cfg.Alpha = 0.1
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &InFlight{cfg: cfg, other: &slot{name: OtherModel}}
}

// slot returns model's slot, making it if there is room.
func (l *InFlight) slot(model string) *slot {
	if s, ok := l.models.Load(model); ok {
		return s.(*slot)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s, ok := l.models.Load(model); ok {
		return s.(*slot)
	}
	if l.count >= l.cfg.MaxModels {
		return l.other
	}
	s := &slot{name: model}
	l.models.Store(model, s)
	l.count++
	return s
}

// Release ends a call that Acquire let in. ok reports a call that got its
// answer; only those feed the latency estimate, since a failure's time (an
// instant refusal, a timeout) says little about how long the model takes.
// Calling it more than once has no further effect.
type Release func(ok bool, took time.Duration)

// Acquire lets a call to model in, or refuses it at once with an *Error
// (RESOURCE_EXHAUSTED, reason ReasonOverloaded, with Retry-After) when the
// model has Max calls in flight. The caller must call the returned Release
// when the call ends.
func (l *InFlight) Acquire(model string) (Release, error) {
	s := l.slot(model)
	n := s.inFlight.Add(1)
	if l.cfg.Max > 0 && n > int64(l.cfg.Max) {
		s.inFlight.Add(-1)
		return nil, refusal(ReasonOverloaded, codes.ResourceExhausted,
			fmt.Sprintf("model %q has %d requests in flight, the gateway's limit: retry later", model, l.cfg.Max),
			l.cfg.RetryAfter)
	}
	var done atomic.Bool
	return func(ok bool, took time.Duration) {
		if !done.CompareAndSwap(false, true) {
			return
		}
		s.inFlight.Add(-1)
		if ok && took > 0 {
			l.observe(s, took)
		}
	}, nil
}

// observe folds one latency into the slot's EWMA.
func (l *InFlight) observe(s *slot, took time.Duration) {
	x := float64(took)
	for {
		oldBits := s.ewma.Load()
		next := x
		if oldBits != 0 {
			old := math.Float64frombits(oldBits)
			next = old + l.cfg.Alpha*(x-old)
		}
		if s.ewma.CompareAndSwap(oldBits, math.Float64bits(next)) {
			return
		}
	}
}

// Expected returns model's latency estimate; 0 until a call has ended well.
func (l *InFlight) Expected(model string) time.Duration {
	return time.Duration(math.Float64frombits(l.slot(model).ewma.Load()))
}

// InFlightNow returns model's calls in flight, for gauges and tests.
func (l *InFlight) InFlightNow(model string) int {
	return int(l.slot(model).inFlight.Load())
}

// Admit refuses at once, with an *Error (DEADLINE_EXCEEDED, reason
// ReasonDeadline), a call to model whose ctx has less time left than the
// model's expected latency. A ctx without a deadline, or a model with no
// estimate yet, is admitted.
func (l *InFlight) Admit(ctx context.Context, model string) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		return nil
	}
	expected := l.Expected(model)
	if expected <= 0 {
		return nil
	}
	left := deadline.Sub(l.cfg.Now())
	if left >= expected {
		return nil
	}
	return refusal(ReasonDeadline, codes.DeadlineExceeded,
		fmt.Sprintf("deadline %s cannot cover the expected wait of %s for model %q",
			formatDuration(left), formatDuration(expected), model), 0)
}
