package natstransport

import (
	"strings"

	"github.com/nats-io/nats.go"
)

// HeaderCarrier lets propagators (W3C trace context, baggage) write NATS
// headers. NATS header keys are case-sensitive and Tandem's are lowercase
// (proto/README.md), whereas carriers built on http.Header would write
// "Traceparent"; this one lowercases every key. It has the methods of
// OpenTelemetry's propagation.TextMapCarrier, so telemetry can pass it to
// propagator.Inject as it is.
type HeaderCarrier nats.Header

// Get returns the first value of key.
func (c HeaderCarrier) Get(key string) string {
	return nats.Header(c).Get(strings.ToLower(key))
}

// Set replaces the values of key with value.
func (c HeaderCarrier) Set(key, value string) {
	nats.Header(c).Set(strings.ToLower(key), value)
}

// Keys lists the keys that are set.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
