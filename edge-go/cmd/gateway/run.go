package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/tandem-ml/tandem/edge-go/internal/config"
	"github.com/tandem-ml/tandem/edge-go/internal/httpserver"
	"github.com/tandem-ml/tandem/edge-go/internal/rest"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/grpctransport"
)

// run serves until ctx ends, then shuts down gracefully.
func run(ctx context.Context, log *slog.Logger, cfg config.Config) error {
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	return serve(ctx, log, cfg, ln)
}

// serve is run on a listener of the caller's, which lets tests pick a port.
// It closes ln, and the transport once the last request has been answered.
func serve(ctx context.Context, log *slog.Logger, cfg config.Config, ln net.Listener) (err error) {
	tr, err := newTransport(cfg)
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer func() {
		if closeErr := tr.Close(); closeErr != nil && err == nil {
			err = closeErr
		}
	}()

	handler, err := rest.New(rest.Config{
		Transport:       tr,
		Logger:          log,
		Version:         version,
		MaxBodyBytes:    cfg.MaxBodyBytes,
		MaxMessageBytes: cfg.MaxMessageBytes,
	})
	if err != nil {
		_ = ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("gateway serving OIP REST",
		"http_addr", ln.Addr().String(),
		"transport", cfg.Transport,
		"inference_addr", cfg.InferenceAddr,
		"version", version)
	return httpserver.Serve(ctx, log, srv, ln, cfg.ShutdownTimeout)
}

func newTransport(cfg config.Config) (transport.Transport, error) {
	switch cfg.Transport {
	case "grpc":
		tr, err := grpctransport.New(grpctransport.Config{
			Addr:            cfg.InferenceAddr,
			Timeout:         cfg.Timeout,
			MaxMessageBytes: cfg.MaxMessageBytes,
		})
		if err != nil {
			return nil, fmt.Errorf("transport: %w", err)
		}
		return tr, nil
	}
	return nil, fmt.Errorf("transport %q is not built in", cfg.Transport)
}
