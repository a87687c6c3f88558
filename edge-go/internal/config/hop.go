package config

import "errors"

// validateHop checks what contradicts the rest of the settings. The files
// themselves are read, and checked, when the transport is built.
func (c Config) validateHop() []error {
	var errs []error
	if c.Transport == "nats" && c.NATSURL != "" && c.NATSServerConfig != "" {
		errs = append(errs, errors.New("--nats-server-config configures the embedded nats-server, which runs only without --nats-url"))
	}
	return errs
}
