package main

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tandem-ml/tandem/edge-go/internal/config"
	"github.com/tandem-ml/tandem/edge-go/internal/natsauth"
	"github.com/tandem-ml/tandem/edge-go/internal/natsserver"
	"github.com/tandem-ml/tandem/edge-go/internal/natstest"
	"github.com/tandem-ml/tandem/edge-go/internal/oiptest"
	"github.com/tandem-ml/tandem/edge-go/internal/telemetry"
	"github.com/tandem-ml/tandem/edge-go/internal/testkit"
	"github.com/tandem-ml/tandem/edge-go/internal/tlsconf"
	"github.com/tandem-ml/tandem/edge-go/internal/tlsconf/tlstest"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/natstransport"
	"github.com/tandem-ml/tandem/edge-go/internal/transport/transporttest"
)

var stackPasswords = map[string]string{"gateway": "gw-pw", "worker": "wk-pw", "observer": "ob-pw"}

// stackConfig writes the stack's nats-server config (its three users).
func stackConfig(t *testing.T) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "nats.conf")
	if err := natsauth.WriteServerConfig(file, "oip.v2", stackPasswords); err != nil {
		t.Fatal(err)
	}
	return file
}

// buildTransport is newTransport with args for settings and env for the
// environment, logging into the returned buffer.
func buildTransport(t *testing.T, env map[string]string, args ...string) (*syncBuffer, error) {
	t.Helper()
	cfg, err := config.Load(args, testkit.Env(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	tel, err := telemetry.Setup(t.Context(), telemetry.Config{LookupEnv: testkit.Env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := newTransport(slog.New(slog.NewTextHandler(&logs, nil)), cfg, tel)
	if err == nil {
		_ = tr.Close()
	}
	return &logs, err
}

// syncBuffer is a log that the client's goroutines may write while the test
// reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// With --nats-server-config the embedded server holds the stack's users:
// the gateway logs in as gateway, a worker as worker, and the gateway gets
// ready through it.
func TestEmbeddedNATSWithAuth(t *testing.T) {
	natsPort := freePort(t)
	conf := stackConfig(t)
	gw := startServe(t, "--transport", "nats", "--nats-listen", "127.0.0.1:"+strconv.Itoa(natsPort),
		"--nats-monitor-addr", "", "--nats-server-config", conf, "--nats-user", "gateway", "--nats-password", stackPasswords["gateway"])
	testkit.Eventually(t, "the gateway to serve", func() bool {
		status, _ := get(t, "http://"+gw.httpAddr+"/v2/health/live")
		return status == http.StatusOK
	})
	natstest.StartWorker(t, "nats://worker:"+stackPasswords["worker"]+"@127.0.0.1:"+strconv.Itoa(natsPort), "oip.v2", natstest.Echo(t, "oip.v2"))
	testkit.Eventually(t, "the gateway to be ready", func() bool {
		status, _ := get(t, "http://"+gw.httpAddr+"/v2/health/ready")
		return status == http.StatusOK
	})
	gw.shutdown()
	if err := <-gw.served; err != nil {
		t.Errorf("serve: %v", err)
	}
}

// The gateway's credentials are checked at start: wrong ones stop it with an
// error naming the flags, and no password reaches the log.
func TestNATSCredentialsRefused(t *testing.T) {
	conf := stackConfig(t)
	logs, err := buildTransport(t, map[string]string{"TANDEM_NATS_PASSWORD": "wrong-pw"},
		"--transport", "nats", "--nats-listen", "127.0.0.1:0", "--nats-monitor-addr", "", "--nats-server-config", conf, "--nats-user", "gateway")
	if !errors.Is(err, natstransport.ErrRefused) || !strings.Contains(err.Error(), "--nats-password") {
		t.Errorf("err = %v, want a refusal naming the flags", err)
	}
	if strings.Contains(logs.String(), "wrong-pw") || (err != nil && strings.Contains(err.Error(), "wrong-pw")) {
		t.Errorf("the password shows: %v\n%s", err, logs)
	}

	// The same over --nats-url, with the password in it.
	ns, err := natsserver.Start(natsserver.Config{ConfigFile: conf, Listen: "127.0.0.1:0", MaxPayload: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Stop()
	url := "nats://gateway:" + stackPasswords["gateway"] + "@" + ns.Addr().String()
	logs, err = buildTransport(t, nil, "--transport", "nats", "--nats-url", url)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), stackPasswords["gateway"]) || !strings.Contains(logs.String(), "gateway:xxxxx@") {
		t.Errorf("the log does not redact the URL:\n%s", logs)
	}
}

// Beyond loopback the embedded server needs authentication.
func TestEmbeddedNATSOpenListener(t *testing.T) {
	_, err := buildTransport(t, nil, "--transport", "nats", "--nats-listen", "0.0.0.0:0", "--nats-monitor-addr", "")
	if !errors.Is(err, natsserver.ErrOpenListener) || !strings.Contains(err.Error(), "--nats-server-config") || !strings.Contains(err.Error(), "--nats-listen") {
		t.Errorf("err = %v, want ErrOpenListener naming the flags", err)
	}
	_, err = buildTransport(t, map[string]string{"TANDEM_NATS_PASSWORD": stackPasswords["gateway"]},
		"--transport", "nats", "--nats-listen", "0.0.0.0:0", "--nats-monitor-addr", "", "--nats-server-config", stackConfig(t), "--nats-user", "gateway")
	if err != nil {
		t.Errorf("with authorization: %v", err)
	}
}

// --inference-tls-* put the gRPC hop on mutual TLS: the gateway reaches a
// service that requires its client certificate.
func TestInferenceTLS(t *testing.T) {
	pki := tlstest.New(t)
	serverTLS, err := tlsconf.Server(pki.ServerCert, pki.ServerKey, pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	backend := oiptest.Start(t, "127.0.0.1:0", &transporttest.Double{}, grpc.Creds(credentials.NewTLS(serverTLS)))
	gw := startServe(t, "--inference-addr", backend.Addr, "--inference-tls-ca", pki.CA,
		"--inference-tls-cert", pki.ClientCert, "--inference-tls-key", pki.ClientKey, "--inference-tls-server-name", tlstest.ServerName)
	testkit.Eventually(t, "the gateway to be ready over mTLS", func() bool {
		status, _ := get(t, "http://"+gw.httpAddr+"/v2/health/ready")
		return status == http.StatusOK
	})
}
