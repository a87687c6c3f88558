package rest

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/auth"
	"github.com/tandem-ml/tandem/edge-go/internal/limit"
	"github.com/tandem-ml/tandem/edge-go/internal/metrics"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/transporttest"
)

// trickle is a body that claims much, sends one byte, then holds on until
// released, as a slow or hostile client does.
type trickle struct {
	sent     bool
	blocked  *sync.WaitGroup
	released <-chan struct{}
}

func (b *trickle) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		p[0] = '{'
		return 1, nil
	}
	b.blocked.Done()
	<-b.released
	return 0, io.ErrUnexpectedEOF
}

func (b *trickle) Close() error { return nil }

// Requests that claim 8 MB and send one byte do not make the gateway hold
// 8 MB each: the buffer grows with what arrives.
func TestBodyIsNotSizedFromContentLength(t *testing.T) {
	const n, claimed = 40, 8 << 20
	var blocked sync.WaitGroup
	blocked.Add(n)
	released := make(chan struct{})
	var before, during runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	var done sync.WaitGroup
	for range n {
		r := httptest.NewRequest("POST", "/v2/models/m/infer", nil)
		r.Body = &trickle{blocked: &blocked, released: released}
		r.ContentLength = claimed
		done.Go(func() { _, _ = readBody(httptest.NewRecorder(), r, claimed) })
	}
	blocked.Wait() // every reader holds its buffer, waiting for more
	runtime.GC()
	runtime.ReadMemStats(&during)
	close(released)
	done.Wait()

	if grown := int64(during.HeapAlloc) - int64(before.HeapAlloc); grown > 4<<20 {
		t.Errorf("the heap grew by %d MB for %d requests that sent a byte each", grown>>20, n)
	}
}

// edgeGateway serves the handler over d, with cfg's edge settings.
func edgeGateway(t *testing.T, d *transporttest.Double, change func(*Config)) *gateway {
	t.Helper()
	logs := &syncBuffer{}
	cfg := Config{
		Transport: d, Logger: slog.New(slog.NewJSONHandler(logs, nil)), Timeout: time.Minute,
		Version: "test", MaxBodyBytes: testMaxBody, MaxMessageBytes: testMaxMessage,
	}
	if change != nil {
		change(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &gateway{url: srv.URL, logs: logs}
}

func echoInfer(_ context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	return &pb.ModelInferResponse{ModelName: req.GetModelName(), Id: req.GetId()}, nil
}

// A URL that is not UTF-8 is a 400 naming the problem, wherever the bytes
// are, and the metrics do not panic on it.
func TestURLNotUTF8(t *testing.T) {
	g := edgeGateway(t, &transporttest.Double{ModelInferFunc: echoInfer}, func(c *Config) { c.Metrics = metrics.New("grpc") })
	for _, path := range []string{"/v2/models/%ff%fe/infer", "/v2/models/m/versions/%ff/infer", "/v2/models/%c3%28", "/v2/models/%ff/ready"} {
		method := "GET"
		if strings.HasSuffix(path, "/infer") {
			method = "POST"
		}
		a := g.do(t, method, path, inferBody)
		if a.status != http.StatusBadRequest || !strings.Contains(errorMessage(t, a), "not valid UTF-8") {
			t.Errorf("%s %s: %d %s, want 400 naming UTF-8", method, path, a.status, a.body)
		}
	}
}

// The client's budget: the Request-Timeout header in seconds or the timeout
// parameter in microseconds, bounded by --timeout; bad values are 400.
func TestClientDeadline(t *testing.T) {
	var mu sync.Mutex
	var deadline time.Time
	var params int
	g := edgeGateway(t, &transporttest.Double{ModelInferFunc: func(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		mu.Lock()
		deadline, _ = ctx.Deadline()
		params = len(req.GetParameters())
		mu.Unlock()
		return echoInfer(ctx, req)
	}}, nil)
	withParam := func(v string) string {
		return `{"parameters": {"timeout": ` + v + `}, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}`
	}
	tests := []struct {
		name     string
		body     string
		header   string
		status   int
		atMost   time.Duration // from the request's start
		errorHas string
	}{
		{"none: --timeout", inferBody, "", 200, time.Minute, ""},
		{"header", inferBody, "0.5", 200, 500 * time.Millisecond, ""},
		{"parameter", withParam("250000"), "", 200, 250 * time.Millisecond, ""},
		{"the smaller wins", withParam("250000"), "30", 200, 250 * time.Millisecond, ""},
		{"bad header", inferBody, "soon", 400, 0, "Request-Timeout"},
		{"zero header", inferBody, "0", 400, 0, "Request-Timeout"},
		{"negative parameter", withParam("-1"), "", 400, 0, `"timeout"`},
		{"fractional parameter", withParam("2.5"), "", 400, 0, `"timeout"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var header []string
			if tt.header != "" {
				header = []string{"Request-Timeout", tt.header}
			}
			start := time.Now()
			a := g.do(t, "POST", "/v2/models/m/infer", tt.body, header...)
			end := time.Now()
			if a.status != tt.status {
				t.Fatalf("status %d %s, want %d", a.status, a.body, tt.status)
			}
			if tt.status != 200 {
				if msg := errorMessage(t, a); !strings.Contains(msg, tt.errorHas) {
					t.Errorf("message %q does not name %s", msg, tt.errorHas)
				}
				return
			}
			mu.Lock()
			defer mu.Unlock()
			// The budget counts from the request's arrival, between start and end.
			if deadline.Before(start.Add(tt.atMost)) || deadline.After(end.Add(tt.atMost)) {
				t.Errorf("deadline %v, want %v after the request's arrival (%v to %v)", deadline, tt.atMost, start, end)
			}
			if params != 0 {
				t.Errorf("the timeout parameter reached the service")
			}
		})
	}
}

// While draining, readiness is 503 and inference is still served.
func TestDrainingReadiness(t *testing.T) {
	var draining bool
	g := edgeGateway(t, &transporttest.Double{ModelInferFunc: echoInfer}, func(c *Config) { c.Draining = func() bool { return draining } })
	if a := g.do(t, "GET", "/v2/health/ready", ""); a.status != 200 {
		t.Fatalf("ready: %d", a.status)
	}
	draining = true
	if a := g.do(t, "GET", "/v2/health/ready", ""); a.status != 503 || errorMessage(t, a) != "the gateway is shutting down" {
		t.Errorf("ready while draining: %d %s, want 503", a.status, a.body)
	}
	if a := g.do(t, "POST", "/v2/models/m/infer", inferBody); a.status != 200 {
		t.Errorf("infer while draining: %d %s, want 200", a.status, a.body)
	}
}

// API keys: health is open, a missing or unknown key is 401 with
// WWW-Authenticate, a key scoped to other models 403; every refusal counts.
func TestAPIKeys(t *testing.T) {
	keys, err := auth.Load([]string{"key-all"}, writeKeys(t, "key-digits digits\n"))
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New("grpc")
	g := edgeGateway(t, &transporttest.Double{ModelInferFunc: echoInfer}, func(c *Config) { c.Keys, c.Metrics = keys, m })
	tests := []struct {
		path, key string
		status    int
	}{
		{"/v2/health/ready", "", 200},
		{"/v2/health/live", "", 200},
		{"/v2/models/m/infer", "", 401},
		{"/v2/models/m/infer", "wrong", 401},
		{"/v2/models/m/infer", "key-all", 200},
		{"/v2/models/digits/infer", "key-digits", 200},
		{"/v2/models/m/infer", "key-digits", 403},
	}
	for _, tt := range tests {
		method := "GET"
		if strings.HasSuffix(tt.path, "/infer") {
			method = "POST"
		}
		var header []string
		if tt.key != "" {
			header = []string{"Authorization", "Bearer " + tt.key}
		}
		a := g.do(t, method, tt.path, inferBody, header...)
		if a.status != tt.status {
			t.Errorf("%s with key %q: %d %s, want %d", tt.path, tt.key, a.status, a.body, tt.status)
		}
		if a.status == 401 && !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("401 without WWW-Authenticate: Bearer")
		}
	}
	if n, err := testutil.GatherAndCount(m.Registry(), "tandem_gateway_refused_total"); err != nil || n != 2 {
		t.Errorf("%d refused series, want unauthenticated and forbidden for m", n)
	}
	if strings.Contains(g.logs.String(), "key-") {
		t.Errorf("a key reached the log:\n%s", g.logs.String())
	}
}

// Over its rate, a client gets 429 with Retry-After at once.
func TestRateLimit(t *testing.T) {
	g := edgeGateway(t, &transporttest.Double{ModelInferFunc: echoInfer}, func(c *Config) {
		c.Rate = limit.NewRate(limit.RateConfig{PerSecond: 0.001, Burst: 2})
	})
	var statuses []int
	for range 3 {
		a := g.do(t, "POST", "/v2/models/m/infer", inferBody)
		statuses = append(statuses, a.status)
		if a.status == 429 && a.header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if statuses[0] != 200 || statuses[1] != 200 || statuses[2] != 429 {
		t.Errorf("statuses %v, want [200 200 429]", statuses)
	}
	if a := g.do(t, "GET", "/v2/health/ready", ""); a.status != 200 {
		t.Errorf("health over the rate: %d, want 200", a.status)
	}
}

func writeKeys(t *testing.T, text string) string {
	t.Helper()
	path := t.TempDir() + "/keys"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
