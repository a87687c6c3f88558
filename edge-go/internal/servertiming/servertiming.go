// Package servertiming tells a client where the time of an infer request
// went, as a Server-Timing header (REST) or trailer (edge gRPC):
//
//	edge;dur=0.210, hop;dur=0.180, python;dur=0.095, queue;dur=0.020, model;dur=0.041
//
// in milliseconds. The inference service reports its part in the response
// parameter "server_timing" (queue, model and service, the whole time in its
// handler); the gateway removes that parameter from what it answers and
// splits its own time around it: edge is the gateway's time outside the hop
// call, hop the hop call's time outside the service, python the service's
// time outside queue and model. The parts add up to the gateway's total.
package servertiming

import (
	"strconv"
	"strings"
	"time"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
)

// Param is the response parameter the inference service reports in.
const Param = "server_timing"

// Header is the REST header; the edge gRPC trailer is its lowercase form.
const Header = "Server-Timing"

// Service is what the inference service reported, in milliseconds.
type Service struct {
	Queue, Model, Total float64
}

// Take removes the service's report from resp and returns it; ok is false
// when there is none (an older worker) or it does not parse.
func Take(resp *pb.ModelInferResponse) (s Service, ok bool) {
	p, found := resp.GetParameters()[Param]
	if !found {
		return Service{}, false
	}
	delete(resp.Parameters, Param)
	return Parse(p.GetStringParam())
}

// Parse reads "queue;dur=…, model;dur=…, service;dur=…" (Server-Timing
// syntax; other metrics and parameters are ignored). service is required;
// queue and model count as 0 when missing.
func Parse(v string) (s Service, ok bool) {
	for entry := range strings.SplitSeq(v, ",") {
		name, params, _ := strings.Cut(entry, ";")
		var target *float64
		switch strings.TrimSpace(name) {
		case "queue":
			target = &s.Queue
		case "model":
			target = &s.Model
		case "service":
			target = &s.Total
			ok = true
		default:
			continue
		}
		dur, found := durParam(params)
		if !found {
			return Service{}, false
		}
		*target = dur
	}
	if !ok {
		return Service{}, false
	}
	return s, true
}

func durParam(params string) (float64, bool) {
	for param := range strings.SplitSeq(params, ";") {
		key, value, _ := strings.Cut(param, "=")
		if strings.TrimSpace(key) != "dur" {
			continue
		}
		d, err := strconv.ParseFloat(strings.Trim(strings.TrimSpace(value), `"`), 64)
		if err != nil || d < 0 {
			return 0, false
		}
		return d, true
	}
	return 0, false
}

// Value is the Server-Timing value for a request that took total in the
// gateway, of which hop in the call to the service, which reported s (when
// reported). Each part is clamped to what contains it, so no part is
// negative and they never add up to more than total.
func Value(total, hop time.Duration, s Service, reported bool) string {
	totalMs, hopMs := millis(total), millis(hop)
	hopMs = min(hopMs, totalMs)
	b := make([]byte, 0, 96)
	b = appendMetric(b, "edge", totalMs-hopMs)
	if !reported {
		return string(appendMetric(append(b, ", "...), "hop", hopMs))
	}
	service := clamp(s.Total, hopMs)
	queue := clamp(s.Queue, service)
	model := clamp(s.Model, service-queue)
	b = appendMetric(append(b, ", "...), "hop", hopMs-service)
	b = appendMetric(append(b, ", "...), "python", service-queue-model)
	b = appendMetric(append(b, ", "...), "queue", queue)
	return string(appendMetric(append(b, ", "...), "model", model))
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func clamp(v, limit float64) float64 { return max(0, min(v, limit)) }

func appendMetric(b []byte, name string, ms float64) []byte {
	b = append(b, name...)
	b = append(b, ";dur="...)
	return strconv.AppendFloat(b, max(ms, 0), 'f', 3, 64)
}
