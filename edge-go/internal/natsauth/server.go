package natsauth

import (
	"fmt"
	"os"

	"github.com/nats-io/nats-server/v2/server"
)

// WriteServerConfig writes ServerConfig(prefix, passwords) to file,
// readable by its owner only since it holds the passwords. The stack runner
// and the gateway's embedded server load it with server.ProcessConfigFile
// (or nats-server -c).
func WriteServerConfig(file, prefix string, passwords map[string]string) error {
	conf, err := ServerConfig(prefix, passwords)
	if err != nil {
		return err
	}
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("writing nats server config: %w", err)
	}
	return nil
}

// RequiresAuth reports whether a nats-server configured with opts refuses
// anonymous clients: some authentication is set (users, nkeys, a token,
// operator/JWT mode, auth callout or custom) and no no_auth_user lets
// clients in without credentials. The gateway's embedded server must not
// listen beyond loopback unless this holds.
func RequiresAuth(opts *server.Options) bool {
	if opts == nil || opts.NoAuthUser != "" {
		return false
	}
	return len(opts.Users) > 0 || len(opts.Nkeys) > 0 ||
		opts.Username != "" || opts.Authorization != "" ||
		len(opts.TrustedOperators) > 0 || len(opts.TrustedKeys) > 0 ||
		opts.AuthCallout != nil || opts.CustomClientAuthentication != nil
}
