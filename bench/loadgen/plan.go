package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// Plan is everything one run of the driver does. bench/run.py writes it; a person
// can write one by hand (see bench/README.md).
type Plan struct {
	Model  string    `json:"model"`
	Pixels []float32 `json:"pixels"` // one 8x8 digit, the same for every request
	Batch  int       `json:"batch"`  // rows per request
	// Text, when set, makes every request a text model's: input "text", BYTES
	// [Batch], this string in every row; output "embedding" (the minilm models).
	Text string `json:"text,omitempty"`

	BoundMS     float64 `json:"bound_ms"`      // capacity is the highest rate whose p99 stays within this
	StepS       float64 `json:"step_s"`        // seconds each offered rate is held
	WarmupS     float64 `json:"warmup_s"`      // seconds at StartRPS per scenario before anything is measured
	PauseS      float64 `json:"pause_s"`       // seconds between steps, so one step's backlog cannot leak into the next
	TimeoutS    float64 `json:"timeout_s"`     // per request
	StartRPS    float64 `json:"start_rps"`     // first offered rate
	Factor      float64 `json:"factor"`        // each passing step multiplies the rate by this
	MaxRPS      float64 `json:"max_rps"`       // the sweep never offers more than this
	Refine      int     `json:"refine"`        // bisection steps between the last pass and the first failure
	Retries     int     `json:"retries"`       // a failing rate is tried again this many times before it counts
	MaxSteps    int     `json:"max_steps"`     // per scenario, whatever happens
	MaxInFlight int     `json:"max_in_flight"` // open-loop workers (and HTTP connections) per scenario

	ClosedRequests int `json:"closed_requests"` // per round, one in flight
	ClosedRounds   int `json:"closed_rounds"`

	Scenarios []ScenarioSpec `json:"scenarios"`
}

// ScenarioSpec names one way of reaching the model.
type ScenarioSpec struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`   // one of the keys of transports
	Target string `json:"target"` // base URL for REST, host:port for gRPC, NATS URL for nats
	// Subject is the NATS subject for kind nats; empty: oip.v2.models.<model>.infer.
	Subject string `json:"subject,omitempty"`
	Sweep   bool   `json:"sweep"`  // open-loop rate sweep for its capacity
	Closed  bool   `json:"closed"` // one in flight, for the added-latency figure
	Conns   int    `json:"conns"`  // gRPC connections; 0 means 1
	// FixedRPS, when positive, replaces the sweep's search: max_steps steps at this
	// rate (and the warm-up at it too), for comparing configurations at one load.
	FixedRPS float64 `json:"fixed_rps,omitempty"`
}

func loadPlan(path string) (Plan, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Plan{}, fmt.Errorf("read plan: %w", err)
	}
	var p Plan
	if err := json.Unmarshal(raw, &p); err != nil {
		return Plan{}, fmt.Errorf("parse plan %s: %w", path, err)
	}
	return p, p.validate()
}

func (p Plan) validate() error {
	switch {
	case p.Model == "" || (len(p.Pixels) == 0 && p.Text == "") || p.Batch < 1:
		return fmt.Errorf("plan: model, pixels (or text) and batch >= 1 are required")
	case p.BoundMS <= 0 || p.StepS <= 0 || p.TimeoutS <= 0:
		return fmt.Errorf("plan: bound_ms, step_s and timeout_s must be positive")
	case p.StartRPS < 1 || p.Factor <= 1 || p.MaxRPS < p.StartRPS:
		return fmt.Errorf("plan: need start_rps >= 1, factor > 1, max_rps >= start_rps")
	case p.MaxSteps < 1 || p.MaxInFlight < 1:
		return fmt.Errorf("plan: max_steps and max_in_flight must be positive")
	case p.Refine < 0 || p.Retries < 0 || p.ClosedRounds < 0 || p.ClosedRequests < 0:
		return fmt.Errorf("plan: refine, retries and the closed-loop counts cannot be negative")
	case len(p.Scenarios) == 0:
		return fmt.Errorf("plan: no scenarios")
	}
	for _, s := range p.Scenarios {
		if s.FixedRPS < 0 {
			return fmt.Errorf("plan: scenario %q: fixed_rps cannot be negative", s.Name)
		}
		if _, ok := transports[s.Kind]; !ok {
			return fmt.Errorf("plan: scenario %q: unknown kind %q", s.Name, s.Kind)
		}
	}
	return nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
