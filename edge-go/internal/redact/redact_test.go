package redact

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://h:4222", "nats://h:4222"},
		{"nats://user:pass@h:4222", "nats://user:xxxxx@h:4222"},
		{"nats://user:pass@h:4222,nats://h2", "nats://user:xxxxx@h:4222,nats://h2"},
		{"nats://a:p1@h1,nats://b:p2@h2:4223", "nats://a:xxxxx@h1,nats://b:xxxxx@h2:4223"},
		{"nats://s3cret-token@h", "nats://xxxxx@h"},
		{"user:pass@h:4222", "user:xxxxx@h:4222"},
		{"nats://user:p@ss:w@rd@h:4222", "nats://user:xxxxx@h:4222"},
		{"https://u:p@h/path@x?q=a@b", "https://u:xxxxx@h/path@x?q=a@b"},
		{"nats://user:pa%40ss@h", "nats://user:xxxxx@h"},
		{"nats://user:@h", "nats://user:xxxxx@h"},
		{"nats://u:p@[::1]:4222", "nats://u:xxxxx@[::1]:4222"},
		{"nats://u:p@h\x7f:bad", "nats://u:xxxxx@h\x7f:bad"}, // does not parse; still redacted
		{"", ""},
	}
	for _, tt := range tests {
		if got := URL(tt.in); got != tt.want {
			t.Errorf("URL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSecret(t *testing.T) {
	const value = "hunter2"
	s := Secret(value)
	if s.Reveal() != value || !s.IsSet() || Secret("").IsSet() {
		t.Fatal("Reveal/IsSet")
	}

	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("connect", "password", s, "url", URLs("nats://u:"+value+"@h"),
		Attr("api_key", value), Attr("unset", ""))
	log = slog.New(slog.NewTextHandler(&buf, nil))
	log.Info("connect", "password", s, slog.Group("g", "p", s))

	out := buf.String() +
		fmt.Sprint(s) + fmt.Sprintf("%v %s %q %#v %+v", s, s, s, s, struct{ P Secret }{s}) +
		fmt.Sprint(URLs("nats://u:"+value+"@h"))
	js, err := json.Marshal(struct{ P Secret }{s})
	if err != nil {
		t.Fatal(err)
	}
	out += string(js)

	if strings.Contains(out, value) {
		t.Errorf("the secret shows:\n%s", out)
	}
	for _, want := range []string{`"password":"[redacted]"`, `"url":"nats://u:xxxxx@h"`, `"api_key":"[redacted]"`, `"unset":""`, `password=[redacted]`, `g.p=[redacted]`, `{"P":"[redacted]"}`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
}
