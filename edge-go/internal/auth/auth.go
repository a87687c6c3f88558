// Package auth checks the API keys that clients of the gateway present:
// `Authorization: Bearer KEY` on REST and `authorization: Bearer KEY`
// metadata on gRPC.
//
// Why it is shaped as it is:
//   - Keys are kept only as SHA-256 digests and a presented key is compared
//     with crypto/subtle against every digest, without stopping at a match,
//     so neither the compare nor the loop leaks how much of a key was right
//     or which key matched.
//   - A key may be scoped to some models; a valid key used for another model
//     is forbidden (403 / PERMISSION_DENIED), a missing or unknown key is
//     unauthenticated (401 / UNAUTHENTICATED).
//   - The key itself is never logged, echoed in errors or kept in memory
//     beyond its digest. Callers that need to tell clients apart (rate
//     limiting, logs) get a key ID instead: the first 8 hex digits of the
//     digest, stable across restarts, useless to an attacker.
//
// Errors returned by Check are gRPC status errors, the gateway's common
// currency, so package oiperr maps them to REST statuses unchanged.
package auth

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Outcome is what a check decided.
type Outcome int

const (
	// Allowed: a known key, in scope for the model.
	Allowed Outcome = iota
	// Unauthenticated: no key, an unknown key, or a malformed header.
	Unauthenticated
	// Forbidden: a known key scoped to other models.
	Forbidden
)

// String returns the outcome's name, which is also the `reason` label of
// tandem_gateway_refused_total for the two refusals.
func (o Outcome) String() string {
	switch o {
	case Allowed:
		return "allowed"
	case Unauthenticated:
		return "unauthenticated"
	case Forbidden:
		return "forbidden"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Error is a refusal. It is a gRPC status error (UNAUTHENTICATED or
// PERMISSION_DENIED) through its GRPCStatus method.
type Error struct {
	Outcome Outcome
	// InvalidToken is set when a key was presented but is unknown, so REST
	// can add error="invalid_token" to WWW-Authenticate (RFC 6750).
	InvalidToken bool
	msg          string
}

func (e *Error) Error() string { return e.msg }

// GRPCStatus makes the refusal a gRPC status for status.FromError and oiperr.
func (e *Error) GRPCStatus() *status.Status {
	code := codes.Unauthenticated
	if e.Outcome == Forbidden {
		code = codes.PermissionDenied
	}
	return status.New(code, e.msg)
}

// entry is one key as kept: its digest, its ID and its scope.
type entry struct {
	digest [sha256.Size]byte
	id     string
	models []string // nil: every model
}

// Keys is a set of API keys. A nil or empty *Keys has auth disabled:
// Enabled reports false and the middlewares let everything through.
// Keys is immutable after Load and safe for concurrent use.
type Keys struct {
	entries []entry
}

// Load builds the key set from keys (the --api-keys list, already split on
// commas; blanks are skipped) and file (the --api-keys-file, "" for none).
//
// The file holds one key per line; blank lines and lines starting with '#'
// are ignored. A line may be `KEY model1,model2` to scope the key to those
// models. Errors name the line, never the key. A key given twice is an error,
// since its two scopes would contradict each other.
func Load(keys []string, file string) (*Keys, error) {
	var k Keys
	seen := make(map[[sha256.Size]byte]string)
	add := func(where, key string, models []string) error {
		if err := validKey(key); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		e := newEntry(key, models)
		if first, dup := seen[e.digest]; dup {
			return fmt.Errorf("%s: the same API key as %s", where, first)
		}
		seen[e.digest] = where
		k.entries = append(k.entries, e)
		return nil
	}

	n := 0
	for _, key := range keys {
		key = strings.TrimSpace(key)
		if key == "" {
			continue
		}
		n++
		if err := add(fmt.Sprintf("API key %d of the list", n), key, nil); err != nil {
			return nil, err
		}
	}

	if file == "" {
		return &k, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading API keys file: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		where := fmt.Sprintf("%s line %d", file, line)
		fields := strings.Fields(text)
		var models []string
		switch len(fields) {
		case 1:
		case 2:
			for m := range strings.SplitSeq(fields[1], ",") {
				if m = strings.TrimSpace(m); m == "" {
					return nil, fmt.Errorf("%s: empty model name in the scope", where)
				}
				models = append(models, m)
			}
		default:
			return nil, fmt.Errorf("%s: want `KEY` or `KEY model1,model2`, found %d fields", where, len(fields))
		}
		if err := add(where, fields[0], models); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading API keys file %s: %w", file, err)
	}
	return &k, nil
}

// validKey refuses keys that could not travel in a Bearer header. The
// message never includes the key.
func validKey(key string) error {
	for _, c := range key {
		if c <= ' ' || c == 0x7f || c == ',' {
			return errors.New("API key holds a space, comma or control character")
		}
	}
	return nil
}

func newEntry(key string, models []string) entry {
	d := sha256.Sum256([]byte(key))
	e := entry{digest: d, id: hex.EncodeToString(d[:4])}
	if models != nil {
		e.models = slices.Compact(slices.Sorted(slices.Values(models)))
	}
	return e
}

// Enabled reports whether any key is set. When not, every request is let
// through; the gateway should warn if it then listens beyond loopback.
func (k *Keys) Enabled() bool { return k != nil && len(k.entries) > 0 }

// Len is the number of keys, for a startup log line.
func (k *Keys) Len() int {
	if k == nil {
		return 0
	}
	return len(k.entries)
}

// constantTimeCompare is subtle.ConstantTimeCompare; a variable only so that
// a test can count the comparisons.
var constantTimeCompare = subtle.ConstantTimeCompare

// lookup returns the index of the entry whose digest is d, or -1. It
// compares d with every entry and selects the match with constant-time
// arithmetic, so its time depends only on the number of keys.
func (k *Keys) lookup(d [sha256.Size]byte) int {
	found := -1
	for i := range k.entries {
		eq := constantTimeCompare(d[:], k.entries[i].digest[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	return found
}

// Check decides whether authorization (the raw Authorization header or
// metadata value) may call model. model "" is a request about no model in
// particular (server metadata): any valid key may make it. It returns the
// key's ID when allowed, else an *Error. With auth disabled it allows
// everything with ID "".
func (k *Keys) Check(authorization, model string) (keyID string, err error) {
	if !k.Enabled() {
		return "", nil
	}
	if authorization == "" {
		return "", &Error{Outcome: Unauthenticated, msg: "missing API key: send the header Authorization: Bearer <key>"}
	}
	key, ok := bearer(authorization)
	if !ok {
		return "", &Error{Outcome: Unauthenticated, msg: "malformed Authorization: want Bearer <key>"}
	}
	i := k.lookup(sha256.Sum256([]byte(key)))
	if i < 0 {
		return "", &Error{Outcome: Unauthenticated, InvalidToken: true, msg: "invalid API key"}
	}
	e := &k.entries[i]
	if model != "" && e.models != nil {
		if _, in := slices.BinarySearch(e.models, model); !in {
			return e.id, &Error{Outcome: Forbidden, msg: fmt.Sprintf("API key %s may not call model %q", e.id, model)}
		}
	}
	return e.id, nil
}

// bearer takes the token out of "Bearer TOKEN"; the scheme is
// case-insensitive (RFC 9110 11.1).
func bearer(h string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}

// OutcomeOf returns the outcome err stands for: Allowed for nil, the
// refusal's for an *Error, Unauthenticated for anything else.
func OutcomeOf(err error) Outcome {
	if err == nil {
		return Allowed
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Outcome
	}
	return Unauthenticated
}

type keyIDKey struct{}

// WithKeyID returns ctx carrying the key ID of an allowed request. The
// middlewares do this; tests and other entry points may too.
func WithKeyID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, keyIDKey{}, id)
}

// KeyID returns the ID of the key that authorized the request, for rate
// limiting and logs; ok is false when auth is disabled or ctx did not pass
// through the middlewares.
func KeyID(ctx context.Context) (id string, ok bool) {
	id, ok = ctx.Value(keyIDKey{}).(string)
	return id, ok && id != ""
}
