package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/tandem-ml/tandem/edge-go/internal/config"
)

// healthcheckTimeout bounds one check; a container runtime runs it every
// few seconds.
const healthcheckTimeout = 3 * time.Second

// healthcheck is `gateway healthcheck [flags]`: an image's HEALTHCHECK,
// for an image with no shell and no curl (distroless). It reads the
// settings as the gateway does (so the container's TANDEM_* environment
// applies), asks the REST listener's /v2/health/ready on loopback, and
// returns the exit code: 0 ready, 1 not ready or not answering, 2 bad
// settings.
func healthcheck(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) int {
	cfg, err := config.Load(args, lookupEnv, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 2
	}
	url, client, err := readiness(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 2
	}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "healthcheck: %s: %s\n", url, resp.Status)
		return 1
	}
	return 0
}

// readiness is the URL of the REST listener's readiness on loopback, and
// the client to ask it with.
func readiness(cfg config.Config) (string, *http.Client, error) {
	host, port, err := net.SplitHostPort(cfg.HTTPAddr)
	if err != nil {
		return "", nil, fmt.Errorf("--http-addr %q: %w", cfg.HTTPAddr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // every interface: loopback among them
	}
	transport := &http.Transport{DisableKeepAlives: true}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
		// The gateway's own listener, asked from inside its container: what
		// is checked is that it answers ready, not who it is. (With
		// --tls-client-ca the handshake needs a client certificate, which
		// the check has not: use a check of the orchestrator's there.)
		transport.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // see above
	}
	url := scheme + "://" + net.JoinHostPort(host, port) + "/v2/health/ready"
	return url, &http.Client{Timeout: healthcheckTimeout, Transport: transport}, nil
}
