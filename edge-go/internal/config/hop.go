package config

import (
	"errors"
	"flag"
)

// Hop holds the hop's settings that only the hop's code reads: what the
// embedded nats-server enforces. (The gateway's own credentials and TLS on
// the hop, --nats-user ... --inference-tls-*, are fields of Config.)
type Hop struct {
	// NATSServerConfig is a nats-server config file for the embedded
	// server: authorization, accounts, permissions, tls.
	NATSServerConfig string
}

// register defines the hop's flags on fs.
func (h *Hop) register(fs *flag.FlagSet) {
	fs.StringVar(&h.NATSServerConfig, "nats-server-config", "", "without --nats-url: nats-server config `file` for the embedded server (authorization, permissions, tls); --nats-listen, --nats-monitor-addr and the max payload override its own; without authorization in it the server listens on loopback only")
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
