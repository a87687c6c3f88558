package limit

import (
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
)

// RateConfig configures a Rate.
type RateConfig struct {
	// PerSecond is each client's sustained rate; <= 0 turns limiting off.
	PerSecond float64
	// Burst is each client's bucket size; <= 0 means PerSecond rounded up,
	// and it is at least 1.
	Burst int
	// MaxClients bounds the clients tracked at once (default 10000).
	MaxClients int
	// SweepEvery is how often idle clients are dropped (default 1 minute).
	SweepEvery time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Rate limits requests per client key with a token bucket each.
//
// Memory is bounded: a client whose bucket has refilled is dropped at the
// next sweep, which loses nothing (a new bucket starts full); when
// MaxClients are tracked and none is idle, an arbitrary one is dropped and
// that client gets a fresh burst. One mutex guards the map: the critical
// section is a map lookup, cheap next to a request, and rate.Limiter takes
// its own lock anyway.
type Rate struct {
	cfg       RateConfig
	limit     rate.Limit
	mu        sync.Mutex
	clients   map[string]*rate.Limiter
	lastSweep time.Time
}

// NewRate returns a Rate with cfg's defaults filled in.
func NewRate(cfg RateConfig) *Rate {
	if cfg.Burst <= 0 {
		cfg.Burst = int(math.Ceil(cfg.PerSecond))
	}
	cfg.Burst = max(cfg.Burst, 1)
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = 10000
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Rate{
		cfg:       cfg,
		limit:     rate.Limit(cfg.PerSecond),
		clients:   make(map[string]*rate.Limiter),
		lastSweep: cfg.Now(),
	}
}

// Enabled reports whether limiting is on; a nil *Rate is off.
func (r *Rate) Enabled() bool { return r != nil && r.cfg.PerSecond > 0 }

// Allow takes a token from key's bucket. When there is none it returns
// false and how long until there will be one.
func (r *Rate) Allow(key string) (ok bool, retryAfter time.Duration) {
	if !r.Enabled() {
		return true, 0
	}
	now := r.cfg.Now()
	lim := r.limiter(key, now)
	res := lim.ReserveN(now, 1)
	if !res.OK() { // cannot happen with Burst >= 1; refuse rather than wait forever
		return false, time.Second
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Err is Allow as an error: nil, or an *Error (RESOURCE_EXHAUSTED, reason
// ReasonRateLimited) with the wait as Retry-After.
func (r *Rate) Err(key string) error {
	ok, wait := r.Allow(key)
	if ok {
		return nil
	}
	return refusal(ReasonRateLimited, codes.ResourceExhausted,
		fmt.Sprintf("rate limit of %g requests/s exceeded: retry in %s", r.cfg.PerSecond, formatDuration(wait)), wait)
}

// Len returns the clients tracked, for tests and gauges.
func (r *Rate) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.clients)
}

func (r *Rate) limiter(key string, now time.Time) *rate.Limiter {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.lastSweep) >= r.cfg.SweepEvery {
		r.sweep(now)
	}
	if lim, ok := r.clients[key]; ok {
		return lim
	}
	if len(r.clients) >= r.cfg.MaxClients {
		r.sweep(now)
		for k := range r.clients { // still full: drop any one
			if len(r.clients) < r.cfg.MaxClients {
				break
			}
			delete(r.clients, k)
		}
	}
	lim := rate.NewLimiter(r.limit, r.cfg.Burst)
	r.clients[key] = lim
	return lim
}

// sweep drops the clients whose buckets are full again: they are the same
// as new ones. Under r.mu.
func (r *Rate) sweep(now time.Time) {
	r.lastSweep = now
	full := float64(r.cfg.Burst)
	for k, lim := range r.clients {
		if lim.TokensAt(now) >= full {
			delete(r.clients, k)
		}
	}
}
