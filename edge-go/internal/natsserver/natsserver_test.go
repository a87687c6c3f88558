package natsserver

import (
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/tandem-ml/tandem/edge-go/internal/natsauth"
)

func TestSplitAddr(t *testing.T) {
	tests := []struct {
		addr     string
		host     string
		port     int
		wantFail bool
	}{
		{"127.0.0.1:4222", "127.0.0.1", 4222, false},
		{":4222", "0.0.0.0", 4222, false},
		{"127.0.0.1:0", "127.0.0.1", server.RANDOM_PORT, false}, // to nats-server, 0 is 4222
		{"[::1]:4222", "::1", 4222, false},
		{"4222", "", 0, true},
		{"host:port", "", 0, true},
		{"host:70000", "", 0, true},
	}
	for _, tt := range tests {
		host, port, err := splitAddr(tt.addr)
		if (err != nil) != tt.wantFail || host != tt.host || port != tt.port {
			t.Errorf("splitAddr(%q) = %q, %d, %v; want %q, %d, failure %v", tt.addr, host, port, err, tt.host, tt.port, tt.wantFail)
		}
	}
}

// The server takes TCP clients with the configured max_payload, and serves
// its monitoring endpoints.
func TestStart(t *testing.T) {
	ns, err := Start(Config{Listen: "127.0.0.1:0", MonitorAddr: "127.0.0.1:0", MaxPayload: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Stop()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := nc.MaxPayload(); got != 4096 {
		t.Errorf("max payload %d, want 4096", got)
	}
	resp, err := http.Get("http://" + ns.MonitorAddr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
}

func TestStartErrors(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{Listen: "nowhere", MaxPayload: 1}, "nats listen address"},
		{Config{Listen: "127.0.0.1:0", MonitorAddr: "x", MaxPayload: 1}, "nats monitor address"},
		{Config{Listen: "127.0.0.1:0", MaxPayload: 0}, "nats max payload 0"},
		{Config{Listen: "127.0.0.1:0", MaxPayload: MaxPayloadLimit + 1}, "must be between 1 and 8388608"},
		{Config{Listen: taken.Addr().String(), MaxPayload: 1}, "address already in use"},
	}
	for _, tt := range tests {
		if _, err := Start(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Start(%+v) = %v, want an error containing %q", tt.cfg, err, tt.want)
		}
	}
}

// writeConfig writes a nats-server config file into the test's directory.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// A config file's authorization holds, the gateway's settings win over its
// own listen, monitoring and max_payload, and with authorization the server
// may listen beyond loopback.
func TestConfigFile(t *testing.T) {
	auth, err := natsauth.ServerConfig("oip.v2", map[string]string{"gateway": "g", "worker": "w", "observer": "o"})
	if err != nil {
		t.Fatal(err)
	}
	file := writeConfig(t, auth+"listen: 127.0.0.1:1\nhttp: 127.0.0.1:2\nmax_payload: 1MB\n")
	ns, err := Start(Config{ConfigFile: file, Listen: "0.0.0.0:0", MaxPayload: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Stop()
	if ns.MonitorAddr() != nil {
		t.Errorf("monitoring on %v, want none (MonitorAddr is empty)", ns.MonitorAddr())
	}
	url := "nats://127.0.0.1:" + strconv.Itoa(ns.Addr().(*net.TCPAddr).Port)
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Error("an anonymous client connected")
	}
	nc, err := nats.Connect(url, nats.UserInfo("worker", "w"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := nc.MaxPayload(); got != 4096 {
		t.Errorf("max payload %d, want 4096", got)
	}
}

// Without authentication the server listens on loopback only.
func TestOpenListener(t *testing.T) {
	noAuth := writeConfig(t, "max_payload: 2048\n")
	withNoAuthUser := writeConfig(t, `authorization { users = [ { user: a, password: b } ] }
no_auth_user: a
`)
	tests := []struct {
		name string
		cfg  Config
		open bool
	}{
		{"all interfaces", Config{Listen: ":0"}, true},
		{"a name", Config{Listen: "gateway.example:0"}, true},
		{"a config without authorization", Config{Listen: "0.0.0.0:0", ConfigFile: noAuth}, true},
		{"a config that lets anyone in", Config{Listen: "0.0.0.0:0", ConfigFile: withNoAuthUser}, true},
		{"localhost", Config{Listen: "localhost:0"}, false},
		{"IPv6 loopback", Config{Listen: "[::1]:0"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.MaxPayload = 1024
			ns, err := Start(tt.cfg)
			if err == nil {
				ns.Stop()
			}
			if got := errors.Is(err, ErrOpenListener); got != tt.open {
				t.Errorf("Start: %v; want refused %v", err, tt.open)
			}
		})
	}
	if _, err := Start(Config{Listen: "127.0.0.1:0", ConfigFile: writeConfig(t, "authorization {"), MaxPayload: 1}); err == nil ||
		!strings.Contains(err.Error(), "nats server config") {
		t.Errorf("a broken config file: %v", err)
	}
}
