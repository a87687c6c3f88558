package natstransport

import (
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ValidToken reports whether s can be one token of a NATS subject that is
// published to: not empty, and without the separator '.', the wildcards
// '*' and '>', whitespace or control characters. Publishing to a wildcard
// is refused by the server, and a '.' in a model name would shift the
// tokens a worker subscribes to.
func ValidToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f || c == '.' || c == '*' || c == '>' {
			return false
		}
	}
	return true
}

// ValidatePrefix checks a subject prefix: one or more valid tokens joined by
// dots, such as "oip.v2".
func ValidatePrefix(prefix string) error {
	for tok := range strings.SplitSeq(prefix, ".") {
		if !ValidToken(tok) {
			return fmt.Errorf("subject prefix %q: %q is not a valid subject token (it must be non-empty, without '*', '>' or whitespace)", prefix, tok)
		}
	}
	return nil
}

// subjects names the subject of each RPC under a prefix (proto/README.md).
type subjects struct{ prefix string }

// server is the subject of a server-wide RPC: "<prefix>.server.<rpc>".
func (s subjects) server(rpc string) string {
	return s.prefix + ".server." + rpc
}

// model is the subject of a per-model RPC: "<prefix>.models.<model>.<rpc>".
// A name that cannot be a subject token names no model a worker can serve.
func (s subjects) model(model, rpc string) (string, error) {
	if model == "" {
		return "", status.Error(codes.InvalidArgument, "the model name is empty")
	}
	if !ValidToken(model) {
		return "", status.Errorf(codes.NotFound,
			"unknown model %q: over NATS a model name is a subject token, without '.', '*', '>' or whitespace", model)
	}
	return s.prefix + ".models." + model + "." + rpc, nil
}
