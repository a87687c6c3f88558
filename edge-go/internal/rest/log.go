package rest

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"unicode/utf8"

	"github.com/tandem-ml/tandem/edge-go/internal/auth"
	"github.com/tandem-ml/tandem/edge-go/internal/edge"
	"github.com/tandem-ml/tandem/edge-go/internal/limit"
	"github.com/tandem-ml/tandem/edge-go/internal/metrics"
)

// logRequests counts and logs every request through o, once it is answered.
func logRequests(o edge.Observer, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := o.Begin()
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		o.End(r.Context(), start, edge.Call{
			Msg: "request",
			Attrs: []slog.Attr{
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.Int("status", rec.status),
			},
			Model:  rec.model,
			Code:   metrics.HTTPCode(rec.status),
			Failed: rec.status >= http.StatusBadRequest,
			Err:    rec.errMsg,
		})
	})
}

// recoverPanics answers a request whose handler panicked with 500 "internal
// error" (when nothing was written yet) and logs the panic with its stack:
// one bad request never takes the gateway down. http.ErrAbortHandler is
// net/http's own way to abort a response, and is passed on.
func recoverPanics(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			edge.Panicked(r.Context(), log, r.Method+" "+r.URL.Path, v)
			if rec, ok := w.(*recorder); !ok || !rec.wrote {
				writeJSONError(w, http.StatusInternalServerError, edge.InternalError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// recorder remembers what the log line needs of a response.
type recorder struct {
	http.ResponseWriter
	status int
	errMsg string
	model  string // the route's, once routed
	wrote  bool   // the status line is out
}

func (r *recorder) WriteHeader(status int) {
	r.status, r.wrote = status, true
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// noteModel records the model a routed request named, for the log line.
func noteModel(w http.ResponseWriter, model string) {
	if rec, ok := w.(*recorder); ok {
		rec.model = model
	}
}

// noteStatus records an error answer for the log line, including one that is
// never written (a client that left).
func noteStatus(w http.ResponseWriter, status int, msg string) {
	if rec, ok := w.(*recorder); ok {
		rec.status, rec.errMsg = status, msg
	}
}

// checkURL refuses a URL whose path is not UTF-8 (%ff in a model name):
// no model can be named so, and the name would reach logs and labels.
func checkURL(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !utf8.ValidString(r.URL.Path) {
			writeJSONError(w, http.StatusBadRequest, fmt.Sprintf("the URL path %q is not valid UTF-8", r.URL.Path))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// rateLimit refuses, with 429 and Retry-After, a client over its rate:
// per API key when the request carries one (auth.KeyID), else per client
// IP. Health checks are never limited.
func rateLimit(rl *limit.Rate, m *metrics.Metrics, next http.Handler) http.Handler {
	if !rl.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if auth.OpenHealth(r) {
			next.ServeHTTP(w, r)
			return
		}
		client, ok := auth.KeyID(r.Context())
		if !ok {
			client, _, _ = net.SplitHostPort(r.RemoteAddr)
		}
		if err := rl.Err(client); err != nil {
			m.Refused(auth.ModelFromPath(r.URL.Path), limit.ReasonRateLimited)
			writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}
