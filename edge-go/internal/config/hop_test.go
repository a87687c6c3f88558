package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestHop(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want Hop
	}{
		{"none", nil, nil, Hop{}},
		{"nats user and password", []string{"--nats-user", "gateway", "--nats-password", "pw"}, nil,
			Hop{NATSUser: "gateway", NATSPassword: "pw"}},
		{"password from the environment", []string{"--nats-user", "gateway"}, map[string]string{"TANDEM_NATS_PASSWORD": "env-pw"},
			Hop{NATSUser: "gateway", NATSPassword: "env-pw"}},
		{"nats files", []string{"--nats-creds", "g.creds", "--nats-nkey", "g.nk", "--nats-tls-ca", "ca.pem", "--nats-tls-cert", "c.pem", "--nats-tls-key", "k.pem"}, nil,
			Hop{NATSCreds: "g.creds", NATSNKey: "g.nk", NATSTLSCA: "ca.pem", NATSTLSCert: "c.pem", NATSTLSKey: "k.pem"}},
		{"embedded server config", nil, map[string]string{"TANDEM_NATS_SERVER_CONFIG": "nats.conf"}, Hop{NATSServerConfig: "nats.conf"}},
		{"inference tls", []string{"--inference-tls-ca", "ca.pem", "--inference-tls-cert", "c.pem", "--inference-tls-key", "k.pem", "--inference-tls-server-name", "svc"}, nil,
			Hop{InferenceTLSCA: "ca.pem", InferenceTLSCert: "c.pem", InferenceTLSKey: "k.pem", InferenceTLSServerName: "svc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(tt.args, env(tt.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if c.Hop != tt.want {
				t.Errorf("Hop = %+v, want %+v", c.Hop, tt.want)
			}
		})
	}
}

// The password shows nowhere: not in --help, not when the settings are
// printed or logged.
func TestNATSPasswordHidden(t *testing.T) {
	var out strings.Builder
	_, err := Load([]string{"-h"}, env(map[string]string{"TANDEM_NATS_PASSWORD": "env-pw"}), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("error = %v, want flag.ErrHelp", err)
	}
	if strings.Contains(out.String(), "env-pw") {
		t.Error("--help shows the password")
	}
	for _, name := range []string{"TANDEM_NATS_USER", "TANDEM_NATS_PASSWORD", "TANDEM_NATS_CREDS", "TANDEM_NATS_NKEY",
		"TANDEM_NATS_TLS_CA", "TANDEM_NATS_TLS_CERT", "TANDEM_NATS_TLS_KEY", "TANDEM_NATS_SERVER_CONFIG",
		"TANDEM_INFERENCE_TLS_CA", "TANDEM_INFERENCE_TLS_CERT", "TANDEM_INFERENCE_TLS_KEY", "TANDEM_INFERENCE_TLS_SERVER_NAME"} {
		if !strings.Contains(out.String(), "(env "+name+")") {
			t.Errorf("usage does not mention %s", name)
		}
	}
	c, err := Load([]string{"--nats-password", "flag-pw"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if printed := fmt.Sprintf("%v %+v %#v", c, c, c); strings.Contains(printed, "flag-pw") {
		t.Errorf("the password is printed: %s", printed)
	}
	if c.NATSPassword.Reveal() != "flag-pw" {
		t.Errorf("password %q", c.NATSPassword.Reveal())
	}
}

func TestHopInvalid(t *testing.T) {
	_, err := Load([]string{"--transport", "nats", "--nats-url", "nats://n:4222", "--nats-server-config", "nats.conf"}, env(nil), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--nats-server-config configures the embedded nats-server") {
		t.Errorf("err = %v", err)
	}
}
