package natsserver

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
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
		{Config{Listen: ":0", MaxPayload: 1}, "refusing to listen on :0 beyond loopback without authorization"},
		{Config{Listen: "127.0.0.1:0", MaxPayload: 1, ConfigFile: "/nonexistent.conf"}, "nats server config"},
	}
	for _, tt := range tests {
		if _, err := Start(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Start(%+v) = %v, want an error containing %q", tt.cfg, err, tt.want)
		}
	}
}

// Beyond loopback the server listens only with authorization from its
// config file, and then refuses an anonymous client.
func TestConfigFileWithAuth(t *testing.T) {
	file := filepath.Join(t.TempDir(), "nats.conf")
	conf := "authorization {\n  users = [ { user: gateway, password: s3cret } ]\n}\n"
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(t.TempDir(), "open.conf")
	if err := os.WriteFile(open, []byte(conf+"no_auth_user: gateway\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ns, err := Start(Config{Listen: "0.0.0.0:0", MaxPayload: 4096, ConfigFile: open}); err == nil {
		ns.Stop()
		t.Error("listening beyond loopback with no_auth_user, which lets anyone in")
	}
	ns, err := Start(Config{Listen: "0.0.0.0:0", MaxPayload: 4096, ConfigFile: file})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Stop()
	url := fmt.Sprintf("nats://127.0.0.1:%d", ns.Addr().(*net.TCPAddr).Port)
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Error("an anonymous client was let in")
	}
	nc, err := nats.Connect(url, nats.UserInfo("gateway", "s3cret"))
	if err != nil {
		t.Fatalf("the configured user: %v", err)
	}
	nc.Close()
}
