package main

import (
	"context"
	"crypto/tls"
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
	"sync/atomic"
	"time"

	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tandem-ml/tandem/edge-go/internal/auth"
	"github.com/tandem-ml/tandem/edge-go/internal/coalesce"
	"github.com/tandem-ml/tandem/edge-go/internal/config"
	"github.com/tandem-ml/tandem/edge-go/internal/demopage"
	"github.com/tandem-ml/tandem/edge-go/internal/edge"
	"github.com/tandem-ml/tandem/edge-go/internal/edgegrpc"
	"github.com/tandem-ml/tandem/edge-go/internal/graceful"
	"github.com/tandem-ml/tandem/edge-go/internal/limit"
	"github.com/tandem-ml/tandem/edge-go/internal/metrics"
	"github.com/tandem-ml/tandem/edge-go/internal/natsserver"
	"github.com/tandem-ml/tandem/edge-go/internal/rest"
	"github.com/tandem-ml/tandem/edge-go/internal/telemetry"
	"github.com/tandem-ml/tandem/edge-go/internal/tlsconf"
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
	if cfg.HopAttemptTimeout != 0 {
		log.Warn("--hop-attempt-timeout is ignored and going away: an attempt that may have reached a worker is no longer retried")
	}
	m := metrics.New(cfg.Transport)
	edgeSec, err := newEdgeSecurity(log, cfg, ls)
	if err != nil {
		ls.close()
		return err
	}
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
		edge.Admit(limit.NewInFlight(limit.InFlightConfig{Max: cfg.MaxInFlight, MaxModels: metrics.MaxModels}), m.Refused),
	)
	defer func() {
		if closeErr := tr.Close(); closeErr != nil && err == nil {
			err = closeErr
		}
	}()

	// On SIGTERM the gateway drains: readiness turns 503 / NOT_SERVING at
	// once while requests are still served, so that load balancers stop
	// sending; after --drain-delay the listeners close (stop).
	var draining atomic.Bool
	stop, stopServers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServers()

	handler, err := rest.New(rest.Config{
		Transport:       tr,
		Logger:          log,
		Timeout:         cfg.Timeout,
		Version:         version,
		MaxBodyBytes:    cfg.MaxBodyBytes,
		MaxMessageBytes: cfg.MaxMessageBytes,
		Metrics:         m,
		Keys:            edgeSec.keys,
		Rate:            edgeSec.rate,
		Draining:        draining.Load,
	})
	if err != nil {
		ls.close()
		return err
	}
	page, err := withDemoPage(cfg, handler)
	if err != nil {
		ls.close()
		return err
	}
	httpSrv := &http.Server{
		Handler:           tel.HTTPHandler(page),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		TLSConfig:         edgeSec.tls.Clone(), // each server its own: net/http adds h2 to it
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if cfg.MaxConnections > 0 {
		ls.http = netutil.LimitListener(ls.http, cfg.MaxConnections)
	}

	// Either server failing stops the others: a gateway half up is down.
	var wg sync.WaitGroup
	var httpErr, grpcErr, adminErr error
	wg.Go(func() {
		defer stopServers()
		httpErr = graceful.Serve(stop, log, "http", httpServer(httpSrv), ls.http, cfg.ShutdownTimeout)
	})
	adminAddr := ""
	if ls.admin != nil {
		adminAddr = ls.admin.Addr().String()
		adminSrv := &http.Server{
			Handler:           adminHandler(m, cfg.PProf),
			ReadHeaderTimeout: cfg.ReadHeaderTimeout,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		wg.Go(func() {
			defer stopServers()
			adminErr = graceful.Serve(stop, log, "admin", adminSrv, ls.admin, cfg.ShutdownTimeout)
		})
	}
	grpcAddr := ""
	var edgeGRPC *edgegrpc.Server
	if ls.grpc != nil {
		grpcAddr = ls.grpc.Addr().String()
		opts := append(tel.GRPCServerOptions(), // spans for OIP calls, continuing the client's trace
			grpc.MaxConcurrentStreams(uint32(cfg.GRPCMaxConcurrentStreams)),
			grpc.ConnectionTimeout(cfg.ReadHeaderTimeout))
		if edgeSec.tls != nil {
			opts = append(opts, grpc.Creds(credentials.NewTLS(edgeSec.tls.Clone())))
		}
		edgeGRPC = edgegrpc.New(edgegrpc.Config{
			Transport: tr,
			Logger:    log,
			Name:      rest.ServerName,
			Version:   version,
			// Binary tensor data is a REST extension, but Triton lists
			// its extensions over both protocols alike.
			Extensions: rest.Extensions,
			Timeout:    cfg.Timeout,
			// A gRPC request is its own body, and is forwarded as it is.
			MaxRecvBytes:  int(min(cfg.MaxBodyBytes, int64(cfg.MaxMessageBytes))),
			MaxSendBytes:  cfg.MaxMessageBytes,
			Metrics:       m,
			Keys:          edgeSec.keys,
			Rate:          edgeSec.rate,
			Draining:      draining.Load,
			ServerOptions: opts,
		})
		wg.Go(func() {
			defer stopServers()
			grpcErr = graceful.Serve(stop, log, "grpc", edgeGRPC, ls.grpc, cfg.ShutdownTimeout)
		})
	}
	wg.Go(func() {
		select {
		case <-stop.Done(): // a server failed
			return
		case <-ctx.Done():
		}
		draining.Store(true)
		// From here on each response says Connection: close, and the idle
		// connections are closed now: during the drain delay clients open a
		// new connection per request, which a load balancer that saw
		// readiness turn 503 sends elsewhere. A request written onto an idle
		// connection at the instant it closes gets no answer, but it was
		// never read, so it is safe to send again.
		httpSrv.SetKeepAlivesEnabled(false)
		if edgeGRPC != nil {
			edgeGRPC.Drain()
		}
		log.Info("draining: readiness is 503 / NOT_SERVING, requests are still served until the listeners close", "drain_delay", cfg.DrainDelay)
		timer := time.NewTimer(cfg.DrainDelay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-stop.Done():
		}
		stopServers()
	})
	log.Info("gateway serving OIP",
		"http_addr", ls.http.Addr().String(),
		"grpc_addr", grpcAddr,
		"admin_addr", adminAddr,
		"transport", cfg.Transport,
		"tls", edgeSec.tls != nil,
		"version", version)
	wg.Wait()
	return errors.Join(httpErr, grpcErr, adminErr)
}

// edgeSecurity is what guards the client listeners: TLS, API keys and the
// per-client rate; each nil when not configured.
type edgeSecurity struct {
	tls  *tls.Config
	keys *auth.Keys
	rate *limit.Rate
}

func newEdgeSecurity(log *slog.Logger, cfg config.Config, ls listeners) (edgeSecurity, error) {
	var sec edgeSecurity
	var err error
	if cfg.TLSCert != "" {
		if sec.tls, err = tlsconf.Server(cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA); err != nil {
			return sec, fmt.Errorf("--tls-cert: %w", err)
		}
	}
	if sec.keys, err = auth.Load(cfg.APIKeyList(), cfg.APIKeysFile); err != nil {
		return sec, fmt.Errorf("api keys: %w", err)
	}
	if cfg.RateLimit > 0 {
		sec.rate = limit.NewRate(limit.RateConfig{PerSecond: cfg.RateLimit, Burst: cfg.RateBurst})
	}
	if sec.keys.Enabled() {
		log.Info("API keys required on the client listeners", "keys", sec.keys.Len())
	}
	for _, ln := range []net.Listener{ls.http, ls.grpc} {
		if ln != nil && !sec.keys.Enabled() && !loopback(ln.Addr()) {
			log.Warn("a client listener is reachable beyond loopback and no API keys are set: anyone who reaches it may use every model (--api-keys, --api-keys-file)",
				"addr", ln.Addr().String())
		}
	}
	return sec, nil
}

// loopback reports whether addr is a loopback address (not ":8000", which
// is every interface).
func loopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// httpServer serves srv over TLS when it has a TLS config.
func httpServer(srv *http.Server) graceful.Server {
	if srv.TLSConfig == nil {
		return srv
	}
	return tlsServer{srv}
}

type tlsServer struct{ *http.Server }

// Serve serves TLS with the config's certificates (and HTTP/2 over it).
func (s tlsServer) Serve(ln net.Listener) error { return s.ServeTLS(ln, "", "") }

// withDemoPage puts the demo page at / in front of the API, unless
// --demo-page=false. The page is public, as the health endpoints are: it is
// static, and its calls to the models are the API's, with the API's keys
// and limits.
func withDemoPage(cfg config.Config, api http.Handler) (http.Handler, error) {
	if !cfg.DemoPage {
		return api, nil
	}
	return demopage.New(demopage.Config{Transport: cfg.Transport, TraceURL: cfg.DemoTraceURL}, api)
}

// adminHandler serves the Prometheus metrics, and Go's profiles when
// pprof is set (--pprof: they cost CPU and tell much about the process).
// pprof is mounted here rather than through its init's registration on
// http.DefaultServeMux, which the gateway does not serve.
func adminHandler(m *metrics.Metrics, withPProf bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	if !withPProf {
		return mux
	}
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
