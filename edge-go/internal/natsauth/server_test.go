package natsauth

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

func TestWriteServerConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "nats.conf")
	if err := WriteServerConfig(file, prefix, passwords); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("mode %v, want 0600", perm)
	}
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !RequiresAuth(opts) {
		t.Error("the stack config does not require auth")
	}
	if err := WriteServerConfig(file, prefix, nil); err == nil {
		t.Error("no passwords: no error")
	}
}

func TestRequiresAuth(t *testing.T) {
	load := func(conf string) *server.Options {
		t.Helper()
		file := filepath.Join(t.TempDir(), "nats.conf")
		if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		opts, err := server.ProcessConfigFile(file)
		if err != nil {
			t.Fatalf("%v\n%s", err, conf)
		}
		return opts
	}
	tests := []struct {
		name string
		conf string
		want bool
	}{
		{"nothing", "port: 4222\n", false},
		{"user", "authorization { user: a, password: b }\n", true},
		{"token", "authorization { token: s3cret }\n", true},
		{"users", "authorization { users = [ {user: a, password: b} ] }\n", true},
		{"nkey", "authorization { users = [ {nkey: UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4} ] }\n", true},
		{"account users", "accounts { A { users = [ {user: a, password: b} ] } }\n", true},
		{"no_auth_user", "authorization { users = [ {user: a, password: b} ] }\nno_auth_user: a\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RequiresAuth(load(tt.conf)); got != tt.want {
				t.Errorf("RequiresAuth = %v, want %v", got, tt.want)
			}
		})
	}
	if RequiresAuth(nil) {
		t.Error("RequiresAuth(nil)")
	}
}
