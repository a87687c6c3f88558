package main

import (
	"fmt"
	"math"
	"slices"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Stats summarises latencies, in microseconds.
type Stats struct {
	Count  int     `json:"count"`
	MeanUS float64 `json:"mean_us"`
	P50US  float64 `json:"p50_us"`
	P90US  float64 `json:"p90_us"`
	P99US  float64 `json:"p99_us"`
	P999US float64 `json:"p999_us"`
	MaxUS  float64 `json:"max_us"`
	// CDF is [percentile, µs] pairs spaced as in HdrHistogram's percentile
	// distribution (four ticks each time the distance to 100 halves), as far as the
	// sample count resolves, then 100 (the max).
	CDF [][2]float64 `json:"cdf"`
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// summarize sorts lat in place. Exact percentiles: a step holds at most
// max_rps × step_s samples, which fit in memory with room to spare.
func summarize(lat []time.Duration) Stats {
	if len(lat) == 0 {
		return Stats{}
	}
	slices.Sort(lat)
	at := func(pct float64) float64 {
		// The nearest-rank percentile; the epsilon keeps 99.9% of 1000 at rank 999.
		i := int(math.Ceil(pct*float64(len(lat))/100-1e-9)) - 1
		return micros(lat[max(0, min(i, len(lat)-1))])
	}
	var sum time.Duration
	for _, l := range lat {
		sum += l
	}
	s := Stats{
		Count:  len(lat),
		MeanUS: micros(sum) / float64(len(lat)),
		P50US:  at(50), P90US: at(90), P99US: at(99), P999US: at(99.9),
		MaxUS: micros(lat[len(lat)-1]),
	}
	const ticksPerHalf = 4
	for k := 0; ; k++ {
		pct := 100 * (1 - math.Pow(2, -float64(k)/ticksPerHalf))
		if (100-pct)/100*float64(len(lat)) < 1 {
			break
		}
		s.CDF = append(s.CDF, [2]float64{pct, at(pct)})
	}
	s.CDF = append(s.CDF, [2]float64{100, s.MaxUS})
	return s
}

// errorTally counts errors by message, keeping a few distinct messages.
type errorTally map[string]int

const distinctErrors = 5

func (e errorTally) add(msg string) {
	if _, ok := e[msg]; !ok && len(e) >= distinctErrors {
		msg = "(other errors)"
	}
	e[msg]++
}

// Step is one offered rate held for step_s, open loop.
type Step struct {
	OfferedRPS  float64    `json:"offered_rps"`
	AchievedRPS float64    `json:"achieved_rps"` // successful responses per second of the step
	Expected    int        `json:"expected"`     // requests the schedule called for
	Sent        int        `json:"sent"`
	OK          int        `json:"ok"`
	Errors      int        `json:"errors"`
	ErrorKinds  errorTally `json:"error_kinds,omitempty"`
	// Latency runs from each request's intended send time (its slot in the
	// constant-rate schedule) to its response: a server that stalls the driver is
	// charged for the wait. This is the figure that capacity is judged on.
	Latency Stats `json:"latency"`
	// Service runs from the actual send: what a closed-loop tool would report.
	Service Stats `json:"service"`
	// SendLagP99US is how late the driver sent, p99: the driver's own health.
	// Sends that lag only when the server holds every worker; more means the
	// driver lacked CPU.
	SendLagP99US float64 `json:"send_lag_p99_us"`
	Pass         bool    `json:"pass"`
	Started      float64 `json:"started"` // unix seconds, to match CPU samples to the step
	Ended        float64 `json:"ended"`
}

// timerSlack is how late a Go timer may fire: when the process is otherwise idle
// the runtime sleeps in epoll with whole-millisecond timeouts.
const timerSlack = time.Millisecond

// earlyPacer wakes before each hit's slot, by up to one interval or timerSlack,
// whichever is less, so that the hit is sent on time rather than up to a
// millisecond late. Latency then runs from the earlier of slot and send: an early
// send is never credited, a late one is always charged.
type earlyPacer struct {
	vegeta.ConstantPacer
	early time.Duration
}

func (p earlyPacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	wait, stop := p.ConstantPacer.Pace(elapsed, hits)
	return max(0, wait-p.early), stop
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// openStep offers rate requests per second for d, whatever the server does.
func openStep(t *target, p Plan, rate float64, d time.Duration) Step {
	freq := max(1, int(math.Round(rate)))
	// Vegeta's constant pacer releases hit n (from 0) at began + (n+1)·interval.
	interval := time.Duration(time.Second.Nanoseconds() / int64(freq))
	pacer := earlyPacer{
		ConstantPacer: vegeta.ConstantPacer{Freq: freq, Per: time.Second},
		early:         min(interval, timerSlack),
	}
	step := Step{OfferedRPS: float64(freq), Expected: int(d / interval), ErrorKinds: errorTally{}}
	var lat, svc, lag []time.Duration
	atk := t.attacker(p, min(10, uint64(p.MaxInFlight)), uint64(p.MaxInFlight))
	began := time.Now() // a few hundred ns before vegeta's own start: errs on the slow side
	for res := range atk.Attack(t.staticTargeter(), pacer, d, t.name) {
		step.Sent++
		if res.Error != "" {
			step.Errors++
			step.ErrorKinds.add(res.Error)
			continue
		}
		// From the slot, or from the send when the pacer woke early for it.
		intended := began.Add(time.Duration(res.Seq+1) * interval)
		from := res.Timestamp
		if intended.Before(from) {
			from = intended
		}
		lat = append(lat, res.End().Sub(from))
		svc = append(svc, res.Latency)
		lag = append(lag, max(0, res.Timestamp.Sub(intended)))
	}
	ended := time.Now()
	step.OK = len(lat)
	step.AchievedRPS = float64(step.OK) / d.Seconds()
	step.Latency, step.Service = summarize(lat), summarize(svc)
	step.SendLagP99US = summarize(lag).P99US
	step.Started, step.Ended = unix(began), unix(ended)
	// Unsent requests are latency the schedule never saw, so they fail the step too.
	step.Pass = step.Errors == 0 && step.Sent*100 >= step.Expected*99 &&
		step.Latency.P99US <= p.BoundMS*1000
	return step
}

// Window is one closed-loop round, for matching CPU samples to it.
type Window struct {
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	Started  float64 `json:"started"`
	Ended    float64 `json:"ended"`
}

// Closed is one request in flight, rounds merged: the latency a lone client sees.
type Closed struct {
	Rounds     []Window        `json:"rounds"`
	Errors     int             `json:"errors"`
	ErrorKinds errorTally      `json:"error_kinds,omitempty"`
	Latency    Stats           `json:"latency"`
	samples    []time.Duration // merged over rounds; summarised into Latency at the end
}

// backToBack is a vegeta pacer that never waits and stops after n hits: with a
// single worker, one request in flight.
type backToBack struct{ n uint64 }

func (b backToBack) Pace(_ time.Duration, hits uint64) (time.Duration, bool) {
	return 0, hits >= b.n
}

func (backToBack) Rate(time.Duration) float64 { return math.Inf(1) }

// closedRound sends n requests one after another.
func closedRound(t *target, p Plan, c *Closed, n int) {
	pacer := backToBack{n: uint64(n)}
	limit := min(time.Duration(n)*seconds(p.TimeoutS), 2*time.Minute)
	w := Window{Started: unix(time.Now())}
	for res := range t.attacker(p, 1, 1).Attack(t.staticTargeter(), pacer, limit, t.name) {
		w.Requests++
		if res.Error != "" {
			w.Errors++
			c.ErrorKinds.add(res.Error)
			continue
		}
		c.samples = append(c.samples, res.Latency)
	}
	w.Ended = unix(time.Now())
	c.Errors += w.Errors
	c.Rounds = append(c.Rounds, w)
}

func (t *target) staticTargeter() vegeta.Targeter { return vegeta.NewStaticTargeter(t.request) }

func (s Step) String() string {
	verdict := "pass"
	if !s.Pass {
		verdict = "FAIL"
	}
	return fmt.Sprintf("offered %6.0f/s achieved %7.1f/s p50 %8.0fµs p99 %8.0fµs (service p99 %7.0fµs, send lag p99 %6.0fµs) errors %d unsent %d %s",
		s.OfferedRPS, s.AchievedRPS, s.Latency.P50US, s.Latency.P99US, s.Service.P99US,
		s.SendLagP99US, s.Errors, max(0, s.Expected-s.Sent), verdict)
}

// drainLimit bounds drain; a server still slow after it is left as it is.
const drainLimit = 30 * time.Second

// drain waits, after a failed step, until the scenario's server answers a few
// lone requests within the bound again. An overloaded server works off its
// backlog long after the driver stops, and on shared cores that backlog would
// count against whichever scenario runs next.
func drain(t *target, p Plan) (time.Duration, bool) {
	start := time.Now()
	bound := time.Duration(p.BoundMS * float64(time.Millisecond))
	for time.Since(start) < drainLimit {
		probe := Closed{ErrorKinds: errorTally{}}
		closedRound(t, p, &probe, 5)
		if probe.Errors == 0 && len(probe.samples) > 0 && slices.Max(probe.samples) <= bound {
			return time.Since(start), true
		}
		time.Sleep(500 * time.Millisecond)
	}
	return time.Since(start), false
}
