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
	c, err := Load([]string{"--transport", "nats", "--nats-user", "gateway"},
		env(map[string]string{"TANDEM_NATS_PASSWORD": "env-pw", "TANDEM_NATS_SERVER_CONFIG": "nats.conf"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.NATSUser != "gateway" || c.NATSPassword.Reveal() != "env-pw" || c.NATSServerConfig != "nats.conf" {
		t.Errorf("user %q, password %q, server config %q", c.NATSUser, c.NATSPassword.Reveal(), c.NATSServerConfig)
	}
	if printed := fmt.Sprintf("%v %+v %#v", c, c, c); strings.Contains(printed, "env-pw") {
		t.Errorf("the password is printed: %s", printed)
	}
}

// --help names the variable of the password, never its value.
func TestNATSPasswordHidden(t *testing.T) {
	var out strings.Builder
	_, err := Load([]string{"-h"}, env(map[string]string{"TANDEM_NATS_PASSWORD": "env-pw"}), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("error = %v, want flag.ErrHelp", err)
	}
	if strings.Contains(out.String(), "env-pw") {
		t.Error("--help shows the password")
	}
	if !strings.Contains(out.String(), "(env TANDEM_NATS_SERVER_CONFIG)") {
		t.Error("usage does not mention TANDEM_NATS_SERVER_CONFIG")
	}
}

func TestHopInvalid(t *testing.T) {
	_, err := Load([]string{"--transport", "nats", "--nats-url", "nats://n:4222", "--nats-server-config", "nats.conf"}, env(nil), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--nats-server-config configures the embedded nats-server") {
		t.Errorf("err = %v", err)
	}
}
