package auth

import (
	"encoding/json"
	"net/http"
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
		e, _ := err.(*Error)
		if cfg.Refused != nil {
			cfg.Refused(r, model, e.Outcome)
		}
		writeRefusal(w, e)
	})
}

func writeRefusal(w http.ResponseWriter, e *Error) {
	status := http.StatusUnauthorized
	switch {
	case e.Outcome == Forbidden:
		status = http.StatusForbidden
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope"`)
	case e.InvalidToken:
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	default:
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	body, _ := json.Marshal(map[string]string{"error": e.msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
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
