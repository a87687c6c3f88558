package rest

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/auth"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/transporttest"
)

func TestModelConfig(t *testing.T) {
	var mu sync.Mutex
	var got []*pb.ModelConfigRequest
	g := startGateway(t, &transporttest.Double{
		ModelConfigFunc: func(_ context.Context, req *pb.ModelConfigRequest) (*pb.ModelConfigResponse, error) {
			mu.Lock()
			got = append(got, req)
			mu.Unlock()
			if req.GetName() != "digits" {
				return nil, status.Errorf(codes.NotFound, "unknown model %q", req.GetName())
			}
			return &pb.ModelConfigResponse{Config: &pb.ModelConfig{
				Name: "digits", MaxBatchSize: 64,
				Input: []*pb.ModelInput{{Name: "pixels", DataType: pb.DataType_TYPE_FP32, Dims: []int64{784}}},
			}}, nil
		},
	}, time.Second)

	a := g.do(t, "GET", "/v2/models/digits/versions/1/config", "")
	if a.status != 200 {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	// int64 dims are JSON numbers, as Triton writes them, not protojson's strings.
	if !strings.Contains(a.body, `"dims":[784]`) {
		t.Errorf("dims are not numbers: %s", a.body)
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(a.body), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["name"] != "digits" || cfg["max_batch_size"] != 64.0 || cfg["platform"] != "" {
		t.Errorf("config %s: want the proto field names, defaults emitted", a.body)
	}
	in := cfg["input"].([]any)[0].(map[string]any)
	if in["data_type"] != "TYPE_FP32" || in["format"] != "FORMAT_NONE" {
		t.Errorf("input %v", in)
	}
	mu.Lock()
	if len(got) != 1 || got[0].GetVersion() != "1" {
		t.Errorf("requests %v", got)
	}
	mu.Unlock()

	if a := g.do(t, "GET", "/v2/models/nope/config", ""); a.status != 404 || !strings.Contains(errorMessage(t, a), "nope") {
		t.Errorf("unknown model: %d %s", a.status, a.body)
	}
}

func TestModelStats(t *testing.T) {
	var mu sync.Mutex
	var names []string
	g := startGateway(t, &transporttest.Double{
		ModelStatisticsFunc: func(_ context.Context, req *pb.ModelStatisticsRequest) (*pb.ModelStatisticsResponse, error) {
			mu.Lock()
			names = append(names, req.GetName()+"/"+req.GetVersion())
			mu.Unlock()
			return &pb.ModelStatisticsResponse{ModelStats: []*pb.ModelStatistics{{
				Name: "digits", Version: "1", InferenceCount: 1 << 40, ExecutionCount: 3,
				InferenceStats: &pb.InferStatistics{Success: &pb.StatisticDuration{Count: 3, Ns: 12345}},
				BatchStats:     []*pb.InferBatchStatistics{{BatchSize: 2, ComputeInfer: &pb.StatisticDuration{Count: 1, Ns: 7}}},
			}}}, nil
		},
	}, time.Second)
	for _, path := range []string{"/v2/models/stats", "/v2/models/digits/stats", "/v2/models/digits/versions/1/stats"} {
		a := g.do(t, "GET", path, "")
		if a.status != 200 {
			t.Fatalf("%s: status %d: %s", path, a.status, a.body)
		}
		for _, want := range []string{`"model_stats":[{`, `"inference_count":1099511627776`, `"success":{"count":3,"ns":12345}`, `"batch_size":2`} {
			if !strings.Contains(a.body, want) {
				t.Errorf("%s: %s lacks %s", path, a.body, want)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(names, ",") != "/,digits/,digits/1" {
		t.Errorf("requests %v", names)
	}
}

func TestRepositoryIndex(t *testing.T) {
	var mu sync.Mutex
	var ready []bool
	g := startGateway(t, &transporttest.Double{
		RepositoryIndexFunc: func(_ context.Context, req *pb.RepositoryIndexRequest) (*pb.RepositoryIndexResponse, error) {
			mu.Lock()
			ready = append(ready, req.GetReady())
			mu.Unlock()
			return &pb.RepositoryIndexResponse{Models: []*pb.RepositoryIndexResponse_ModelIndex{
				{Name: "digits", Version: "1", State: "READY"},
				{Name: "other", State: "UNAVAILABLE", Reason: "unloaded"},
			}}, nil
		},
	}, time.Second)
	want := `[{"name":"digits","version":"1","state":"READY","reason":""},{"name":"other","version":"","state":"UNAVAILABLE","reason":"unloaded"}]`
	for _, body := range []string{"", "{}", `{"ready": true}`} {
		if a := g.do(t, "POST", "/v2/repository/index", body); a.status != 200 || a.body != want {
			t.Errorf("body %q: %d %s", body, a.status, a.body)
		}
	}
	mu.Lock()
	if len(ready) != 3 || ready[0] || ready[1] || !ready[2] {
		t.Errorf("ready %v", ready)
	}
	mu.Unlock()
	for body, want := range map[string]string{
		`{"ready": `:       "not a JSON object",
		`{"ready": "yes"}`: `"ready" must be bool`,
		`[]`:               "must be",
		`{} {}`:            "after its JSON object",
	} {
		a := g.do(t, "POST", "/v2/repository/index", body)
		if msg := errorMessage(t, a); a.status != 400 || !strings.Contains(msg, want) {
			t.Errorf("body %q: %d %q, want 400 with %q", body, a.status, msg, want)
		}
	}
}

func TestRepositoryLoadUnload(t *testing.T) {
	var mu sync.Mutex
	var loads []*pb.RepositoryModelLoadRequest
	var unloads []string
	g := startGateway(t, &transporttest.Double{
		RepositoryModelLoadFunc: func(_ context.Context, req *pb.RepositoryModelLoadRequest) (*pb.RepositoryModelLoadResponse, error) {
			mu.Lock()
			loads = append(loads, req)
			mu.Unlock()
			if len(req.GetParameters()) > 0 {
				return nil, status.Error(codes.InvalidArgument, "load parameters are not supported")
			}
			return &pb.RepositoryModelLoadResponse{}, nil
		},
		RepositoryModelUnloadFunc: func(_ context.Context, req *pb.RepositoryModelUnloadRequest) (*pb.RepositoryModelUnloadResponse, error) {
			mu.Lock()
			unloads = append(unloads, req.GetModelName())
			mu.Unlock()
			return &pb.RepositoryModelUnloadResponse{}, nil
		},
	}, time.Second)
	if a := g.do(t, "POST", "/v2/repository/models/digits/load", ""); a.status != 200 || a.body != "" {
		t.Errorf("load: %d %q", a.status, a.body)
	}
	if a := g.do(t, "POST", "/v2/repository/models/digits/unload", `{"parameters": {"unload_dependents": false}}`); a.status != 200 || a.body != "" {
		t.Errorf("unload: %d %q", a.status, a.body)
	}
	a := g.do(t, "POST", "/v2/repository/models/digits/load", `{"parameters": {"config": "{}", "n": 3, "b": true}}`)
	if msg := errorMessage(t, a); a.status != 400 || !strings.Contains(msg, "not supported") {
		t.Errorf("load with parameters: %d %q", a.status, msg)
	}
	a = g.do(t, "POST", "/v2/repository/models/digits/load", `{"parameters": {"x": 1.5}}`)
	if msg := errorMessage(t, a); a.status != 400 || !strings.Contains(msg, `"x"`) {
		t.Errorf("a float parameter: %d %q", a.status, msg)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(loads) != 2 || loads[0].GetModelName() != "digits" || len(loads[0].GetParameters()) != 0 {
		t.Fatalf("loads %v", loads)
	}
	p := loads[1].GetParameters()
	if p["config"].GetStringParam() != "{}" || p["n"].GetInt64Param() != 3 || !p["b"].GetBoolParam() {
		t.Errorf("parameters %v", p)
	}
	if len(unloads) != 1 || unloads[0] != "digits" {
		t.Errorf("unloads %v", unloads)
	}
}

func TestTritonExtensionsUnimplemented(t *testing.T) {
	g := startGateway(t, &transporttest.Double{}, time.Second)
	a := g.do(t, "GET", "/v2/models/digits/config", "")
	// A service without the extension: UNIMPLEMENTED, which oiperr maps to 500.
	if msg := errorMessage(t, a); a.status != 500 || !strings.Contains(msg, "ModelConfig") {
		t.Errorf("unimplemented: %d %q", a.status, msg)
	}
	if a := g.do(t, "GET", "/v2/models/%ff/config", ""); a.status != 400 {
		t.Errorf("invalid UTF-8: %d %s", a.status, a.body)
	}
}

func TestModelOfPath(t *testing.T) {
	for path, want := range map[string]string{
		"/v2/models/stats":                    "",
		"/v2/models/digits/stats":             "digits",
		"/v2/models/digits/versions/1/config": "digits",
		"/v2/repository/index":                "",
		"/v2/repository/models/digits/load":   "digits",
		"/v2/repository/models/digits/unload": "digits",
	} {
		r := httptest.NewRequest("GET", path, nil)
		if got := modelOfPath(r); got != want {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}
}

// A key scoped to some models may load, unload, configure and count those
// only; the index and every model's statistics take any key.
func TestTritonExtensionsScopes(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(file, []byte("scoped-key-000000 digits\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := auth.Load(nil, file)
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{
		Transport: &transporttest.Double{
			RepositoryIndexFunc: func(context.Context, *pb.RepositoryIndexRequest) (*pb.RepositoryIndexResponse, error) {
				return &pb.RepositoryIndexResponse{}, nil
			},
			RepositoryModelLoadFunc: func(context.Context, *pb.RepositoryModelLoadRequest) (*pb.RepositoryModelLoadResponse, error) {
				return &pb.RepositoryModelLoadResponse{}, nil
			},
			ModelStatisticsFunc: func(context.Context, *pb.ModelStatisticsRequest) (*pb.ModelStatisticsResponse, error) {
				return &pb.ModelStatisticsResponse{}, nil
			},
		},
		Logger: slog.New(slog.DiscardHandler), Timeout: time.Second, Version: "test",
		MaxBodyBytes: testMaxBody, MaxMessageBytes: testMaxMessage, Keys: keys,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		method, path, key string
		want              int
	}{
		{"POST", "/v2/repository/models/digits/load", "scoped-key-000000", 200},
		{"POST", "/v2/repository/models/other/load", "scoped-key-000000", 403},
		{"POST", "/v2/repository/models/digits/load", "", 401},
		{"POST", "/v2/repository/index", "scoped-key-000000", 200},
		{"POST", "/v2/repository/index", "", 401},
		{"GET", "/v2/models/stats", "scoped-key-000000", 200},
		{"GET", "/v2/models/other/stats", "scoped-key-000000", 403},
	} {
		r := httptest.NewRequest(tt.method, tt.path, nil)
		if tt.key != "" {
			r.Header.Set("Authorization", "Bearer "+tt.key)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tt.want {
			t.Errorf("%s %s with key %q: %d %s, want %d", tt.method, tt.path, tt.key, w.Code, w.Body, tt.want)
		}
	}
}
