package servertiming

import (
	"testing"
	"time"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Service
		ok   bool
	}{
		{"queue;dur=0.5, model;dur=1.25, service;dur=2", Service{Queue: 0.5, Model: 1.25, Total: 2}, true},
		{"service;dur=2;desc=\"handler\",queue;dur=\"0.5\"", Service{Queue: 0.5, Total: 2}, true},
		{"model;dur=1, other;dur=9, service;dur=3", Service{Model: 1, Total: 3}, true},
		{"queue;dur=0.5, model;dur=1", Service{}, false}, // no service
		{"queue;dur=x, service;dur=2", Service{}, false}, // not a number
		{"service;dur=-1", Service{}, false},             // negative
		{"service", Service{}, false},                    // no dur
		{"", Service{}, false},
	}
	for _, tt := range tests {
		got, ok := Parse(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Parse(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestValue(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	tests := []struct {
		name       string
		total, hop time.Duration
		s          Service
		reported   bool
		want       string
	}{
		{"reported", ms(10), ms(8), Service{Queue: 1, Model: 2, Total: 5}, true,
			"edge;dur=2.000, hop;dur=3.000, python;dur=2.000, queue;dur=1.000, model;dur=2.000"},
		{"absent: an older worker", ms(10), ms(8), Service{}, false,
			"edge;dur=2.000, hop;dur=8.000"},
		{"service longer than the hop call: hop 0", ms(10), ms(4), Service{Queue: 1, Model: 1, Total: 5}, true,
			"edge;dur=6.000, hop;dur=0.000, python;dur=2.000, queue;dur=1.000, model;dur=1.000"},
		{"queue and model longer than service: python 0, model cut", ms(10), ms(8), Service{Queue: 3, Model: 3, Total: 5}, true,
			"edge;dur=2.000, hop;dur=3.000, python;dur=0.000, queue;dur=3.000, model;dur=2.000"},
		{"hop call longer than total: edge 0", ms(5), ms(6), Service{}, false,
			"edge;dur=0.000, hop;dur=5.000"},
	}
	for _, tt := range tests {
		if got := Value(tt.total, tt.hop, tt.s, tt.reported); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

func TestTakeStripsTheParameter(t *testing.T) {
	resp := &pb.ModelInferResponse{Parameters: map[string]*pb.InferParameter{
		Param:   {ParameterChoice: &pb.InferParameter_StringParam{StringParam: "queue;dur=1, model;dur=2, service;dur=4"}},
		"other": {ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: true}},
	}}
	s, ok := Take(resp)
	if !ok || s != (Service{Queue: 1, Model: 2, Total: 4}) {
		t.Errorf("Take = %+v, %v", s, ok)
	}
	if _, left := resp.GetParameters()[Param]; left || len(resp.GetParameters()) != 1 {
		t.Errorf("parameters after Take: %v", resp.GetParameters())
	}
	if _, ok := Take(&pb.ModelInferResponse{}); ok {
		t.Error("Take reported a service time for a response without one")
	}
}
