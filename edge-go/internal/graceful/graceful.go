// Package graceful runs a server for as long as a context lives and then
// shuts it down gracefully: the one shutdown path of the REST, edge gRPC and
// admin listeners.
package graceful

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"
)

// Server is what Serve runs: *http.Server has these methods, and GRPC gives
// them to a *grpc.Server.
type Server interface {
	// Serve serves on ln until Shutdown or Close; it returns
	// http.ErrServerClosed (or nil) after them.
	Serve(ln net.Listener) error
	// Shutdown stops accepting connections and waits for the requests in
	// flight until ctx ends.
	Shutdown(ctx context.Context) error
	// Close cuts off whatever is left.
	Close() error
}

// Serve serves srv on ln until ctx ends, then stops accepting connections and
// gives the requests in flight up to shutdownTimeout to finish; whatever is
// left after that is cut off and reported as an error. name ("http",
// "grpc", "admin") names the server in messages.
//
// Requests must not inherit ctx (leave http.Server.BaseContext unset):
// ending ctx starts the shutdown, and the requests in flight are to finish,
// not be canceled.
func Serve(ctx context.Context, log *slog.Logger, name string, srv Server, ln net.Listener, shutdownTimeout time.Duration) error {
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve %s on %s: %w", name, ln.Addr(), err)
	case <-ctx.Done():
	}

	log.Info("shutting down: finishing requests in flight", "server", name, "timeout", shutdownTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close() // cut off what did not finish in time
		<-served
		return fmt.Errorf("shut down %s: %w", name, err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s on %s: %w", name, ln.Addr(), err)
	}
	return nil
}

// GRPC gives a gRPC server the Shutdown and Close of Server.
func GRPC(srv *grpc.Server) Server { return grpcServer{srv} }

type grpcServer struct{ *grpc.Server }

// Serve ends as http.Server's does: a shutdown that came before Serve began
// (ErrServerStopped) is the normal end too.
func (s grpcServer) Serve(ln net.Listener) error {
	if err := s.Server.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return http.ErrServerClosed
}

func (s grpcServer) Shutdown(ctx context.Context) error {
	stopped := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("calls still in flight were cut off: %w", ctx.Err())
	}
}

func (s grpcServer) Close() error {
	s.Stop()
	return nil
}
