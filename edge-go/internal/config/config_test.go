package config

import (
	"errors"
	"flag"
	"fmt"
	"github.com/tandem-ml/tandem/edge-go/internal/testkit"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

var env = testkit.Env

func TestLoad(t *testing.T) {
	defaults := Config{
		HTTPAddr:          "127.0.0.1:8000",
		GRPCAddr:          "127.0.0.1:8001",
		AdminAddr:         "127.0.0.1:9000",
		Transport:         "grpc",
		InferenceAddr:     "127.0.0.1:50051",
		NATSSubjectPrefix: "oip.v2",
		NATSListen:        "127.0.0.1:4222",
		NATSMonitorAddr:   "127.0.0.1:8222",
		Timeout:           10 * time.Second,
		MaxBodyBytes:      8 << 20,
		MaxMessageBytes:   16 << 20,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ShutdownTimeout:   20 * time.Second,
		LogLevel:          slog.LevelInfo,
		DrainDelay:        3 * time.Second,
		MaxInFlight:       1024,
		MaxConnections:    1024,
		MaxHeaderBytes:    64 << 10,

		GRPCMaxConcurrentStreams: 256,
		DemoPage:                 true,
		DemoTraceURL:             "http://localhost:16686/trace/{trace_id}",
	}
	with := func(change func(*Config)) Config {
		c := defaults
		change(&c)
		return c
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want Config
	}{
		{"defaults", nil, nil, defaults},
		{"flags", []string{"--http-addr", "127.0.0.1:9999", "--inference-addr=svc:1", "--timeout", "2s", "--max-body-bytes", "1024", "--log-level", "debug"}, nil,
			with(func(c *Config) {
				c.HTTPAddr, c.InferenceAddr, c.Timeout, c.MaxBodyBytes, c.LogLevel = "127.0.0.1:9999", "svc:1", 2*time.Second, 1024, slog.LevelDebug
			})},
		{"environment", nil, map[string]string{"TANDEM_INFERENCE_ADDR": "env:2", "TANDEM_SHUTDOWN_TIMEOUT": "3s", "TANDEM_LOG_LEVEL": "WARN", "TANDEM_MAX_MESSAGE_BYTES": "100"},
			with(func(c *Config) {
				c.InferenceAddr, c.ShutdownTimeout, c.LogLevel, c.MaxMessageBytes = "env:2", 3*time.Second, slog.LevelWarn, 100
			})},
		{"admin listener disabled by its variable", nil, map[string]string{"TANDEM_ADMIN_ADDR": ""},
			with(func(c *Config) { c.AdminAddr = "" })},
		{"flag wins over environment", []string{"--inference-addr", "flag:1"}, map[string]string{"TANDEM_INFERENCE_ADDR": "env:2", "TANDEM_TIMEOUT": "1s"},
			with(func(c *Config) { c.InferenceAddr, c.Timeout = "flag:1", time.Second })},
		{"nats", []string{"--transport", "nats", "--nats-url", "nats://a:4222,nats://b:4222", "--grpc-addr", "", "--inference-addr", ""},
			map[string]string{"TANDEM_NATS_SUBJECT_PREFIX": "tenant.oip"},
			with(func(c *Config) {
				c.Transport, c.NATSURL, c.GRPCAddr, c.InferenceAddr = "nats", "nats://a:4222,nats://b:4222", "", ""
				c.NATSSubjectPrefix = "tenant.oip"
			})},
		{"embedded nats", []string{"--transport=nats", "--nats-listen", "127.0.0.1:0", "--nats-monitor-addr", ""}, nil,
			with(func(c *Config) { c.Transport, c.NATSListen, c.NATSMonitorAddr = "nats", "127.0.0.1:0", "" })},
		{"write timeout follows a longer timeout", []string{"--timeout", "30s"}, nil,
			with(func(c *Config) { c.Timeout, c.WriteTimeout = 30*time.Second, 50*time.Second })},
		{"but not a shorter one", []string{"--timeout", "2s"}, nil,
			with(func(c *Config) { c.Timeout = 2 * time.Second })},
		{"edge security", []string{"--api-keys", "k1, k2", "--rate-limit", "50", "--rate-burst", "5", "--pprof", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-client-ca", "ca.pem"},
			map[string]string{"TANDEM_API_KEYS_FILE": "/keys", "TANDEM_MAX_IN_FLIGHT": "0", "TANDEM_DRAIN_DELAY": "0s"},
			with(func(c *Config) {
				c.APIKeys, c.APIKeysFile, c.RateLimit, c.RateBurst, c.PProf = "k1, k2", "/keys", 50, 5, true
				c.TLSCert, c.TLSKey, c.TLSClientCA, c.MaxInFlight, c.DrainDelay = "c.pem", "k.pem", "ca.pem", 0, 0
			})},
		{"demo page off", nil, map[string]string{"TANDEM_DEMO_PAGE": "false", "TANDEM_DEMO_TRACE_URL": "not checked when off"},
			with(func(c *Config) { c.DemoPage, c.DemoTraceURL = false, "not checked when off" })},
		{"demo page without trace links", []string{"--demo-trace-url", ""}, nil,
			with(func(c *Config) { c.DemoTraceURL = "" })},
		{"zero HTTP timeouts mean none", []string{"--write-timeout", "0", "--read-timeout", "0s", "--idle-timeout", "0"}, nil,
			with(func(c *Config) { c.WriteTimeout, c.ReadTimeout, c.IdleTimeout = 0, 0, 0 })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(tt.args, env(tt.env), io.Discard)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got != tt.want {
				t.Errorf("\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad flag value", []string{"--timeout", "soon"}, nil, `invalid value "soon" for flag -timeout`},
		{"bad env value", nil, map[string]string{"TANDEM_TIMEOUT": "soon"}, `TANDEM_TIMEOUT="soon": parse error`},
		{"unknown flag", []string{"--colour"}, nil, "flag provided but not defined: -colour"},
		{"stray argument", []string{"serve"}, nil, `unexpected arguments: ["serve"]`},
		{"unknown transport", []string{"--transport", "carrier-pigeon"}, nil, `--transport "carrier-pigeon": expected one of grpc, nats`},
		{"wildcard prefix", []string{"--transport", "nats", "--nats-subject-prefix", "oip.>"}, nil, `--nats-subject-prefix: subject prefix "oip.>": ">" is not a valid subject token`},
		{"no embedded listener", []string{"--transport", "nats", "--nats-listen", ""}, nil, "--nats-listen is empty"},
		{"zero timeout", []string{"--timeout", "0"}, nil, "--timeout 0s: must be positive"},
		{"zero body limit", nil, map[string]string{"TANDEM_MAX_BODY_BYTES": "0"}, "--max-body-bytes 0: must be positive"},
		{"negative message limit", []string{"--max-message-bytes", "-1"}, nil, "--max-message-bytes -1: must be positive"},
		{"negative idle timeout", []string{"--idle-timeout", "-1s"}, nil, "--idle-timeout -1s: must not be negative"},
		{"write timeout below timeout", []string{"--timeout", "40s", "--write-timeout", "30s"}, nil, "--write-timeout 30s: must exceed --timeout 40s, or be 0"},
		{"bad log level", []string{"--log-level", "loud"}, nil, `invalid value "loud" for flag -log-level`},
		{"empty address", []string{"--inference-addr", ""}, nil, "--inference-addr is empty"},
		{"cert without key", []string{"--tls-cert", "c.pem"}, nil, "--tls-cert and --tls-key go together"},
		{"client CA without TLS", []string{"--tls-client-ca", "ca.pem"}, nil, "--tls-client-ca needs --tls-cert"},
		{"negative rate", []string{"--rate-limit", "-1"}, nil, "--rate-limit -1: must not be negative"},
		{"negative drain delay", []string{"--drain-delay", "-1s"}, nil, "--drain-delay -1s: must not be negative"},
		{"trace URL without the id", []string{"--demo-trace-url", "http://jaeger:16686/search"}, nil, `--demo-trace-url: "http://jaeger:16686/search" has no {trace_id}`},
		{"trace URL not absolute", nil, map[string]string{"TANDEM_DEMO_TRACE_URL": "/trace/{trace_id}"}, `--demo-trace-url: "/trace/{trace_id}" is not an absolute http or https URL`},
		{"zero streams", []string{"--grpc-max-concurrent-streams", "0"}, nil, "--grpc-max-concurrent-streams 0: must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.args, env(tt.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestHelpNamesEveryEnvironmentVariable(t *testing.T) {
	var out strings.Builder
	_, err := Load([]string{"-h"}, env(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("error = %v, want flag.ErrHelp", err)
	}
	for _, name := range []string{"TANDEM_HTTP_ADDR", "TANDEM_TRANSPORT", "TANDEM_INFERENCE_ADDR", "TANDEM_TIMEOUT",
		"TANDEM_MAX_BODY_BYTES", "TANDEM_MAX_MESSAGE_BYTES", "TANDEM_READ_HEADER_TIMEOUT", "TANDEM_READ_TIMEOUT",
		"TANDEM_WRITE_TIMEOUT", "TANDEM_IDLE_TIMEOUT", "TANDEM_SHUTDOWN_TIMEOUT", "TANDEM_LOG_LEVEL",
		"TANDEM_GRPC_ADDR", "TANDEM_NATS_URL", "TANDEM_NATS_SUBJECT_PREFIX", "TANDEM_NATS_LISTEN", "TANDEM_NATS_MONITOR_ADDR",
		"TANDEM_PPROF", "TANDEM_API_KEYS", "TANDEM_API_KEYS_FILE", "TANDEM_RATE_LIMIT",
		"TANDEM_RATE_BURST", "TANDEM_MAX_IN_FLIGHT", "TANDEM_DRAIN_DELAY", "TANDEM_TLS_CERT", "TANDEM_TLS_KEY", "TANDEM_TLS_CLIENT_CA",
		"TANDEM_MAX_CONNECTIONS", "TANDEM_MAX_HEADER_BYTES", "TANDEM_GRPC_MAX_CONCURRENT_STREAMS",
		"TANDEM_INFERENCE_TLS_CA", "TANDEM_INFERENCE_TLS_CERT", "TANDEM_INFERENCE_TLS_KEY", "TANDEM_INFERENCE_TLS_SERVER_NAME",
		"TANDEM_NATS_USER", "TANDEM_NATS_PASSWORD", "TANDEM_NATS_CREDS", "TANDEM_NATS_NKEY",
		"TANDEM_NATS_TLS_CA", "TANDEM_NATS_TLS_CERT", "TANDEM_NATS_TLS_KEY", "TANDEM_NATS_SERVER_CONFIG"} {
		if !strings.Contains(out.String(), "(env "+name+")") {
			t.Errorf("usage does not mention %s:\n%s", name, out.String())
		}
	}
}

// An API key given by flag or environment never shows in --help, nor in
// the settings as they are printed.
func TestAPIKeysStaySecret(t *testing.T) {
	var out strings.Builder
	_, _ = Load([]string{"-h"}, env(map[string]string{"TANDEM_API_KEYS": "s3cret-key"}), &out)
	if strings.Contains(out.String(), "s3cret-key") {
		t.Errorf("--help shows the key:\n%s", out.String())
	}
	c, err := Load([]string{"--api-keys", "s3cret-key,other", "--nats-password", "s3cret-pw"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprintf("%v %+v", c, c); strings.Contains(s, "s3cret") {
		t.Errorf("the settings print the key: %s", s)
	}
	if got := c.APIKeyList(); len(got) != 2 || got[0] != "s3cret-key" {
		t.Errorf("APIKeyList = %q", got)
	}
}
