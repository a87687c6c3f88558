package main

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestSweep(t *testing.T) {
	plan := Plan{StartRPS: 100, Factor: 2, MaxRPS: 1000, Refine: 2, MaxSteps: 20}
	tests := []struct {
		name      string
		plan      func(Plan) Plan
		capacity  float64 // the highest rate the server passes
		flaky     float64 // a rate that fails once, then passes; 0 for none
		wantRates []float64
		wantCap   float64
		wantBound bool
	}{
		{
			name:      "climbs, then bisects between the last pass and the first failure",
			capacity:  500,
			wantRates: []float64{100, 200, 400, 800, 600, 500},
			wantCap:   500, wantBound: true,
		},
		{
			name:      "stops at max_rps when nothing fails: a lower bound",
			capacity:  5000,
			wantRates: []float64{100, 200, 400, 800, 1000},
			wantCap:   1000, wantBound: false,
		},
		{
			name:      "fails at the first rate: steps down, then bisects",
			capacity:  30,
			wantRates: []float64{100, 50, 25, 38, 32},
			wantCap:   25, wantBound: true,
		},
		{
			name:      "nothing passes: stops below 1 req/s",
			capacity:  0,
			wantRates: []float64{100, 50, 25, 13, 7, 4, 2, 1},
			wantCap:   0, wantBound: true,
		},
		{
			name:      "max_steps ends it whatever happens",
			plan:      func(p Plan) Plan { p.MaxSteps = 3; return p },
			capacity:  5000,
			wantRates: []float64{100, 200, 400},
			wantCap:   400, wantBound: false,
		},
		{
			name:      "a retried failure that passes the second time counts as a pass",
			plan:      func(p Plan) Plan { p.Retries = 1; return p },
			capacity:  500,
			flaky:     200,
			wantRates: []float64{100, 200, 200, 400, 800, 800, 600, 600, 500},
			wantCap:   500, wantBound: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := plan
			if tt.plan != nil {
				p = tt.plan(p)
			}
			s := newSweep(p)
			var rates []float64
			flakyDone := false
			for !s.done && len(rates) < 100 {
				rate := s.rate
				rates = append(rates, rate)
				passed := rate <= tt.capacity
				if rate == tt.flaky && !flakyDone {
					passed, flakyDone = false, true
				}
				s.record(rate, passed)
			}
			if !slices.Equal(rates, tt.wantRates) {
				t.Errorf("rates = %v, want %v", rates, tt.wantRates)
			}
			if c, bounded := s.capacity(); c != tt.wantCap || bounded != tt.wantBound {
				t.Errorf("capacity = %v (bounded %v), want %v (bounded %v)", c, bounded, tt.wantCap, tt.wantBound)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	lat := make([]time.Duration, 1000)
	for i := range lat {
		lat[i] = time.Duration(1000-i) * time.Microsecond // reversed: summarize sorts
	}
	s := summarize(lat)
	want := Stats{Count: 1000, MeanUS: 500.5, P50US: 500, P90US: 900, P99US: 990, P999US: 999, MaxUS: 1000}
	s.CDF = nil
	if !reflect.DeepEqual(s, want) {
		t.Errorf("summarize = %+v, want %+v", s, want)
	}
	if got := summarize(nil); got.Count != 0 {
		t.Errorf("summarize(nil) = %+v, want zero", got)
	}
}

func TestSummarizeCDF(t *testing.T) {
	lat := make([]time.Duration, 100)
	for i := range lat {
		lat[i] = time.Duration(i+1) * time.Millisecond
	}
	cdf := summarize(lat).CDF
	if first, last := cdf[0], cdf[len(cdf)-1]; first != [2]float64{0, 1000} || last != [2]float64{100, 100000} {
		t.Errorf("CDF runs %v .. %v, want [0 1000] .. [100 100000]", first, last)
	}
	for i := 1; i < len(cdf); i++ {
		if cdf[i][0] <= cdf[i-1][0] || cdf[i][1] < cdf[i-1][1] {
			t.Fatalf("CDF not increasing at %d: %v", i, cdf)
		}
	}
	// 100 samples resolve percentiles up to 99: no tick beyond it but the max.
	if p := cdf[len(cdf)-2][0]; p > 99 {
		t.Errorf("CDF has a tick at %v, beyond what 100 samples resolve", p)
	}
}

func TestFixed(t *testing.T) {
	s := newFixed(Plan{StartRPS: 100, Factor: 2, MaxRPS: 1000, MaxSteps: 3, Retries: 1}, 250)
	var rates []float64
	for i := 0; !s.done && i < 10; i++ {
		rates = append(rates, s.rate)
		s.record(s.rate, i != 1)
	}
	if !slices.Equal(rates, []float64{250, 250, 250}) {
		t.Errorf("rates = %v, want 250 three times", rates)
	}
}
