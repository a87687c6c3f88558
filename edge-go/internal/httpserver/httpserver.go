// Package httpserver runs an http.Server for as long as a context lives and
// then shuts it down gracefully.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Serve serves srv on ln until ctx ends, then stops accepting connections and
// gives the requests in flight up to shutdownTimeout to finish; whatever is
// left after that is cut off and reported as an error.
//
// Requests must not inherit ctx (leave srv.BaseContext unset): ending ctx
// starts the shutdown, and the requests in flight are to finish, not be
// canceled.
func Serve(ctx context.Context, log *slog.Logger, srv *http.Server, ln net.Listener, shutdownTimeout time.Duration) error {
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve http on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	log.Info("shutting down: finishing requests in flight", "timeout", shutdownTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close() // cut off what did not finish in time
		return fmt.Errorf("shut down http: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve http on %s: %w", ln.Addr(), err)
	}
	return nil
}
