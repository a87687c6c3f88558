// Package natsauth turns the NATS credential settings the gateway and the
// Python workers share (--nats-user, --nats-password, --nats-creds,
// --nats-nkey, --nats-tls-*) into nats.go connect options, and writes the
// nats-server authorization config with the three users of the stack
// (gateway, worker, observer) and their permissions. RequiresAuth tells
// whether a loaded nats-server config refuses anonymous clients, which the
// embedded server needs before it listens beyond loopback.
//
// It checks every file when the options are built, so a missing or bad
// credentials file fails at startup with an error naming it rather than as
// an "authorization violation" at the first connect; and it refuses
// settings that contradict each other, since nats.go would silently use one.
package natsauth

import (
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/tandem-ml/tandem/edge-go/internal/tlsconf"
)

// Config holds one client's NATS credentials; the zero Config connects
// anonymously without TLS (what a server with no authorization accepts).
type Config struct {
	// User and Password authenticate with a user name and password.
	User, Password string
	// CredsFile is a .creds file (a user JWT and its nkey seed), for servers
	// in operator/JWT mode.
	CredsFile string
	// NKeyFile is a file holding a user nkey seed (SU...).
	NKeyFile string
	// TLSCA verifies the server's certificate ("" : the system roots, when
	// TLS is on). TLSCert and TLSKey, both or neither, are the client's
	// certificate. Any of the three turns TLS on.
	TLSCA, TLSCert, TLSKey string
}

// Options returns the nats.go options for cfg, or an error naming the
// setting or file at fault. Use them with nats.Connect(url, opts...).
func Options(cfg Config) ([]nats.Option, error) {
	var opts []nats.Option
	userPass := cfg.User != "" || cfg.Password != ""
	switch {
	case cfg.CredsFile != "" && cfg.NKeyFile != "":
		return nil, errors.New("nats: set a creds file or an nkey seed file, not both")
	case userPass && (cfg.CredsFile != "" || cfg.NKeyFile != ""):
		return nil, errors.New("nats: set a user and password, or a creds file or nkey seed file, not both")
	case cfg.User != "" && cfg.Password == "":
		return nil, fmt.Errorf("nats: user %q has no password", cfg.User)
	case cfg.User == "" && cfg.Password != "":
		return nil, errors.New("nats: a password is set without a user")
	}

	switch {
	case userPass:
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	case cfg.CredsFile != "":
		if err := checkCreds(cfg.CredsFile); err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	case cfg.NKeyFile != "":
		if err := checkSeed(cfg.NKeyFile); err != nil {
			return nil, err
		}
		// nats.go reads the seed again at each connect and wipes it after
		// signing, so it is not held in memory between connects.
		opt, err := nats.NkeyOptionFromSeed(cfg.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey seed file %s: %w", cfg.NKeyFile, err)
		}
		opts = append(opts, opt)
	}

	if cfg.TLSCA != "" || cfg.TLSCert != "" || cfg.TLSKey != "" {
		// ServerName stays empty: nats.go sets it to the host of each URL
		// it dials, which a cluster of servers needs.
		tc, err := tlsconf.Client(cfg.TLSCA, cfg.TLSCert, cfg.TLSKey, "")
		if err != nil {
			return nil, fmt.Errorf("nats: %w", err)
		}
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

// checkCreds makes sure file holds a user JWT and a user seed.
func checkCreds(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("nats creds file: %w", err)
	}
	defer wipe(data)
	if jwt, err := nkeys.ParseDecoratedJWT(data); err != nil || jwt == "" {
		return fmt.Errorf("nats creds file %s: no user JWT in it", file)
	}
	kp, err := nkeys.ParseDecoratedNKey(data)
	if err != nil {
		return fmt.Errorf("nats creds file %s: no nkey seed in it: %w", file, err)
	}
	kp.Wipe()
	return nil
}

// checkSeed makes sure file holds a user nkey seed.
func checkSeed(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("nats nkey seed file: %w", err)
	}
	defer wipe(data)
	kp, err := nkeys.ParseDecoratedNKey(data)
	if err != nil {
		return fmt.Errorf("nats nkey seed file %s: %w", file, err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return fmt.Errorf("nats nkey seed file %s: %w", file, err)
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		return fmt.Errorf("nats nkey seed file %s: not a user seed (SU...)", file)
	}
	return nil
}

func wipe(b []byte) {
	for i := range b {
		b[i] = 'x'
	}
}
