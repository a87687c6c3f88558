package tlsconf_test

import (
	"crypto/tls"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ml/tandem/edge-go/internal/tlsconf"
	"github.com/tandem-ml/tandem/edge-go/internal/tlsconf/tlstest"
)

// handshake serves one TLS connection with server on loopback, dials it
// with client and returns the client's and the server's handshake errors.
func handshake(t *testing.T, server, client *tls.Config) (clientErr, serverErr error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		err = c.(*tls.Conn).Handshake()
		if err == nil {
			_, err = c.Write([]byte("ok"))
		}
		done <- err
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err == nil {
		// TLS 1.3 reports a refused client certificate on the first read.
		var buf [2]byte
		_, err = io.ReadFull(c, buf[:])
		c.Close()
	}
	return err, <-done
}

func TestHandshakes(t *testing.T) {
	pki, other := tlstest.New(t), tlstest.New(t)
	must := func(cfg *tls.Config, err error) *tls.Config {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	tlsOnly := must(tlsconf.Server(pki.ServerCert, pki.ServerKey, ""))
	mTLS := must(tlsconf.Server(pki.ServerCert, pki.ServerKey, pki.CA))

	tests := []struct {
		name   string
		server *tls.Config
		client *tls.Config
		ok     bool
	}{
		{"right CA", tlsOnly, must(tlsconf.Client(pki.CA, "", "", "")), true},
		{"right CA, by name", tlsOnly, must(tlsconf.Client(pki.CA, "", "", tlstest.ServerName)), true},
		{"wrong server name", tlsOnly, must(tlsconf.Client(pki.CA, "", "", "elsewhere")), false},
		{"wrong CA", tlsOnly, must(tlsconf.Client(other.CA, "", "", "")), false},
		{"mTLS, client cert", mTLS, must(tlsconf.Client(pki.CA, pki.ClientCert, pki.ClientKey, "")), true},
		{"mTLS, no client cert", mTLS, must(tlsconf.Client(pki.CA, "", "", "")), false},
		{"mTLS, client cert of another CA", mTLS, must(tlsconf.Client(pki.CA, other.ClientCert, other.ClientKey, "")), false},
		{"TLS 1.1 client", tlsOnly, &tls.Config{MaxVersion: tls.VersionTLS11, RootCAs: must(tlsconf.Client(pki.CA, "", "", "")).RootCAs}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clientErr, serverErr := handshake(t, tt.server, tt.client)
			if ok := clientErr == nil && serverErr == nil; ok != tt.ok {
				t.Fatalf("handshake ok %v, want %v (client: %v; server: %v)", ok, tt.ok, clientErr, serverErr)
			}
		})
	}
}

func TestConfigs(t *testing.T) {
	pki := tlstest.New(t)
	s, err := tlsconf.Server(pki.ServerCert, pki.ServerKey, pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	if s.MinVersion != tls.VersionTLS12 || s.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("server: MinVersion %x ClientAuth %v", s.MinVersion, s.ClientAuth)
	}
	s, err = tlsconf.Server(pki.ServerCert, pki.ServerKey, "")
	if err != nil || s.ClientAuth != tls.NoClientCert {
		t.Errorf("server without client CA: ClientAuth %v, %v", s.ClientAuth, err)
	}
	c, err := tlsconf.Client("", "", "", "")
	if err != nil || c.RootCAs != nil || c.MinVersion != tls.VersionTLS12 {
		t.Errorf("system-roots client: %+v, %v", c, err)
	}
}

func TestErrorsNameTheFile(t *testing.T) {
	pki := tlstest.New(t)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	tests := []struct {
		name string
		call func() error
		file string
	}{
		{"server cert missing", func() error { _, err := tlsconf.Server(missing, pki.ServerKey, ""); return err }, missing},
		{"server key missing", func() error { _, err := tlsconf.Server(pki.ServerCert, missing, ""); return err }, missing},
		{"server cert garbage", func() error { _, err := tlsconf.Server(garbage, pki.ServerKey, ""); return err }, garbage},
		{"key of another cert", func() error { _, err := tlsconf.Server(pki.ServerCert, pki.ClientKey, ""); return err }, pki.ClientKey},
		{"client CA garbage", func() error { _, err := tlsconf.Server(pki.ServerCert, pki.ServerKey, garbage); return err }, garbage},
		{"client CA missing", func() error { _, err := tlsconf.Server(pki.ServerCert, pki.ServerKey, missing); return err }, missing},
		{"CA garbage", func() error { _, err := tlsconf.Client(garbage, "", "", ""); return err }, garbage},
		{"client key missing", func() error { _, err := tlsconf.Client(pki.CA, pki.ClientCert, missing, ""); return err }, missing},
		{"server without key", func() error { _, err := tlsconf.Server(pki.ServerCert, "", ""); return err }, "both"},
		{"client cert without key", func() error { _, err := tlsconf.Client(pki.CA, pki.ClientCert, "", ""); return err }, "both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.file) {
				t.Errorf("error %q does not name %s", err, tt.file)
			}
			if tt.file == missing && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("error %v is not os.ErrNotExist", err)
			}
		})
	}
}
