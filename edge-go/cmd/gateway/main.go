// Command gateway is Tandem's Go edge: it serves the Open Inference Protocol's
// REST API and forwards inference to the Python service. Run with -h for the
// settings; each flag has a TANDEM_* environment twin.
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/tandem-ml/tandem/edge-go/internal/config"
	"github.com/tandem-ml/tandem/edge-go/internal/telemetry"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	// `gateway healthcheck`: the image's HEALTHCHECK (healthcheck.go).
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		os.Exit(healthcheck(os.Args[2:], os.LookupEnv, os.Stderr))
	}
	var level slog.LevelVar
	// Lines logged with a request's context carry its trace_id and span_id.
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: &level})))

	cfg, err := config.Load(os.Args[1:], os.LookupEnv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		log.Error("bad configuration", "error", err)
		os.Exit(2)
	}
	level.Set(cfg.LogLevel)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, the default handling returns, so that a
		// second one stops a shutdown that takes too long.
		<-ctx.Done()
		stop()
	}()

	if err := run(ctx, log, cfg); err != nil {
		log.Error("gateway stopped", "error", err)
		os.Exit(1)
	}
	log.Info("gateway stopped")
}
