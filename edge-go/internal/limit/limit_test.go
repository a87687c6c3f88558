package limit

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-ml/tandem/edge-go/internal/oiperr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// clock is a settable clock for the tests; they never read real time.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Unix(1_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestAcquireRefusesPastTheCap(t *testing.T) {
	l := NewInFlight(InFlightConfig{Max: 2})
	r1, err1 := l.Acquire("digits")
	r2, err2 := l.Acquire("digits")
	if err1 != nil || err2 != nil {
		t.Fatalf("under the cap: %v, %v", err1, err2)
	}
	if _, err := l.Acquire("mnist"); err != nil {
		t.Fatalf("another model shares the cap: %v", err)
	}
	_, err := l.Acquire("digits")
	if status.Code(err) != codes.ResourceExhausted || Reason(err) != ReasonOverloaded {
		t.Fatalf("past the cap: %v (reason %q), want RESOURCE_EXHAUSTED overloaded", err, Reason(err))
	}
	if !strings.Contains(err.Error(), `"digits"`) {
		t.Errorf("message %q does not name the model", err)
	}
	if s, ok := RetryAfterSeconds(err); !ok || s != 1 {
		t.Errorf("RetryAfterSeconds = %d, %v; want 1, true", s, ok)
	}
	if resp := oiperr.FromError(err); resp.Status != 429 || resp.RetryAfter != "1" {
		t.Errorf("oiperr: %d Retry-After %q, want 429, 1", resp.Status, resp.RetryAfter)
	}
	if n := l.InFlightNow("digits"); n != 2 {
		t.Errorf("refusal left %d in flight, want 2", n)
	}
	r1(true, time.Millisecond)
	r1(true, time.Millisecond) // twice: no effect
	if n := l.InFlightNow("digits"); n != 1 {
		t.Fatalf("after one release %d in flight, want 1", n)
	}
	if r, err := l.Acquire("digits"); err != nil {
		t.Fatalf("after a release: %v", err)
	} else {
		r(false, 0)
	}
	r2(false, 0)
	if n := l.InFlightNow("digits"); n != 0 {
		t.Errorf("after all releases %d in flight, want 0", n)
	}
}

func TestAcquireNoCap(t *testing.T) {
	l := NewInFlight(InFlightConfig{})
	for i := range 1000 {
		if _, err := l.Acquire("m"); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
}

func TestAcquireConcurrent(t *testing.T) {
	const limit, workers = 8, 64
	l := NewInFlight(InFlightConfig{Max: limit})
	for round := range 20 {
		// Every worker tries once while none has released: exactly limit
		// get in, whatever the interleaving.
		var tried, admitted sync.WaitGroup
		var in atomic.Int64
		releases := make(chan Release, workers)
		tried.Add(workers)
		for range workers {
			admitted.Go(func() {
				r, err := l.Acquire("m")
				tried.Done()
				if err == nil {
					in.Add(1)
					releases <- r
				}
			})
		}
		tried.Wait()
		admitted.Wait()
		if n := in.Load(); n != limit {
			t.Fatalf("round %d: %d of %d admitted, cap %d", round, n, workers, limit)
		}
		close(releases)
		var wg sync.WaitGroup
		for r := range releases {
			wg.Go(func() { r(true, time.Millisecond) })
		}
		wg.Wait()
		if n := l.InFlightNow("m"); n != 0 {
			t.Fatalf("round %d: %d left in flight", round, n)
		}
	}
}

func TestBoundedModels(t *testing.T) {
	l := NewInFlight(InFlightConfig{Max: 1, MaxModels: 2})
	for _, m := range []string{"a", "b"} {
		if _, err := l.Acquire(m); err != nil {
			t.Fatal(err)
		}
	}
	// c and d have no slot of their own: they share one, and its cap.
	if _, err := l.Acquire("c"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire("d"); Reason(err) != ReasonOverloaded {
		t.Errorf("d shares c's slot: %v, want overloaded", err)
	}
	if n := l.InFlightNow("any-other"); n != 1 {
		t.Errorf("shared slot holds %d, want 1", n)
	}
	if l.count != 2 {
		t.Errorf("%d slots made, want 2", l.count)
	}
}

func TestExpectedIsAMovingAverage(t *testing.T) {
	l := NewInFlight(InFlightConfig{Alpha: 0.5})
	if e := l.Expected("m"); e != 0 {
		t.Fatalf("estimate %v before any call", e)
	}
	observe := func(ok bool, took time.Duration) {
		r, err := l.Acquire("m")
		if err != nil {
			t.Fatal(err)
		}
		r(ok, took)
	}
	observe(true, 10*time.Millisecond)
	if e := l.Expected("m"); e != 10*time.Millisecond {
		t.Errorf("first estimate %v, want 10ms", e)
	}
	observe(true, 20*time.Millisecond)
	if e := l.Expected("m"); e != 15*time.Millisecond {
		t.Errorf("estimate %v, want 15ms", e)
	}
	observe(false, time.Hour) // failures do not count
	if e := l.Expected("m"); e != 15*time.Millisecond {
		t.Errorf("a failure moved the estimate to %v", e)
	}
}

func TestAdmit(t *testing.T) {
	clk := newClock()
	l := NewInFlight(InFlightConfig{Now: clk.Now})
	deadlineIn := func(d time.Duration) context.Context {
		ctx, cancel := context.WithDeadline(context.Background(), clk.Now().Add(d))
		t.Cleanup(cancel)
		return ctx
	}
	if err := l.Admit(deadlineIn(time.Microsecond), "digits"); err != nil {
		t.Errorf("no estimate yet: %v", err)
	}
	r, _ := l.Acquire("digits")
	r(true, 12*time.Millisecond)

	tests := []struct {
		name string
		ctx  context.Context
		ok   bool
	}{
		{"no deadline", context.Background(), true},
		{"enough", deadlineIn(50 * time.Millisecond), true},
		{"exactly", deadlineIn(12 * time.Millisecond), true},
		{"short", deadlineIn(2 * time.Millisecond), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := l.Admit(tt.ctx, "digits")
			if (err == nil) != tt.ok {
				t.Fatalf("Admit = %v, want ok %v", err, tt.ok)
			}
			if err == nil {
				return
			}
			if status.Code(err) != codes.DeadlineExceeded || Reason(err) != ReasonDeadline {
				t.Errorf("%v (reason %q), want DEADLINE_EXCEEDED deadline", err, Reason(err))
			}
			want := `deadline 2ms cannot cover the expected wait of 12ms for model "digits"`
			if status.Convert(err).Message() != want {
				t.Errorf("message %q, want %q", status.Convert(err).Message(), want)
			}
			if _, ok := RetryAfterSeconds(err); ok {
				t.Error("a deadline refusal says when to retry")
			}
			if resp := oiperr.FromError(err); resp.Status != 504 {
				t.Errorf("oiperr status %d, want 504", resp.Status)
			}
		})
	}
	if err := l.Admit(deadlineIn(-time.Second), "digits"); err == nil || !strings.Contains(err.Error(), "deadline 0s") {
		t.Errorf("passed deadline: %v", err)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		2*time.Millisecond + 300*time.Microsecond: "2ms",
		1500 * time.Microsecond:                   "2ms",
		300 * time.Microsecond:                    "300µs",
		-time.Second:                              "0s",
		1234 * time.Millisecond:                   "1.234s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestRate(t *testing.T) {
	clk := newClock()
	r := NewRate(RateConfig{PerSecond: 2, Now: clk.Now}) // burst 2
	for i := range 2 {
		if ok, _ := r.Allow("a"); !ok {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	ok, wait := r.Allow("a")
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("past the burst: ok %v wait %v, want refused with a wait in (0, 1s]", ok, wait)
	}
	if ok, _ := r.Allow("b"); !ok {
		t.Error("another client was limited")
	}
	err := r.Err("a")
	if status.Code(err) != codes.ResourceExhausted || Reason(err) != ReasonRateLimited {
		t.Fatalf("Err = %v (reason %q), want RESOURCE_EXHAUSTED rate_limited", err, Reason(err))
	}
	if s, ok := RetryAfterSeconds(err); !ok || s != 1 {
		t.Errorf("RetryAfterSeconds = %d, %v; want 1, true", s, ok)
	}
	clk.Add(wait)
	if ok, _ := r.Allow("a"); !ok {
		t.Error("refused after waiting the retry-after")
	}
}

func TestRateOff(t *testing.T) {
	var nilRate *Rate
	for _, r := range []*Rate{nilRate, NewRate(RateConfig{})} {
		for range 100 {
			if ok, _ := r.Allow("a"); !ok {
				t.Fatal("limited while off")
			}
		}
		if r.Err("a") != nil {
			t.Fatal("Err while off")
		}
	}
}

func TestRateBurst(t *testing.T) {
	clk := newClock()
	for _, tt := range []struct {
		rate  float64
		burst int
		want  int
	}{{0.5, 0, 1}, {2.5, 0, 3}, {10, 4, 4}} {
		r := NewRate(RateConfig{PerSecond: tt.rate, Burst: tt.burst, Now: clk.Now})
		n := 0
		for {
			if ok, _ := r.Allow(fmt.Sprint(tt)); !ok {
				break
			}
			n++
		}
		if n != tt.want {
			t.Errorf("rate %v burst %d: %d allowed at once, want %d", tt.rate, tt.burst, n, tt.want)
		}
	}
}

func TestRateEvictsIdleClients(t *testing.T) {
	clk := newClock()
	r := NewRate(RateConfig{PerSecond: 1, Burst: 1, MaxClients: 3, SweepEvery: time.Hour, Now: clk.Now})
	for _, k := range []string{"a", "b", "c"} {
		r.Allow(k)
	}
	clk.Add(2 * time.Second) // every bucket full again
	r.Allow("d")             // map full: the sweep drops a, b, c
	if n := r.Len(); n != 1 {
		t.Fatalf("%d clients after the sweep, want 1", n)
	}
	// Dropping a refilled client lost nothing: its burst is there as before.
	if ok, _ := r.Allow("a"); !ok {
		t.Error("a refused after refilling")
	}
	// d is still limited: it was not dropped, its bucket is empty.
	if ok, _ := r.Allow("d"); ok {
		t.Error("d's bucket was reset")
	}
}

func TestRateCapsClients(t *testing.T) {
	clk := newClock()
	r := NewRate(RateConfig{PerSecond: 1, MaxClients: 100, Now: clk.Now})
	for i := range 1000 {
		r.Allow(fmt.Sprint(i)) // never idle: the cap must hold anyway
	}
	if n := r.Len(); n > 100 {
		t.Errorf("%d clients tracked, cap 100", n)
	}
}

func TestRatePeriodicSweep(t *testing.T) {
	clk := newClock()
	r := NewRate(RateConfig{PerSecond: 10, SweepEvery: time.Minute, Now: clk.Now})
	for i := range 50 {
		r.Allow(fmt.Sprint(i))
	}
	clk.Add(time.Minute)
	r.Allow("x")
	if n := r.Len(); n != 1 {
		t.Errorf("%d clients after the periodic sweep, want 1", n)
	}
}

func TestRateConcurrent(t *testing.T) {
	clk := newClock()
	r := NewRate(RateConfig{PerSecond: 100, Burst: 100, MaxClients: 16, Now: clk.Now})
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 500 {
				if ok, _ := r.Allow("shared"); ok {
					allowed.Add(1)
				}
				r.Allow(fmt.Sprint(w, i%32))
			}
		})
	}
	wg.Wait()
	// The clock never moved: "shared" got exactly its burst, unless it was
	// dropped from the full map and came back with a fresh one.
	if n := allowed.Load(); n < 100 {
		t.Errorf("%d of the shared client's requests allowed, want at least its burst of 100", n)
	}
	if n := r.Len(); n > 16 {
		t.Errorf("%d clients tracked, cap 16", n)
	}
}
