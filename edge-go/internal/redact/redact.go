// Package redact keeps secrets out of logs: URLs with credentials (such as
// --nats-url, which may hold user:pass@ or a token@) and secret flag values
// (--nats-password, API keys).
//
// A value that is a secret should be a Secret from the moment it is read,
// so that no log line, %v or JSON encoding can show it by accident; URL is
// for strings that are mostly not secret and should stay readable.
package redact

import (
	"log/slog"
	"strings"
)

// Mask is what a redacted password or token is replaced by, as net/url's
// URL.Redacted does.
const Mask = "xxxxx"

// URL returns s with the password of each URL replaced by Mask. s may be a
// comma-separated list, as NATS server lists are: nats://user:pass@h:4222,nats://h2
// becomes nats://user:xxxxx@h:4222,nats://h2. A bare userinfo with no
// colon is a NATS token (nats://token@host) and is masked whole. URLs
// without a scheme (user:pass@host:4222) are handled too. It does not need
// s to parse as a URL, so a malformed URL is still redacted.
func URL(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = redactOne(p)
	}
	return strings.Join(parts, ",")
}

func redactOne(u string) string {
	start := 0
	if i := strings.Index(u, "://"); i >= 0 {
		start = i + len("://")
	}
	// The authority ends at the first '/', '?' or '#' after the scheme.
	end := len(u)
	if i := strings.IndexAny(u[start:], "/?#"); i >= 0 {
		end = start + i
	}
	at := strings.LastIndex(u[start:end], "@")
	if at < 0 {
		return u
	}
	at += start
	userinfo := u[start:at]
	if user, _, hasPassword := strings.Cut(userinfo, ":"); hasPassword {
		userinfo = user + ":" + Mask
	} else {
		userinfo = Mask
	}
	return u[:start] + userinfo + u[at:]
}

// URLs is a URL string (or comma-separated list) that logs redacted, for
// slog.Any("nats_url", redact.URLs(url)) and %v.
type URLs string

// LogValue implements slog.LogValuer.
func (u URLs) LogValue() slog.Value { return slog.StringValue(URL(string(u))) }

// String implements fmt.Stringer.
func (u URLs) String() string { return URL(string(u)) }

// Redacted is how a Secret shows.
const Redacted = "[redacted]"

// Secret is a secret string. It shows as [redacted] in slog, fmt (%v, %s,
// %q, %#v) and JSON; Reveal returns the value for the one place that needs
// it (a connection option, a comparison).
type Secret string

// Reveal returns the secret itself.
func (s Secret) Reveal() string { return string(s) }

// IsSet reports whether the secret is non-empty, for logging that a secret
// is configured without showing it.
func (s Secret) IsSet() bool { return s != "" }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

// String implements fmt.Stringer.
func (s Secret) String() string { return Redacted }

// GoString implements fmt.GoStringer, for %#v.
func (s Secret) GoString() string { return `redact.Secret("` + Redacted + `")` }

// MarshalText implements encoding.TextMarshaler, so JSON, TOML and the like
// write [redacted] too.
func (s Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// Attr returns a slog attribute for a secret: its value is [redacted] when
// set and "" when not, so logs can still tell whether one was configured.
func Attr(key, secret string) slog.Attr {
	if secret == "" {
		return slog.String(key, "")
	}
	return slog.String(key, Redacted)
}
