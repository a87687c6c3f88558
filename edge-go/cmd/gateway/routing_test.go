package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/oiptest"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/transporttest"
)

func writeRouting(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "routing.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// With --routing, requests for a coalesced model go through the coalescer:
// with max_in_flight = 1 the service never sees two calls at once, however
// many clients send at once, and every client gets its own answer.
func TestRoutingCoalesces(t *testing.T) {
	var inFlight, most atomic.Int32
	first, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	backend := oiptest.Start(t, "127.0.0.1:0", &transporttest.Double{
		ModelInferFunc: func(_ context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			once.Do(func() { // hold the first call while the others arrive
				close(first)
				<-release
			})
			// Echo the first input back as the output, row for row.
			in := req.GetInputs()[0]
			return &pb.ModelInferResponse{
				ModelName: req.GetModelName(), ModelVersion: "1", Id: req.GetId(),
				Outputs:           []*pb.ModelInferResponse_InferOutputTensor{{Name: "y", Datatype: in.GetDatatype(), Shape: in.GetShape()}},
				RawOutputContents: [][]byte{req.GetRawInputContents()[0]},
			}, nil
		},
	})
	routing := writeRouting(t, "[models.m]\ncoalesce = true\nmax_rows = 16\nmax_in_flight = 1\n")
	gw := startServe(t, "--inference-addr", backend.Addr, "--routing", routing)
	defer func() {
		gw.shutdown()
		if err := <-gw.served; err != nil {
			t.Error(err)
		}
	}()

	var wg sync.WaitGroup
	for i := range 20 {
		if i == 1 {
			<-first
		}
		wg.Go(func() {
			body := fmt.Sprintf(`{"id":"%d","inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[%d,0.5]}]}`, i, i)
			resp, err := http.Post("http://"+gw.httpAddr+"/v2/models/m/infer", "application/json", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			want := fmt.Sprintf(`{"model_name":"m","model_version":"1","id":"%d","outputs":[{"name":"y","datatype":"FP32","shape":[1,2],"data":[%d,0.5]}]}`, i, i)
			if resp.StatusCode != 200 || string(got) != want {
				t.Errorf("request %d: %d %s, want %s", i, resp.StatusCode, got, want)
			}
		})
	}
	// Not a time the test asserts: time for the others to reach the
	// gateway, where, coalesced, they must wait for the call held.
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	if n := most.Load(); n != 1 {
		t.Errorf("the service saw %d calls at once, want 1 (max_in_flight)", n)
	}
}

func TestRoutingFileErrors(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"unknown key", "[models.m]\ncoalesce = true\nmax_row = 3\n", "unknown keys: models.m.max_row"},
		{"bad value", "[models.m]\nmax_in_flight = 0\n", "models.m.max_in_flight = 0: must be at least 1"},
		{"not TOML", "[models.m\n", "routing file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeRouting(t, tt.text)
			gw := startServe(t, "--inference-addr", "127.0.0.1:1", "--routing", path)
			err := <-gw.served
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("serve: %v, want an error naming %s and saying %q", err, path, tt.want)
			}
		})
	}
	gw := startServe(t, "--inference-addr", "127.0.0.1:1", "--routing", filepath.Join(t.TempDir(), "missing.toml"))
	if err := <-gw.served; err == nil || !strings.Contains(err.Error(), "read routing file") {
		t.Errorf("serve with a missing routing file: %v", err)
	}
}
