package natstransport_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/natsserver"
	"github.com/tandem-ml/tandem/edge-go/internal/testkit"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/natstransport"
)

// observer sees everything published under the prefix, in the order the
// gateway published it (NATS keeps one publisher's order), with a plain
// subscription, as a worker's on <prefix>.cancel is.
type observer struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func observe(t *testing.T, ns *natsserver.Server) *observer {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	o := &observer{}
	if _, err := nc.Subscribe(prefix+".>", func(m *nats.Msg) {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.msgs = append(o.msgs, m)
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return o
}

func (o *observer) reset() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.msgs = nil
}

// cancels returns the cancels seen, as their request ids, once n messages
// on subject until have arrived: everything the gateway published before
// the last of them has arrived too.
func (o *observer) cancels(t *testing.T, until string, n int) []string {
	t.Helper()
	var ids []string
	testkit.Eventually(t, "messages on "+until, func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		ids = nil
		seen := 0
		for _, m := range o.msgs {
			switch m.Subject {
			case prefix + ".cancel":
				if len(m.Data) != 0 {
					t.Errorf("a cancel with a body: %q", m.Data)
				}
				ids = append(ids, m.Header.Get(natstransport.HeaderRequestID))
			case until:
				if seen++; seen == n {
					return true
				}
			}
		}
		return false
	})
	return ids
}

// A request its caller gives up on, cancelled or past its deadline, is
// cancelled on <prefix>.cancel, once, with its id and an empty body; one
// that is answered is not.
func TestCancel(t *testing.T) {
	ns := startServer(t, "127.0.0.1:0", 1<<20)
	held := make(chan string, 1) // the id of the request the worker holds
	startWorker(t, ns.ClientURL(), func(m *nats.Msg) *nats.Msg {
		if m.Subject == prefix+".models.held.infer" {
			held <- m.Header.Get(natstransport.HeaderRequestID)
			return nil // never answered
		}
		return echo(t)(m)
	})
	obs := observe(t, ns)
	var noted atomic.Int32
	tr := newTransport(t, natstransport.Config{Server: ns, NoteCancel: func(err error) {
		if err != nil {
			t.Errorf("cancel not published: %v", err)
		}
		noted.Add(1)
	}})
	const answeredSubject = prefix + ".models.digits.infer"
	answer := func() {
		if _, err := tr.ModelInfer(bounded(t), &pb.ModelInferRequest{ModelName: "digits"}); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		code codes.Code
		held func(cancel context.CancelFunc) // once the worker holds the request
	}{
		{"cancelled", func() (context.Context, context.CancelFunc) { return context.WithTimeout(t.Context(), time.Minute) },
			codes.Canceled, func(cancel context.CancelFunc) { cancel() }},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(t.Context(), 100*time.Millisecond)
		},
			codes.DeadlineExceeded, func(context.CancelFunc) {}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obs.reset()
			ctx, cancel := tt.ctx()
			defer cancel()
			heldID := make(chan string, 1)
			go func() {
				id := <-held
				tt.held(cancel)
				heldID <- id
			}()
			_, err := tr.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "held"})
			if status.Code(err) != tt.code {
				t.Errorf("err = %v, want %v", err, tt.code)
			}
			id := <-heldID
			answer()
			if ids := obs.cancels(t, answeredSubject, 1); len(ids) != 1 || ids[0] != id {
				t.Errorf("cancels %q, want one, of the held request %q", ids, id)
			}
			if int(noted.Load()) != i+1 {
				t.Errorf("%d cancels noted, want %d", noted.Load(), i+1)
			}
		})
	}

	obs.reset()
	answer()
	answer() // the second one arrives after any cancel of the first
	if ids := obs.cancels(t, answeredSubject, 2); len(ids) != 0 {
		t.Errorf("an answered request was cancelled: %q", ids)
	}
}
