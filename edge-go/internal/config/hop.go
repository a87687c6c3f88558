package config

import (
	"errors"
	"flag"

	"github.com/tandem-ml/tandem/edge-go/internal/redact"
)

// Hop is how the gateway authenticates to what it forwards to, and what
// the embedded nats-server enforces: NATS credentials and TLS, the gRPC
// hop's mutual TLS. Empty fields mean none (plain, anonymous), which only
// a loopback or private hop should use.
type Hop struct {
	// NATS credentials, one kind at most (natsauth checks): a user and
	// password (also possible as user:pass@ in --nats-url), a .creds file
	// or an nkey seed file.
	NATSUser     string
	NATSPassword redact.Secret
	NATSCreds    string
	NATSNKey     string
	// NATSTLSCA verifies the NATS server; NATSTLSCert and NATSTLSKey are
	// the gateway's client certificate. Any of them turns TLS on.
	NATSTLSCA, NATSTLSCert, NATSTLSKey string
	// NATSServerConfig is a nats-server config file for the embedded
	// server: authorization, accounts, permissions, tls.
	NATSServerConfig string

	// The gRPC hop's TLS: the CA that signed the service's certificate,
	// the gateway's client certificate and key (mutual TLS), and the name
	// the service's certificate must carry when it is not the dialed host.
	InferenceTLSCA, InferenceTLSCert, InferenceTLSKey, InferenceTLSServerName string
}

// register defines the hop's flags on fs.
func (h *Hop) register(fs *flag.FlagSet) {
	fs.StringVar(&h.NATSUser, "nats-user", "", "with --transport nats: NATS user name (with --nats-password)")
	fs.Var(secretFlag{&h.NATSPassword}, "nats-password", "with --transport nats: NATS password; prefer the environment variable, which stays out of ps")
	fs.StringVar(&h.NATSCreds, "nats-creds", "", "with --transport nats: `file` of NATS user credentials (.creds: a user JWT and nkey seed)")
	fs.StringVar(&h.NATSNKey, "nats-nkey", "", "with --transport nats: `file` holding a NATS user nkey seed (SU...)")
	fs.StringVar(&h.NATSTLSCA, "nats-tls-ca", "", "with --transport nats: PEM `file` of the CA that signed the NATS server's certificate (turns TLS on)")
	fs.StringVar(&h.NATSTLSCert, "nats-tls-cert", "", "with --transport nats: PEM `file` of the gateway's NATS client certificate (with --nats-tls-key; turns TLS on)")
	fs.StringVar(&h.NATSTLSKey, "nats-tls-key", "", "with --transport nats: PEM `file` of the key of --nats-tls-cert")
	fs.StringVar(&h.NATSServerConfig, "nats-server-config", "", "without --nats-url: nats-server config `file` for the embedded server (authorization, permissions, tls); --nats-listen and --nats-monitor-addr override its listen and http")
	fs.StringVar(&h.InferenceTLSCA, "inference-tls-ca", "", "with --transport grpc: PEM `file` of the CA that signed the inference service's certificate (turns TLS on)")
	fs.StringVar(&h.InferenceTLSCert, "inference-tls-cert", "", "with --transport grpc: PEM `file` of the gateway's client certificate, for mutual TLS (with --inference-tls-key)")
	fs.StringVar(&h.InferenceTLSKey, "inference-tls-key", "", "with --transport grpc: PEM `file` of the key of --inference-tls-cert")
	fs.StringVar(&h.InferenceTLSServerName, "inference-tls-server-name", "", "with --transport grpc: the name the service's certificate must carry (default: the host of --inference-addr)")
}

// InferenceTLS reports whether the gRPC hop uses TLS: any of its TLS
// settings turns it on.
func (h Hop) InferenceTLS() bool {
	return h.InferenceTLSCA != "" || h.InferenceTLSCert != "" || h.InferenceTLSKey != "" || h.InferenceTLSServerName != ""
}

// validateHop checks what contradicts the rest of the settings. The files
// themselves are read, and checked, when the transport is built.
func (c Config) validateHop() []error {
	var errs []error
	if c.Transport == "nats" && c.NATSURL != "" && c.NATSServerConfig != "" {
		errs = append(errs, errors.New("--nats-server-config configures the embedded nats-server, which runs only without --nats-url"))
	}
	return errs
}

// secretFlag is a flag.Value that keeps its value a redact.Secret, so that
// neither --help nor a log line can show it.
type secretFlag struct{ s *redact.Secret }

func (f secretFlag) Set(v string) error { *f.s = redact.Secret(v); return nil }

// String is what --help would show as the default: never the value.
func (f secretFlag) String() string { return "" }
