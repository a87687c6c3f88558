package main

import (
	"net/http"
	"strings"
	"testing"
)

// The demo page is at / by default and gone with --demo-page=false, and the
// API behind it answers as before either way.
func TestDemoPageFlag(t *testing.T) {
	backend := echoBackend(t).Addr
	for _, tt := range []struct {
		args       []string
		status     int
		bodyPrefix string
	}{
		{nil, http.StatusOK, "<!doctype html>"},
		{[]string{"--demo-page=false"}, http.StatusNotFound, `{"error":`},
	} {
		gw := startServe(t, append([]string{"--inference-addr", backend}, tt.args...)...)
		rest := "http://" + gw.httpAddr
		status, body := get(t, rest+"/")
		if status != tt.status || !strings.HasPrefix(body, tt.bodyPrefix) {
			t.Errorf("%v: GET / %d %.40q, want %d %q", tt.args, status, body, tt.status, tt.bodyPrefix)
		}
		if status := post(t, http.DefaultClient, rest+"/v2/models/m/infer"); status != 200 {
			t.Errorf("%v: infer %d, want 200", tt.args, status)
		}
		gw.shutdown()
		if err := <-gw.served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
}
