// Package natssubject knows what a NATS subject of the OIP mapping may hold
// (proto/README.md): the default prefix and the checks on tokens and
// prefixes. It imports nothing of the gateway's, so that both the settings
// (config) and the NATS transport can use it.
package natssubject

import (
	"fmt"
	"strings"
)

// DefaultPrefix starts every subject unless the gateway is told otherwise.
const DefaultPrefix = "oip.v2"

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
