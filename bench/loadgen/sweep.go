package main

import "math"

// sweep finds the highest offered rate whose step passes: it multiplies the rate
// by Factor while steps pass (divides it while they fail, if the first one did),
// then bisects between the highest pass and the lowest failure Refine times. A rate fails only after Retries+1 failures in a row, since
// on a shared machine one stall from a neighbour can sink a single step. It stops
// after MaxSteps steps whatever happens.
type sweep struct {
	plan     Plan
	rate     float64 // the next rate to offer
	pass     float64 // highest passing rate so far; 0 = none
	fail     float64 // lowest failing rate so far; 0 = none
	steps    int
	bisected int
	retried  int  // failures in a row at the current rate
	fixed    bool // offer the same rate MaxSteps times: no search
	done     bool
}

func newSweep(p Plan) *sweep { return &sweep{plan: p, rate: math.Round(p.StartRPS)} }

// newFixed offers rate for MaxSteps steps, whatever they give.
func newFixed(p Plan, rate float64) *sweep {
	return &sweep{plan: p, rate: math.Round(rate), fixed: true}
}

func (s *sweep) record(rate float64, passed bool) {
	s.steps++
	if s.fixed {
		if passed {
			s.pass = max(s.pass, rate)
		} else {
			s.fail = rate
		}
		s.done = s.steps >= s.plan.MaxSteps
		return
	}
	if !passed && s.retried < s.plan.Retries && s.steps < s.plan.MaxSteps {
		s.retried++
		return // the same rate again, on the scenario's next turn
	}
	s.retried = 0
	if passed {
		s.pass = max(s.pass, rate)
	} else if s.fail == 0 || rate < s.fail {
		s.fail = rate
	}
	switch {
	case s.steps >= s.plan.MaxSteps:
		s.done = true
	case s.fail == 0: // still climbing
		if s.pass >= s.plan.MaxRPS {
			s.done = true
			return
		}
		s.rate = math.Min(math.Round(s.rate*s.plan.Factor), s.plan.MaxRPS)
	case s.pass == 0: // failed from the start: step down until a rate passes
		lower := math.Round(s.rate / s.plan.Factor)
		s.done = lower < 1 || lower >= s.rate
		s.rate = lower
	case s.bisected >= s.plan.Refine:
		s.done = true
	default:
		mid := math.Round((s.pass + s.fail) / 2)
		// Closer than 2% is below what a shared 2-core box can tell apart.
		if mid <= s.pass || mid >= s.fail || (s.fail-s.pass) < 0.02*s.pass {
			s.done = true
			return
		}
		s.rate = mid
		s.bisected++
	}
}

// capacity is the highest passing rate, and whether a failure bounded it from
// above (false: the sweep ran out of rates or steps first, so it is a lower bound).
func (s *sweep) capacity() (rps float64, bounded bool) { return s.pass, s.fail > 0 }
