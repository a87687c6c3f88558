package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel"

	"github.com/tandem-ml/tandem/edge-go/internal/config"
	"github.com/tandem-ml/tandem/edge-go/internal/natsauth"
	"github.com/tandem-ml/tandem/edge-go/internal/natsserver"
	"github.com/tandem-ml/tandem/edge-go/internal/redact"
	"github.com/tandem-ml/tandem/edge-go/internal/telemetry"
	"github.com/tandem-ml/tandem/edge-go/internal/tlsconf"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/grpctransport"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/natstransport"
)

// newTransport builds the configured hop.
func newTransport(log *slog.Logger, cfg config.Config, tel *telemetry.Telemetry) (transport.Invoker, error) {
	switch cfg.Transport {
	case "grpc":
		var hopTLS *tls.Config
		if cfg.InferenceTLSCA != "" || cfg.InferenceTLSCert != "" || cfg.InferenceTLSServerName != "" {
			var err error
			if hopTLS, err = tlsconf.Client(cfg.InferenceTLSCA, cfg.InferenceTLSCert, cfg.InferenceTLSKey, cfg.InferenceTLSServerName); err != nil {
				return nil, fmt.Errorf("--inference-tls-*: %w", err)
			}
		}
		tr, err := grpctransport.New(grpctransport.Config{
			Addr:            cfg.InferenceAddr,
			TLS:             hopTLS,
			MaxMessageBytes: cfg.MaxMessageBytes,
			DialOptions:     tel.GRPCDialOptions(),
		})
		if err != nil {
			return nil, fmt.Errorf("transport: %w", err)
		}
		log.Info("forwarding over gRPC", "inference_addr", cfg.InferenceAddr, "tls", hopTLS != nil)
		return tr, nil
	case "nats":
		tr, err := newNATSTransport(log, cfg)
		if err != nil {
			return nil, fmt.Errorf("transport: %w", err)
		}
		return tr, nil
	}
	return nil, fmt.Errorf("transport %q is not built in", cfg.Transport)
}

// natsAuth is the gateway's own NATS credentials and TLS.
func natsAuth(cfg config.Config) natsauth.Config {
	return natsauth.Config{
		User:      cfg.NATSUser,
		Password:  cfg.NATSPassword.Reveal(),
		CredsFile: cfg.NATSCreds,
		NKeyFile:  cfg.NATSNKey,
		TLSCA:     cfg.NATSTLSCA,
		TLSCert:   cfg.NATSTLSCert,
		TLSKey:    cfg.NATSTLSKey,
	}
}

// credentialsHint names the flags to check when the server refused the
// gateway, which nats.go reports without saying whose settings are at fault.
func credentialsHint(err error) error {
	if errors.Is(err, natstransport.ErrRefused) {
		return fmt.Errorf("%w; check the gateway's credentials (--nats-user and --nats-password, --nats-creds, --nats-nkey, or user:pass@ in --nats-url) and --nats-tls-*", err)
	}
	return err
}

// newNATSTransport connects to --nats-url, or, when it is empty, starts an
// embedded nats-server for the workers and connects to it in process.
func newNATSTransport(log *slog.Logger, cfg config.Config) (transport.Invoker, error) {
	ncfg := natstransport.Config{
		URL:           cfg.NATSURL,
		SubjectPrefix: cfg.NATSSubjectPrefix,
		Auth:          natsAuth(cfg),
		Logger:        log,
		NoteCancel: func(err error) {
			if err != nil { // the connection is down; the worker's deadline drops the request
				log.Debug("nats cancel not published", "error", err)
			}
		},
		// The trace context travels in lowercase headers (proto/README.md).
		InjectHeaders: func(ctx context.Context, h natstransport.HeaderCarrier) {
			otel.GetTextMapPropagator().Inject(ctx, h)
		},
	}
	if cfg.NATSURL != "" {
		tr, err := natstransport.New(ncfg)
		if err != nil {
			return nil, credentialsHint(err)
		}
		log.Info("forwarding over NATS", "nats_url", redact.URLs(cfg.NATSURL), "nats_user", cfg.NATSUser,
			"subject_prefix", cfg.NATSSubjectPrefix)
		return tr, nil
	}
	ns, err := natsserver.Start(natsserver.Config{
		ConfigFile:  cfg.NATSServerConfig,
		Listen:      cfg.NATSListen,
		MonitorAddr: cfg.NATSMonitorAddr,
		// Requests the gateway would send over gRPC fit over NATS too, up
		// to the largest payload NATS advises.
		MaxPayload: min(cfg.MaxMessageBytes, natsserver.MaxPayloadLimit),
		Logger:     log,
	})
	if errors.Is(err, natsserver.ErrOpenListener) {
		return nil, fmt.Errorf("%w: give --nats-server-config a nats-server config with authorization (users or accounts, no no_auth_user), or keep --nats-listen on loopback", err)
	}
	if err != nil {
		return nil, err
	}
	ncfg.Server = ns
	tr, err := natstransport.New(ncfg)
	if err != nil {
		ns.Stop()
		return nil, credentialsHint(err)
	}
	monitor := ""
	if addr := ns.MonitorAddr(); addr != nil {
		monitor = addr.String()
	}
	log.Info("forwarding over NATS through an embedded nats-server; workers connect to nats_url",
		"nats_url", ns.ClientURL(), "nats_monitor_addr", monitor, "subject_prefix", cfg.NATSSubjectPrefix,
		"nats_server_config", cfg.NATSServerConfig, "nats_user", cfg.NATSUser)
	return &embeddedNATS{Invoker: tr, server: ns}, nil
}

// embeddedNATS is a NATS transport together with the server it runs, which
// is shut down last, after the transport's connection is closed.
type embeddedNATS struct {
	transport.Invoker
	server *natsserver.Server
}

func (e *embeddedNATS) Close() error {
	err := e.Invoker.Close()
	e.server.Stop()
	return err
}
