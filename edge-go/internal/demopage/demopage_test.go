package demopage

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// api stands in for the REST handler: it names the path it was given.
var api = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusTeapot)
	_, _ = io.WriteString(w, "api "+r.Method+" "+r.URL.Path)
})

func newPage(t *testing.T, cfg Config) http.Handler {
	t.Helper()
	h, err := New(cfg, api)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func get(t *testing.T, h http.Handler, method, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestServesThePageAndItsFiles(t *testing.T) {
	h := newPage(t, Config{Transport: "nats", TraceURL: DefaultTraceURL})
	for _, tt := range []struct {
		path, contentType, contains string
	}{
		{"/", "text/html; charset=utf-8", `<script src="/demo/app.js" defer></script>`},
		{"/demo/app.js", "text/javascript; charset=utf-8", "function paintPixels("},
		{"/demo/style.css", "text/css; charset=utf-8", "#pad"},
	} {
		t.Run(tt.path, func(t *testing.T) {
			resp := get(t, h, http.MethodGet, tt.path)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got := resp.Header.Get("Content-Type"); got != tt.contentType {
				t.Errorf("Content-Type %q, want %q", got, tt.contentType)
			}
			csp := resp.Header.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
				}
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q", got)
			}
			if b := body(t, resp); !strings.Contains(b, tt.contains) {
				t.Errorf("body lacks %q", tt.contains)
			}
		})
	}
}

// The page is self-contained: nothing in it names another origin, and no
// script or style is inline (the policy would refuse it).
func TestPageLoadsNothingFromElsewhere(t *testing.T) {
	for _, name := range []string{"index.html", "app.js", "style.css"} {
		b, err := files.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for _, banned := range []string{"http://", "https://", "//cdn", "<script>", " style=", "onclick=", "eval("} {
			if strings.Contains(text, banned) {
				t.Errorf("%s contains %q", name, banned)
			}
		}
	}
}

func TestSettings(t *testing.T) {
	h := newPage(t, Config{Transport: "grpc", TraceURL: "https://traces.example/t/{trace_id}?x=1"})
	resp := get(t, h, http.MethodGet, "/demo/settings.json")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var got settings
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := settings{Transport: "grpc", TraceURL: "https://traces.example/t/{trace_id}?x=1"}
	if got != want {
		t.Errorf("settings %+v, want %+v", got, want)
	}
}

// Everything but the page's own paths is the API's, so that the page takes
// nothing from it: its 404s, other methods on /, and files the page does
// not have.
func TestEverythingElseIsTheAPIs(t *testing.T) {
	h := newPage(t, Config{Transport: "nats"})
	for _, tt := range []struct{ method, path string }{
		{http.MethodGet, "/v2"},
		{http.MethodPost, "/v2/models/digits/infer"},
		{http.MethodGet, "/nope"},
		{http.MethodPost, "/"},
		{http.MethodGet, "/demo/"},
		{http.MethodGet, "/demo/index.html"},
		{http.MethodGet, "/demo/demopage.go"},
	} {
		resp := get(t, h, tt.method, tt.path)
		if b := body(t, resp); resp.StatusCode != http.StatusTeapot || b != "api "+tt.method+" "+tt.path {
			t.Errorf("%s %s: %d %q, want the API's", tt.method, tt.path, resp.StatusCode, b)
		}
		if resp.Header.Get("Content-Security-Policy") != "" {
			t.Errorf("%s %s: the page's headers on the API's answer", tt.method, tt.path)
		}
	}
}

func TestCheckTraceURL(t *testing.T) {
	for _, ok := range []string{"", DefaultTraceURL, "https://jaeger.example:443/trace/{trace_id}", "http://tempo/explore?trace={trace_id}"} {
		if err := CheckTraceURL(ok); err != nil {
			t.Errorf("CheckTraceURL(%q): %v", ok, err)
		}
	}
	for _, tt := range []struct{ template, want string }{
		{"http://localhost:16686/search", "has no {trace_id}"},
		{"/trace/{trace_id}", "is not an absolute http or https URL"},
		{"javascript:alert({trace_id})", "is not an absolute http or https URL"},
		{"http://bad host/{trace_id}", "invalid character"},
	} {
		err := CheckTraceURL(tt.template)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CheckTraceURL(%q) = %v, want an error containing %q", tt.template, err, tt.want)
		}
	}
	if _, err := New(Config{TraceURL: "nope"}, api); err == nil {
		t.Error("New accepted a trace URL without {trace_id}")
	}
}
