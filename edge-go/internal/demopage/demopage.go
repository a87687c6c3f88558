// Package demopage serves the demo page at /: draw a digit, see what
// digits (ONNX Runtime) and digits-torch (PyTorch) make of it side by side,
// rank sentences by their similarity to a query with minilm's embeddings,
// and for each request which hop served it, its Server-Timing as a bar, and
// a link to its trace. The page is plain HTML, JS and CSS embedded in the binary, with
// no build step and nothing loaded from elsewhere; it calls the gateway's
// own OIP REST API like any client, so it shows what a client sees.
package demopage

import (
	"embed"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

//go:embed index.html app.js style.css
var files embed.FS

// TraceIDPlaceholder is what a trace URL template has where the trace's id
// goes.
const TraceIDPlaceholder = "{trace_id}"

// DefaultTraceURL is Jaeger's UI as compose.yaml publishes it.
const DefaultTraceURL = "http://localhost:16686/trace/" + TraceIDPlaceholder

// Prefix is where the page's scripts, style and settings are served; / is
// the page itself, and every other path is the API's.
const Prefix = "/demo/"

// contentSecurityPolicy lets the page load its own script and style and
// call its own origin, and nothing else: no inline script, no CDN, no
// framing by another site.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Config is what the page shows besides the models' answers.
type Config struct {
	// Transport is the gateway's hop to Python (--transport): every
	// request this gateway answers went over it.
	Transport string
	// TraceURL is a URL template with TraceIDPlaceholder (--demo-trace-url);
	// empty: no link.
	TraceURL string
}

// settings is what the page reads from Prefix+"settings.json".
type settings struct {
	Transport string `json:"transport"`
	TraceURL  string `json:"trace_url"`
}

// CheckTraceURL reports what is wrong with a trace URL template: it must be
// an absolute http(s) URL with TraceIDPlaceholder in it, or empty.
func CheckTraceURL(template string) error {
	if template == "" {
		return nil
	}
	if !strings.Contains(template, TraceIDPlaceholder) {
		return fmt.Errorf("%q has no %s where the trace's id goes", template, TraceIDPlaceholder)
	}
	u, err := url.Parse(strings.ReplaceAll(template, TraceIDPlaceholder, "0"))
	if err != nil {
		return fmt.Errorf("%q: %w", template, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http or https URL", template)
	}
	return nil
}

// New returns a handler that serves the page at / and its files under
// Prefix, and hands every other request to api.
func New(cfg Config, api http.Handler) (http.Handler, error) {
	if err := CheckTraceURL(cfg.TraceURL); err != nil {
		return nil, fmt.Errorf("demo page trace URL: %w", err)
	}
	body, err := json.Marshal(settings(cfg))
	if err != nil {
		return nil, fmt.Errorf("demo page settings: %w", err)
	}
	static := http.FileServerFS(files)
	mux := http.NewServeMux()
	// {$}: / alone, so that a mistyped API path still gets the API's 404.
	mux.Handle("GET /{$}", page(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, files, "index.html")
	}))
	mux.Handle("GET "+Prefix+"settings.json", page(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
	}))
	for _, name := range []string{"app.js", "style.css"} {
		mux.Handle("GET "+Prefix+name, page(http.StripPrefix(strings.TrimSuffix(Prefix, "/"), static).ServeHTTP))
	}
	mux.Handle("/", api)
	return mux, nil
}

// page adds the headers every response of the page's carries.
func page(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", contentSecurityPolicy)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		h(w, r)
	})
}
