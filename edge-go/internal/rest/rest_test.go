package rest

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/oiperr"
	"github.com/tandem-ml/tandem/edge-go/internal/oiptest"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/grpctransport"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/transporttest"
)

const (
	testMaxBody    = 4096
	testMaxMessage = 8192
)

// syncBuffer collects log lines written from the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type gateway struct {
	url     string
	backend *oiptest.Server
	logs    *syncBuffer
}

// startGateway serves the REST handler in front of a real gRPC server that
// runs svc, through the real gRPC transport.
func startGateway(t *testing.T, svc *transporttest.Double, timeout time.Duration) *gateway {
	t.Helper()
	backend := oiptest.Start(t, "127.0.0.1:0", svc)
	tr, err := grpctransport.New(grpctransport.Config{Addr: backend.Addr, MaxMessageBytes: testMaxMessage})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	logs := &syncBuffer{}
	h, err := New(Config{
		Transport:       tr,
		Logger:          slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Timeout:         timeout,
		Version:         "test",
		MaxBodyBytes:    testMaxBody,
		MaxMessageBytes: testMaxMessage,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &gateway{url: srv.URL, backend: backend, logs: logs}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (g *gateway) do(t *testing.T, method, path, body string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, g.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// errorMessage checks that an answer is an OIP REST error and returns its message.
func errorMessage(t *testing.T, a answer) string {
	t.Helper()
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var body struct {
		Error *string `json:"error"`
	}
	if err := json.Unmarshal([]byte(a.body), &body); err != nil || body.Error == nil {
		t.Fatalf("body %q is not {\"error\": ...}", a.body)
	}
	return *body.Error
}

const inferBody = `{"id": "r1", "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 2], "data": [[0.5, 2]]}]}`

func TestInfer(t *testing.T) {
	got := make(chan *pb.ModelInferRequest, 1)
	svc := &transporttest.Double{ModelInferFunc: func(_ context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		got <- req
		out := make([]byte, 8)
		binary.LittleEndian.PutUint32(out, math.Float32bits(0.25))
		binary.LittleEndian.PutUint32(out[4:], math.Float32bits(0.75))
		return &pb.ModelInferResponse{
			ModelName: req.GetModelName(), ModelVersion: "1", Id: req.GetId(),
			Outputs:           []*pb.ModelInferResponse_InferOutputTensor{{Name: "probabilities", Datatype: "FP32", Shape: []int64{1, 2}}},
			RawOutputContents: [][]byte{out},
		}, nil
	}}
	g := startGateway(t, svc, 5*time.Second)

	for _, tt := range []struct{ path, model, version string }{
		{"/v2/models/digits/infer", "digits", ""},
		{"/v2/models/digits/versions/3/infer", "digits", "3"},
	} {
		a := g.do(t, "POST", tt.path, inferBody)
		if a.status != 200 || a.header.Get("Content-Type") != "application/json" {
			t.Fatalf("POST %s: %d %s %q", tt.path, a.status, a.header.Get("Content-Type"), a.body)
		}
		want := `{"model_name":"digits","model_version":"1","id":"r1","outputs":[{"name":"probabilities","datatype":"FP32","shape":[1,2],"data":[0.25,0.75]}]}`
		if a.body != want {
			t.Errorf("POST %s:\n got %s\nwant %s", tt.path, a.body, want)
		}
		req := <-got
		if req.GetModelName() != tt.model || req.GetModelVersion() != tt.version {
			t.Errorf("POST %s reached the service as model %q version %q", tt.path, req.GetModelName(), req.GetModelVersion())
		}
		wantRaw := make([]byte, 8)
		binary.LittleEndian.PutUint32(wantRaw, math.Float32bits(0.5))
		binary.LittleEndian.PutUint32(wantRaw[4:], math.Float32bits(2))
		if len(req.GetRawInputContents()) != 1 || !bytes.Equal(req.GetRawInputContents()[0], wantRaw) {
			t.Errorf("raw input contents = %v, want %v", req.GetRawInputContents(), wantRaw)
		}
	}

	// One log line per request, with what an operator looks for.
	var line struct {
		Msg, Method, Path, Model string
		Status                   int
		DurationMS               float64 `json:"duration_ms"`
	}
	first, _, _ := strings.Cut(g.logs.String(), "\n")
	if err := json.Unmarshal([]byte(first), &line); err != nil {
		t.Fatalf("log line %q: %v", first, err)
	}
	if line.Msg != "request" || line.Method != "POST" || line.Path != "/v2/models/digits/infer" || line.Model != "digits" || line.Status != 200 || line.DurationMS <= 0 {
		t.Errorf("log line = %s", first)
	}
}

// Every status the service can answer with reaches the client as the one
// HTTP status oiperr maps it to, with the service's message.
func TestInferErrorStatuses(t *testing.T) {
	for _, code := range []codes.Code{
		codes.InvalidArgument, codes.Unauthenticated, codes.PermissionDenied, codes.NotFound,
		codes.ResourceExhausted, codes.Internal, codes.Unknown, codes.Unavailable, codes.DeadlineExceeded,
	} {
		t.Run(code.String(), func(t *testing.T) {
			msg := "the service says " + code.String()
			g := startGateway(t, &transporttest.Double{ModelInferFunc: func(context.Context, *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
				return nil, status.Error(code, msg)
			}}, 5*time.Second)
			a := g.do(t, "POST", "/v2/models/m/infer", inferBody)
			if want := oiperr.HTTPStatus(code); a.status != want {
				t.Errorf("status = %d, want %d", a.status, want)
			}
			if got := errorMessage(t, a); !strings.Contains(got, msg) {
				t.Errorf("message %q does not carry %q", got, msg)
			}
			if retry := a.header.Get("Retry-After"); (a.status == 429) != (retry != "") {
				t.Errorf("Retry-After = %q with status %d", retry, a.status)
			}
			if !strings.Contains(g.logs.String(), `"level":"INFO","msg":"request"`) {
				t.Errorf("failed request not logged at info: %s", g.logs.String())
			}
		})
	}
}

func TestInferGatewayErrors(t *testing.T) {
	blocking := &transporttest.Double{ModelInferFunc: func(ctx context.Context, _ *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	tests := []struct {
		name    string
		body    string
		header  []string
		status  int
		message string
	}{
		{"malformed JSON", `{"inputs": [`, nil, 400, "malformed JSON at byte 12: unexpected end of JSON input"},
		{"wrong type in data", `{"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [2], "data": [1, "2"]}]}`, nil, 400,
			`input "pixels": element 1 is a string, expected a number for FP32`},
		{"huge claimed shape", `{"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1000000000000, 64], "data": [1]}]}`, nil, 400,
			`input "pixels": data holds 1 element, shape [1000000000000, 64] holds 64000000000000`},
		{"body over the limit", `{"inputs": [` + strings.Repeat(" ", testMaxBody) + `]}`, nil, 413, "request body too large: the limit is 4096 bytes"},
		{"tensors over the message limit", `{"inputs": [{"name": "x", "datatype": "INT64", "shape": [1500], "data": [` +
			strings.Repeat("1,", 1499) + `1]}]}`, nil, 413, "request too large: its tensors take 12"},
		{"binary header longer than the body", inferBody, []string{"Inference-Header-Content-Length", "1000"}, 400,
			"Inference-Header-Content-Length 1000 is longer than the body, 101 bytes"},
		{"timeout", inferBody, nil, 504, "inference service at 127.0.0.1:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGateway(t, blocking, 200*time.Millisecond)
			a := g.do(t, "POST", "/v2/models/m/infer", tt.body, tt.header...)
			if a.status != tt.status {
				t.Errorf("status = %d, want %d (%s)", a.status, tt.status, a.body)
			}
			if got := errorMessage(t, a); !strings.HasPrefix(got, tt.message) {
				t.Errorf("message:\n got %s\nwant %s", got, tt.message)
			}
		})
	}
}

// A body without Content-Length is cut off as soon as it passes the limit.
func TestInferChunkedBodyOverLimit(t *testing.T) {
	g := startGateway(t, &transporttest.Double{}, time.Second)
	body := io.MultiReader(strings.NewReader(`{"inputs": [`), strings.NewReader(strings.Repeat(" ", 2*testMaxBody)))
	req, err := http.NewRequestWithContext(t.Context(), "POST", g.url+"/v2/models/m/infer", body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1 // unknown: sent chunked
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 413 {
		t.Errorf("status = %d, want 413 (%s)", resp.StatusCode, b)
	}
}

func TestHealthAndMetadata(t *testing.T) {
	var ready, modelReady = true, true
	var mu sync.Mutex
	svc := &transporttest.Double{
		ServerReadyFunc: func(context.Context, *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
			mu.Lock()
			defer mu.Unlock()
			return &pb.ServerReadyResponse{Ready: ready}, nil
		},
		ModelReadyFunc: func(_ context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
			if req.GetName() != "digits" || (req.GetVersion() != "" && req.GetVersion() != "1") {
				return nil, status.Errorf(codes.NotFound, "unknown model %q version %q", req.GetName(), req.GetVersion())
			}
			mu.Lock()
			defer mu.Unlock()
			return &pb.ModelReadyResponse{Ready: modelReady}, nil
		},
		ModelMetadataFunc: func(_ context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
			if req.GetName() != "digits" {
				return nil, status.Errorf(codes.NotFound, "unknown model %q", req.GetName())
			}
			return &pb.ModelMetadataResponse{
				Name: "digits", Versions: []string{"1"}, Platform: "onnxruntime_onnx",
				Inputs: []*pb.ModelMetadataResponse_TensorMetadata{{Name: "pixels", Datatype: "FP32", Shape: []int64{-1, 64}}},
			}, nil
		},
	}
	g := startGateway(t, svc, time.Second)
	const digitsMeta = `{"name":"digits","versions":["1"],"platform":"onnxruntime_onnx","inputs":[{"name":"pixels","datatype":"FP32","shape":[-1,64]}],"outputs":[]}`

	tests := []struct {
		method, path string
		status       int
		body         string // exact, or for errors a prefix of the message
	}{
		{"GET", "/v2", 200, `{"name":"tandem","version":"test","extensions":["binary_tensor_data","model_configuration","model_repository","statistics"]}`},
		{"GET", "/v2/health/live", 200, `{"live":true}`},
		{"GET", "/v2/health/ready", 200, `{"ready":true}`},
		{"GET", "/v2/models/digits", 200, digitsMeta},
		{"GET", "/v2/models/digits/versions/1", 200, digitsMeta},
		{"GET", "/v2/models/nope", 404, `unknown model "nope"`},
		{"GET", "/v2/models/digits/ready", 200, `{"ready":true}`},
		{"GET", "/v2/models/digits/versions/1/ready", 200, `{"ready":true}`},
		{"GET", "/v2/models/digits/versions/7/ready", 404, `unknown model "digits" version "7"`},
		{"GET", "/v3", 404, "no route for GET /v3"},
		{"POST", "/v2/health/live", 405, "method POST is not allowed for /v2/health/live; allowed: GET, HEAD"},
		{"GET", "/v2/models/digits/infer", 405, "method GET is not allowed for /v2/models/digits/infer; allowed: POST"},
	}
	for _, tt := range tests {
		a := g.do(t, tt.method, tt.path, "")
		if a.status != tt.status {
			t.Errorf("%s %s: status %d, want %d (%s)", tt.method, tt.path, a.status, tt.status, a.body)
			continue
		}
		if a.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: Content-Type %q", tt.method, tt.path, a.header.Get("Content-Type"))
		}
		if tt.status == 200 && a.body != tt.body {
			t.Errorf("%s %s:\n got %s\nwant %s", tt.method, tt.path, a.body, tt.body)
		}
		if tt.status != 200 {
			if got := errorMessage(t, a); !strings.HasPrefix(got, tt.body) {
				t.Errorf("%s %s: message %q, want %q", tt.method, tt.path, got, tt.body)
			}
		}
	}

	mu.Lock()
	ready, modelReady = false, false
	mu.Unlock()
	if a := g.do(t, "GET", "/v2/health/ready", ""); a.status != 503 || errorMessage(t, a) != "the inference service is not ready" {
		t.Errorf("not ready: %d %s", a.status, a.body)
	}
	if a := g.do(t, "GET", "/v2/models/digits/versions/1/ready", ""); a.status != 503 || errorMessage(t, a) != `model "digits" version "1" is not ready` {
		t.Errorf("model not ready: %d %s", a.status, a.body)
	}
}

// With the service gone, the gateway stays live, reports not ready, and
// answers inference with 503 at once.
func TestServiceDown(t *testing.T) {
	g := startGateway(t, &transporttest.Double{}, 5*time.Second)
	if a := g.do(t, "GET", "/v2/health/ready", ""); a.status != 200 {
		t.Fatalf("ready before the outage: %d %s", a.status, a.body)
	}
	g.backend.Stop()

	start := time.Now()
	for _, tt := range []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/v2/health/live", "", 200},
		{"GET", "/v2/health/ready", "", 503},
		{"GET", "/v2/models/digits/ready", "", 503},
		{"GET", "/v2/models/digits", "", 503},
		{"POST", "/v2/models/digits/infer", inferBody, 503},
	} {
		a := g.do(t, tt.method, tt.path, tt.body)
		if a.status != tt.status {
			t.Errorf("%s %s: %d, want %d (%s)", tt.method, tt.path, a.status, tt.status, a.body)
		}
		if tt.status == 503 && !strings.HasPrefix(errorMessage(t, a), "inference service at 127.0.0.1:") {
			t.Errorf("%s %s: message %s does not name the service", tt.method, tt.path, a.body)
		}
	}
	// Fail-fast: nothing above waited for the 5 s timeout.
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("answers with the service down took %v", elapsed)
	}
}
