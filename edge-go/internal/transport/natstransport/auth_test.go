package natstransport_test

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tandem-ml/tandem/edge-go/gen/inferencepb"
	"github.com/tandem-ml/tandem/edge-go/internal/natsauth"
	"github.com/tandem-ml/tandem/edge-go/internal/natstest"
	"github.com/tandem-ml/tandem/edge-go/internal/tlsconf"
	"github.com/tandem-ml/tandem/edge-go/internal/tlsconf/tlstest"
	"github.com/tandem-ml/tandem/edge-go/internal/transport"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/natstransport"
)

var passwords = map[string]string{
	natsauth.UserGateway:  "gw-secret",
	natsauth.UserWorker:   "wk-secret",
	natsauth.UserObserver: "ob-secret",
}

// startAuthServer runs a real nats-server on loopback with the stack's
// users (natsauth.ServerConfig) and, when pki is set, TLS that requires a
// client certificate. It returns the server's host:port.
func startAuthServer(t *testing.T, pki *tlstest.PKI) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "nats.conf")
	if err := natsauth.WriteServerConfig(file, prefix, passwords); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", server.RANDOM_PORT, true, true
	if pki != nil {
		if opts.TLSConfig, err = tlsconf.Server(pki.ServerCert, pki.ServerKey, pki.CA); err != nil {
			t.Fatal(err)
		}
		opts.TLS, opts.TLSVerify = true, true
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return ns.Addr().String()
}

// With the right credentials the gateway connects and its requests are
// served; with wrong or none, New fails at once, saying why, and never
// shows the password.
func TestCredentials(t *testing.T) {
	addr := startAuthServer(t, nil)
	natstest.StartWorker(t, "nats://worker:"+passwords["worker"]+"@"+addr, prefix, echo(t))
	url := "nats://" + addr

	for _, tt := range []struct {
		name string
		cfg  natstransport.Config
	}{
		{"user and password", natstransport.Config{URL: url, Auth: natsauth.Config{User: "gateway", Password: passwords["gateway"]}}},
		{"in the URL", natstransport.Config{URL: "nats://gateway:" + passwords["gateway"] + "@" + addr}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTransport(t, tt.cfg)
			resp, err := tr.ModelInfer(bounded(t), &pb.ModelInferRequest{ModelName: "digits", Id: "1"})
			if err != nil || resp.GetId() != "1" {
				t.Errorf("ModelInfer = %v, %v", resp, err)
			}
		})
	}

	for _, tt := range []struct {
		name string
		cfg  natstransport.Config
	}{
		{"wrong password", natstransport.Config{URL: url, Auth: natsauth.Config{User: "gateway", Password: "wrong-pw"}}},
		{"wrong password in the URL", natstransport.Config{URL: "nats://gateway:wrong-pw@" + addr}},
		{"anonymous", natstransport.Config{URL: url}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.SubjectPrefix = prefix
			tr, err := natstransport.New(tt.cfg)
			if err == nil {
				_ = tr.Close()
				t.Fatal("connected")
			}
			if !strings.Contains(strings.ToLower(err.Error()), "authorization violation") || strings.Contains(err.Error(), "wrong-pw") {
				t.Errorf("err = %v, want an authorization violation, without the password", err)
			}
		})
	}
}

// Over TLS with a client certificate the gateway connects; with a CA that
// did not sign the server's certificate, or without a client certificate,
// New fails at once.
func TestTLS(t *testing.T) {
	pki := tlstest.New(t)
	other := tlstest.New(t)
	url := "nats://" + startAuthServer(t, pki)
	gateway := natsauth.Config{User: "gateway", Password: passwords["gateway"]}
	with := func(ca, cert, key string) natstransport.Config {
		auth := gateway
		auth.TLSCA, auth.TLSCert, auth.TLSKey = ca, cert, key
		return natstransport.Config{URL: url, SubjectPrefix: prefix, Auth: auth}
	}

	tr := newTransport(t, with(pki.CA, pki.ClientCert, pki.ClientKey))
	// Connected: NATS itself says that no worker is there.
	_, err := tr.ServerReady(bounded(t), &pb.ServerReadyRequest{})
	if !strings.Contains(status.Convert(err).Message(), "no responders") || status.Code(err) != codes.Unavailable {
		t.Errorf("ServerReady = %v, want no responders from a connected client", err)
	}
	if transport.ErrorKind(err) != transport.KindNoResponders {
		t.Errorf("kind %q", transport.ErrorKind(err))
	}

	for _, tt := range []struct {
		name string
		cfg  natstransport.Config
		want string
	}{
		{"wrong CA", with(other.CA, pki.ClientCert, pki.ClientKey), "certificate signed by unknown authority"},
		{"no client certificate", with(pki.CA, "", ""), "tls"},
		// nats.go upgrades to the TLS the server asks for, with the
		// system's roots, which do not know the test CA.
		{"no TLS settings", natstransport.Config{URL: url, SubjectPrefix: prefix, Auth: gateway}, "tls error"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := natstransport.New(tt.cfg)
			if err == nil {
				_ = tr.Close()
				t.Fatal("connected")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one about %q", err, tt.want)
			}
		})
	}
}

// A credentials file that is not there is named at once.
func TestCredentialsFileMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gateway.creds")
	_, err := natstransport.New(natstransport.Config{URL: "nats://127.0.0.1:1", SubjectPrefix: prefix, Auth: natsauth.Config{CredsFile: missing}})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("err = %v, want one naming %s", err, missing)
	}
}
