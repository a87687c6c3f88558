package rest

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/transporttest"
)

// A handler that panics answers 500 "internal error" with nothing of the
// panic in the body; the stack goes to the log at ERROR and the gateway
// goes on serving.
func TestPanicIsRecovered(t *testing.T) {
	logs := &syncBuffer{}
	h, err := New(Config{
		Transport: &transporttest.Double{ModelInferFunc: func(context.Context, *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
			panic("secret internals")
		}},
		Logger:       slog.New(slog.NewJSONHandler(logs, nil)),
		Timeout:      time.Minute,
		Version:      "test",
		MaxBodyBytes: testMaxBody, MaxMessageBytes: testMaxMessage,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	g := &gateway{url: srv.URL}

	a := g.do(t, "POST", "/v2/models/digits/infer", inferBody)
	if a.status != 500 || errorMessage(t, a) != "internal error" {
		t.Errorf("got %d %s, want 500 internal error", a.status, a.body)
	}
	if strings.Contains(a.body, "secret") {
		t.Errorf("the body tells of the panic: %s", a.body)
	}
	log := logs.String()
	if !strings.Contains(log, `"level":"ERROR"`) || !strings.Contains(log, "secret internals") || !strings.Contains(log, "goroutine") {
		t.Errorf("no ERROR line with the panic and its stack in:\n%s", log)
	}
	if a := g.do(t, "GET", "/v2/health/live", ""); a.status != 200 {
		t.Errorf("after the panic: live %d", a.status)
	}
}
