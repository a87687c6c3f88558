// Command loadgen is Tandem's open-loop load driver. It reads a plan (bench/run.py
// writes one), then for every scenario: a warm-up, rounds of one request in flight
// (the latency a lone client sees, for the added-latency figure), and a sweep of
// constant arrival rates that finds the highest rate whose p99, measured from each
// request's intended send time, stays within the bound. Scenarios take turns step
// by step, so that noise on a shared machine falls on all of them alike.
//
// Vegeta does the pacing, the numbering and the timing of every request, for every
// transport; see targets.go for how gRPC rides on it.
//
//	loadgen -plan plan.json -out result.json
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	planPath := flag.String("plan", "", "plan file (JSON; see bench/README.md)")
	outPath := flag.String("out", "", "result file (JSON); standard output when empty")
	flag.Parse()
	logger := log.New(os.Stderr, "loadgen: ", log.Ltime|log.Lmicroseconds)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, logger, *planPath, *outPath); err != nil {
		logger.Print(err)
		os.Exit(1)
	}
}

// ScenarioReport is everything measured for one scenario.
type ScenarioReport struct {
	Spec   ScenarioSpec `json:"spec"`
	Warmup *Step        `json:"warmup,omitempty"`
	Closed *Closed      `json:"closed,omitempty"`
	Steps  []Step       `json:"steps"`
	// CapacityRPS is the highest offered rate that passed; 0 when none did.
	CapacityRPS float64 `json:"capacity_rps"`
	// CapacityBounded is false when no step failed, so the capacity is a lower bound.
	CapacityBounded bool `json:"capacity_bounded"`
}

// Report is the driver's output.
type Report struct {
	Plan      Plan              `json:"plan"`
	Started   float64           `json:"started"`
	Ended     float64           `json:"ended"`
	Scenarios []*ScenarioReport `json:"scenarios"`
}

func run(ctx context.Context, logger *log.Logger, planPath, outPath string) error {
	if planPath == "" {
		return errors.New("-plan is required")
	}
	plan, err := loadPlan(planPath)
	if err != nil {
		return err
	}
	targets := make([]*target, 0, len(plan.Scenarios))
	defer func() {
		for _, t := range targets {
			if err := t.close(); err != nil {
				logger.Printf("close %s: %v", t.name, err)
			}
		}
	}()
	report := &Report{Plan: plan, Started: unix(time.Now())}
	for _, spec := range plan.Scenarios {
		t, err := newTarget(plan, spec)
		if err != nil {
			return err
		}
		targets = append(targets, t)
		report.Scenarios = append(report.Scenarios, &ScenarioReport{Spec: spec, Steps: []Step{}})
	}
	if err := measure(ctx, logger, plan, targets, report.Scenarios); err != nil {
		return err
	}
	report.Ended = unix(time.Now())
	return write(report, outPath)
}

// measure runs the plan. Every phase takes the scenarios in turn, one step each.
func measure(ctx context.Context, logger *log.Logger, plan Plan, targets []*target, reports []*ScenarioReport) error {
	pause := func() error {
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted: %w", ctx.Err())
		case <-time.After(seconds(plan.PauseS)):
			return nil
		}
	}

	// Warm-up: connections, caches, and the allocators of both languages.
	if plan.WarmupS > 0 {
		for i, t := range targets {
			rate := plan.StartRPS
			if f := reports[i].Spec.FixedRPS; f > 0 {
				rate = f
			}
			w := openStep(t, plan, rate, seconds(plan.WarmupS))
			reports[i].Warmup = &w
			logger.Printf("%-24s warm-up %s", t.name, w)
			if err := pause(); err != nil {
				return err
			}
		}
	}

	// One in flight first, while nothing has been overloaded yet.
	for i, r := range reports {
		if r.Spec.Closed {
			reports[i].Closed = &Closed{ErrorKinds: errorTally{}}
		}
	}
	for round := range plan.ClosedRounds {
		for i, t := range targets {
			c := reports[i].Closed
			if c == nil {
				continue
			}
			closedRound(t, plan, c, plan.ClosedRequests)
			w := c.Rounds[len(c.Rounds)-1]
			logger.Printf("%-24s 1 in flight, round %d: %d requests, %d errors in %.2fs",
				t.name, round+1, w.Requests, w.Errors, w.Ended-w.Started)
			if err := pause(); err != nil {
				return err
			}
		}
	}
	for _, r := range reports {
		if r.Closed != nil {
			r.Closed.Latency = summarize(r.Closed.samples)
		}
	}

	// The sweeps, interleaved step by step.
	sweeps := make([]*sweep, len(targets))
	for i, r := range reports {
		switch {
		case r.Spec.FixedRPS > 0:
			sweeps[i] = newFixed(plan, r.Spec.FixedRPS)
		case r.Spec.Sweep:
			sweeps[i] = newSweep(plan)
		}
	}
	for active := true; active; {
		active = false
		for i, t := range targets {
			s := sweeps[i]
			if s == nil || s.done {
				continue
			}
			active = true
			step := openStep(t, plan, s.rate, seconds(plan.StepS))
			s.record(step.OfferedRPS, step.Pass)
			reports[i].Steps = append(reports[i].Steps, step)
			reports[i].CapacityRPS, reports[i].CapacityBounded = s.capacity()
			logger.Printf("%-24s %s", t.name, step)
			if !step.Pass {
				took, ok := drain(t, plan)
				logger.Printf("%-24s drained in %.1fs (quiet again: %v)", t.name, took.Seconds(), ok)
			}
			if err := pause(); err != nil {
				return err
			}
		}
	}
	return nil
}

func write(report *Report, path string) error {
	out, err := json.MarshalIndent(report, "", " ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if path == "" {
		_, err = os.Stdout.Write(append(out, '\n'))
		return err
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
