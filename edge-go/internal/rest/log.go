package rest

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/tandem-ml/tandem/edge-go/internal/metrics"
)

// logRequests counts every request in m and logs one line per request once
// it is answered: at debug when it succeeded and at info when it failed, so
// that the default level shows every failure without paying for a line per
// success under load. The line is logged with the request's context, so it
// carries the trace.
func logRequests(log *slog.Logger, m *metrics.Metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		m.Begin()
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		elapsed := time.Since(start)
		// The mux filled the path values in on this same request.
		model := r.PathValue("model")
		m.End(r.Context(), model, metrics.HTTPCode(rec.status), elapsed)

		level := slog.LevelDebug
		if rec.status >= http.StatusBadRequest {
			level = slog.LevelInfo
		}
		ctx := r.Context()
		if !log.Enabled(ctx, level) {
			return
		}
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", rec.status),
			// Milliseconds read at a glance; slog's Duration writes nanoseconds.
			slog.Float64("duration_ms", float64(elapsed)/float64(time.Millisecond)),
		}
		if model != "" {
			attrs = append(attrs, slog.String("model", model))
		}
		if rec.errMsg != "" {
			attrs = append(attrs, slog.String("error", rec.errMsg))
		}
		log.LogAttrs(ctx, level, "request", attrs...)
	})
}

// recorder remembers what the log line needs of a response.
type recorder struct {
	http.ResponseWriter
	status int
	errMsg string
}

func (r *recorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// noteStatus records an error answer for the log line, including one that is
// never written (a client that left).
func noteStatus(w http.ResponseWriter, status int, msg string) {
	if rec, ok := w.(*recorder); ok {
		rec.status, rec.errMsg = status, msg
	}
}
