package main

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/tandem-ml/tandem/edge-go/internal/testkit"
)

// `gateway healthcheck` passes while the gateway is ready and fails once it
// drains, when nothing listens, and on bad settings, saying why.
func TestHealthcheck(t *testing.T) {
	gw := startServe(t, "--inference-addr", echoBackend(t).Addr, "--drain-delay", "10s")
	_, port, err := net.SplitHostPort(gw.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	check := func(args []string, env map[string]string) (int, string) {
		var stderr bytes.Buffer
		code := healthcheck(args, testkit.Env(env), &stderr)
		return code, stderr.String()
	}
	// As in a container: the address from the environment, every interface.
	if code, out := check(nil, map[string]string{"TANDEM_HTTP_ADDR": ":" + port}); code != 0 {
		t.Fatalf("ready gateway: exit %d, %s", code, out)
	}
	if code, out := check([]string{"--http-addr", "127.0.0.1:" + port}, nil); code != 0 {
		t.Fatalf("ready gateway by flag: exit %d, %s", code, out)
	}

	gw.shutdown() // draining: readiness 503 for the drain delay
	testkit.Eventually(t, "the check to fail while draining", func() bool {
		code, out := check([]string{"--http-addr", "127.0.0.1:" + port}, nil)
		return code == 1 && strings.Contains(out, "503 Service Unavailable")
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	_ = ln.Close()
	if code, out := check([]string{"--http-addr", closed}, nil); code != 1 || !strings.Contains(out, "connection refused") {
		t.Errorf("nothing listening: exit %d, %s", code, out)
	}
	if code, out := check([]string{"--timeout", "soon"}, nil); code != 2 || !strings.Contains(out, `invalid value "soon"`) {
		t.Errorf("bad settings: exit %d, %s", code, out)
	}
}
