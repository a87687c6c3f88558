package auth

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// HTTPConfig says how the REST middleware sees a request.
type HTTPConfig struct {
	// ModelOf names the model a request is for ("" for none); nil uses
	// ModelFromPath.
	ModelOf func(*http.Request) string
	// Open reports requests that need no key; nil uses OpenHealth.
	Open func(*http.Request) bool
	// Refused, when set, is told of every refusal, for example to count
	// tandem_gateway_refused_total{model, reason=o.String()}.
	Refused func(r *http.Request, model string, o Outcome)
	// WriteError, when set, writes the refusal's status and body (the
	// gateway's own error writer, so refusals are logged and shaped as
	// every other error: err is a gRPC status error that oiperr maps to 401
	// or 403). The WWW-Authenticate header is set before it is called. nil:
	// the middleware writes {"error": "..."} itself.
	WriteError func(w http.ResponseWriter, r *http.Request, err error)
}

// HTTP wraps next so that only requests with an allowed key reach it, with
// the key's ID in their context (see KeyID). Refusals are answered here:
// 401 with WWW-Authenticate: Bearer (error="invalid_token" for an unknown
// key) or 403, each with a JSON body {"error": "..."} as the OIP REST API
// answers errors. With auth disabled it returns next itself.
func (k *Keys) HTTP(next http.Handler, cfg HTTPConfig) http.Handler {
	if !k.Enabled() {
		return next
	}
	modelOf, open := cfg.ModelOf, cfg.Open
	if modelOf == nil {
		modelOf = func(r *http.Request) string { return ModelFromPath(r.URL.Path) }
	}
	if open == nil {
		open = OpenHealth
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if open(r) {
			next.ServeHTTP(w, r)
			return
		}
		model := modelOf(r)
		id, err := k.Check(r.Header.Get("Authorization"), model)
		if err == nil {
			next.ServeHTTP(w, r.WithContext(WithKeyID(r.Context(), id)))
			return
		}
		e := err.(*Error) // Check's only error type
		if cfg.Refused != nil {
			cfg.Refused(r, model, e.Outcome)
		}
		w.Header().Set("WWW-Authenticate", challenge(e))
		if cfg.WriteError != nil {
			cfg.WriteError(w, r, e)
			return
		}
		writeRefusal(w, e)
	})
}

// challenge is the WWW-Authenticate value for a refusal (RFC 6750 3).
func challenge(e *Error) string {
	switch {
	case e.Outcome == Forbidden:
		return `Bearer error="insufficient_scope"`
	case e.InvalidToken:
		return `Bearer error="invalid_token"`
	}
	return "Bearer"
}

// writeRefusal writes the OIP REST error body, {"error": "..."}.
func writeRefusal(w http.ResponseWriter, e *Error) {
	status := http.StatusUnauthorized
	if e.Outcome == Forbidden {
		status = http.StatusForbidden
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // keep quoted model names legible
	_ = enc.Encode(struct {
		Error string `json:"error"`
	}{e.msg}) // a struct of one string always encodes
	body := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body) // a failed write means the client left
}

// OpenHealth reports the REST health checks, /v2/health/live and
// /v2/health/ready, which load balancers and kubelets call without keys.
func OpenHealth(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/v2/health/")
}

// ModelFromPath returns the model an OIP REST path is about:
// /v2/models/NAME[/versions/V][/infer|/ready]. Other paths are about no
// model: "".
func ModelFromPath(path string) string {
	rest, ok := strings.CutPrefix(path, "/v2/models/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}
