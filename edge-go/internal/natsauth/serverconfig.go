package natsauth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The users of a Tandem stack's NATS server.
const (
	UserGateway  = "gateway"
	UserWorker   = "worker"
	UserObserver = "observer"
)

// Users lists them, in the order ServerConfig writes them.
var Users = []string{UserGateway, UserWorker, UserObserver}

// Permissions returns what each user may publish and subscribe to, with
// prefix the subject prefix (oip.v2):
//
//   - gateway: publish <prefix>.> (requests, cancels); subscribe _INBOX.>
//     (replies). It cannot subscribe to requests, so it cannot pose as a
//     worker.
//   - worker: subscribe <prefix>.> and $SRV.> (requests, cancels, service
//     discovery); publish $SRV.> and _INBOX.>, and reply to what it
//     received (allow_responses).
//   - observer: publish $SRV.> (e.g. $SRV.STATS); subscribe _INBOX.>.
func Permissions(prefix string) map[string]Permission {
	return map[string]Permission{
		UserGateway:  {Publish: []string{prefix + ".>"}, Subscribe: []string{"_INBOX.>"}},
		UserWorker:   {Publish: []string{"$SRV.>", "_INBOX.>"}, Subscribe: []string{prefix + ".>", "$SRV.>"}, AllowResponses: true},
		UserObserver: {Publish: []string{"$SRV.>"}, Subscribe: []string{"_INBOX.>"}},
	}
}

// Permission is one user's allowed subjects.
type Permission struct {
	Publish, Subscribe []string
	AllowResponses     bool
}

// ServerConfig returns a nats-server config file's authorization block
// (valid as a whole config file, and includable in a larger one) holding
// the three Users with passwords[user] and their Permissions for prefix.
// There is no no_auth_user, so anonymous clients are refused. Every user
// needs a non-empty password; users outside Users are an error.
func ServerConfig(prefix string, passwords map[string]string) (string, error) {
	if err := checkPrefix(prefix); err != nil {
		return "", err
	}
	for user := range passwords {
		if !slices.Contains(Users, user) {
			return "", fmt.Errorf("nats server config: unknown user %q (want %s)", user, strings.Join(Users, ", "))
		}
	}
	perms := Permissions(prefix)
	var b strings.Builder
	b.WriteString("# Written by Tandem (natsauth.ServerConfig): users of one stack.\n")
	b.WriteString("authorization {\n  users = [\n")
	for _, user := range Users {
		pw := passwords[user]
		if pw == "" {
			return "", fmt.Errorf("nats server config: no password for user %q", user)
		}
		if strings.ContainsFunc(pw, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return "", fmt.Errorf("nats server config: the password of user %q holds a control character", user)
		}
		p := perms[user]
		fmt.Fprintf(&b, "    {\n      user: %s\n      password: %s\n      permissions: {\n", quote(user), quote(pw))
		fmt.Fprintf(&b, "        publish: { allow: %s }\n", quoteList(p.Publish))
		fmt.Fprintf(&b, "        subscribe: { allow: %s }\n", quoteList(p.Subscribe))
		if p.AllowResponses {
			b.WriteString("        allow_responses: true\n")
		}
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String(), nil
}

// checkPrefix accepts a subject prefix of literal tokens, such as oip.v2.
func checkPrefix(prefix string) error {
	if prefix == "" {
		return errors.New("nats server config: empty subject prefix")
	}
	for tok := range strings.SplitSeq(prefix, ".") {
		if tok == "" || strings.ContainsAny(tok, "*> \t\r\n\"\\") {
			return fmt.Errorf("nats server config: subject prefix %q is not dot-separated literal tokens", prefix)
		}
	}
	return nil
}

// quote writes s as a nats-server config double-quoted string, whose only
// escapes are \" and \\ (plus \t, \n, \r, \xXX, not needed here). Quoted
// strings are never expanded as $variables.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
