package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/tandem-ml/tandem/edge-go/internal/coalesce"
	"github.com/tandem-ml/tandem/edge-go/internal/config"
	"github.com/tandem-ml/tandem/edge-go/internal/edgegrpc"
	"github.com/tandem-ml/tandem/edge-go/internal/graceful"
	"github.com/tandem-ml/tandem/edge-go/internal/metrics"
	"github.com/tandem-ml/tandem/edge-go/internal/natsserver"
	"github.com/tandem-ml/tandem/edge-go/internal/rest"
	"github.com/tandem-ml/tandem/edge-go/internal/telemetry"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
)

// listeners are where the gateway serves clients, and admin its metrics
// and pprof; grpc and admin are nil when disabled.
type listeners struct {
	http, grpc, admin net.Listener
}

func (ls listeners) close() {
	for _, ln := range []net.Listener{ls.http, ls.grpc, ls.admin} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

// run serves until ctx ends, then shuts down gracefully.
func run(ctx context.Context, log *slog.Logger, cfg config.Config) error {
	var ls listeners
	var err error
	if ls.http, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	if cfg.GRPCAddr != "" {
		if ls.grpc, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
			ls.close()
			return fmt.Errorf("listen on %s: %w", cfg.GRPCAddr, err)
		}
	}
	if cfg.AdminAddr != "" {
		if ls.admin, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
			ls.close()
			return fmt.Errorf("listen on %s: %w", cfg.AdminAddr, err)
		}
	}
	return serve(ctx, log, cfg, ls)
}

// telemetryFlushTimeout bounds the export of the last spans on exit.
const telemetryFlushTimeout = 5 * time.Second

// serve is run on listeners of the caller's, which lets tests pick ports.
// It closes them, and then the transport once the last request has been
// answered (and after it the embedded nats-server, if any).
func serve(ctx context.Context, log *slog.Logger, cfg config.Config, ls listeners) (err error) {
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceVersion: version, Logger: log, LookupEnv: os.LookupEnv})
	if err != nil {
		ls.close()
		return err
	}
	defer func() {
		// Export what is still buffered, after the last request.
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), telemetryFlushTimeout)
		defer cancel()
		if err := tel.Shutdown(flushCtx); err != nil {
			log.Warn("telemetry not flushed", "error", err)
		}
	}()
	rules, err := loadRouting(log, cfg)
	if err != nil {
		ls.close()
		return err
	}
	m := metrics.New(cfg.Transport)
	hop, err := newTransport(log, cfg, tel)
	if err != nil {
		ls.close()
		return err
	}
	// What every call goes through, from the hop up.
	tr := transport.Chain(hop,
		transport.ObserveFailures(m.HopError), // every attempt, a retried one too
		transport.Retry,
		coalesce.Middleware(rules, hopMessageBytes(cfg)),
	)
	defer func() {
		if closeErr := tr.Close(); closeErr != nil && err == nil {
			err = closeErr
		}
	}()

	handler, err := rest.New(rest.Config{
		Transport:       tr,
		Logger:          log,
		Timeout:         cfg.Timeout,
		Version:         version,
		MaxBodyBytes:    cfg.MaxBodyBytes,
		MaxMessageBytes: cfg.MaxMessageBytes,
		Metrics:         m,
	})
	if err != nil {
		ls.close()
		return err
	}
	httpSrv := &http.Server{
		Handler:           tel.HTTPHandler(handler),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	// Either server failing stops the other: a gateway half up is down.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var httpErr, grpcErr, adminErr error
	wg.Go(func() {
		defer cancel()
		httpErr = graceful.Serve(ctx, log, "http", httpSrv, ls.http, cfg.ShutdownTimeout)
	})
	adminAddr := ""
	if ls.admin != nil {
		adminAddr = ls.admin.Addr().String()
		adminSrv := &http.Server{
			Handler:           adminHandler(m),
			ReadHeaderTimeout: cfg.ReadHeaderTimeout,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		wg.Go(func() {
			defer cancel()
			adminErr = graceful.Serve(ctx, log, "admin", adminSrv, ls.admin, cfg.ShutdownTimeout)
		})
	}
	grpcAddr := ""
	if ls.grpc != nil {
		grpcAddr = ls.grpc.Addr().String()
		edge := edgegrpc.New(edgegrpc.Config{
			Transport: tr,
			Logger:    log,
			Name:      rest.ServerName,
			Version:   version,
			// Binary tensor data is a REST extension, but Triton lists
			// its extensions over both protocols alike.
			Extensions: rest.Extensions,
			Timeout:    cfg.Timeout,
			// A gRPC request is its own body, and is forwarded as it is.
			MaxRecvBytes: int(min(cfg.MaxBodyBytes, int64(cfg.MaxMessageBytes))),
			MaxSendBytes: cfg.MaxMessageBytes,
			Metrics:      m,
			// Spans for OIP calls, continuing the client's trace.
			ServerOptions: tel.GRPCServerOptions(),
		})
		wg.Go(func() {
			defer cancel()
			grpcErr = graceful.Serve(ctx, log, "grpc", edge, ls.grpc, cfg.ShutdownTimeout)
		})
	}
	log.Info("gateway serving OIP",
		"http_addr", ls.http.Addr().String(),
		"grpc_addr", grpcAddr,
		"admin_addr", adminAddr,
		"transport", cfg.Transport,
		"version", version)
	wg.Wait()
	return errors.Join(httpErr, grpcErr, adminErr)
}

// adminHandler serves the Prometheus metrics and Go's profiles. pprof is
// mounted here rather than through its init's registration on
// http.DefaultServeMux, which the gateway does not serve.
func adminHandler(m *metrics.Metrics) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// loadRouting reads --routing, when given: the per-model rules of request
// coalescing.
func loadRouting(log *slog.Logger, cfg config.Config) (map[string]coalesce.Rule, error) {
	if cfg.RoutingFile == "" {
		return nil, nil
	}
	rules, err := coalesce.LoadRules(cfg.RoutingFile)
	if err != nil {
		return nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(rules)) {
		if r := rules[name]; r.Coalesce {
			log.Info("coalescing infer requests", "model", name, "max_rows", r.MaxRows, "max_in_flight", r.MaxInFlight)
		}
	}
	return rules, nil
}

// hopMessageBytes bounds a merged request: what the hop carries. Over NATS
// that is also the server's max_payload, which for a server of someone
// else's (--nats-url) is taken to be NATS's default, 1 MiB.
func hopMessageBytes(cfg config.Config) int {
	switch {
	case cfg.Transport != "nats":
		return cfg.MaxMessageBytes
	case cfg.NATSURL == "":
		return min(cfg.MaxMessageBytes, natsserver.MaxPayloadLimit)
	}
	return min(cfg.MaxMessageBytes, 1<<20)
}
