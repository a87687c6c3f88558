// Package tlsconf builds the gateway's *tls.Config values from PEM files:
// the edge listeners' (REST and gRPC, --tls-cert/--tls-key, optional
// --tls-client-ca for mTLS) and the clients' of the hops to the inference
// service and NATS (--inference-tls-*, --nats-tls-*).
//
// It exists so that every listener and client gets the same policy (TLS 1.2
// at least, client certificates required and verified whenever a client CA
// is given) and so that a bad file fails at startup with an error naming
// it, rather than at the first handshake. Certificates are read once;
// rotating them means restarting, which Kubernetes does on a Secret change
// anyway.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// MinVersion is the oldest TLS version any config here accepts.
const MinVersion = tls.VersionTLS12

// Server returns a listener's config serving certFile/keyFile. With
// clientCAFile set, clients must present a certificate signed by one of its
// CAs (mutual TLS).
func Server(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("TLS needs both a certificate and a key file")
	}
	cert, err := keyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:   MinVersion,
		Certificates: []tls.Certificate{cert},
	}
	if clientCAFile != "" {
		pool, err := certPool(clientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Client returns a client's config. caFile "" trusts the system roots;
// certFile/keyFile, both or neither, are the client certificate for mTLS;
// serverName, when set, is the name the server's certificate must carry
// (else the dialed host's).
func Client(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: MinVersion, ServerName: serverName}
	if caFile != "" {
		pool, err := certPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	switch {
	case certFile != "" && keyFile != "":
		cert, err := keyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	case certFile != "" || keyFile != "":
		return nil, errors.New("a TLS client certificate needs both a certificate and a key file")
	}
	return cfg, nil
}

func keyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("TLS certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("TLS key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("TLS certificate %s with key %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

func certPool(caFile string) (*x509.CertPool, error) {
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("TLS CA %s: no PEM certificate in it", caFile)
	}
	return pool, nil
}
