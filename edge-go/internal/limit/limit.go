// Package limit refuses work the gateway cannot serve in time, at once,
// rather than queueing it:
//
//   - InFlight caps each model's concurrent calls (--max-in-flight). Past the
//     cap a request is refused with RESOURCE_EXHAUSTED (429 + Retry-After),
//     because a queue in front of a saturated model only adds latency that
//     every later request pays too.
//   - InFlight also keeps a moving estimate of each model's call latency and
//     Admit refuses, with DEADLINE_EXCEEDED (504), a request whose remaining
//     deadline is shorter than that: it would time out anyway, after using a
//     worker's time.
//   - Rate limits requests per client (API key ID or client IP, --rate-limit)
//     with golang.org/x/time/rate token buckets, in bounded memory.
//
// Refusals are gRPC status errors, the gateway's common currency, with a
// RetryInfo detail where a retry makes sense, which package oiperr turns
// into Retry-After. Reason names the refusal for the `reason` label of
// tandem_gateway_refused_total.
package limit

import (
	"errors"
	"math"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Reasons, the `reason` label values of tandem_gateway_refused_total.
const (
	ReasonOverloaded  = "overloaded"
	ReasonRateLimited = "rate_limited"
	ReasonDeadline    = "deadline"
)

// Error is a refusal: a gRPC status error (through GRPCStatus) that also
// says why, for metrics.
type Error struct {
	Reason string
	st     *status.Status
}

func (e *Error) Error() string { return e.st.Err().Error() }

// GRPCStatus makes the refusal a gRPC status for status.FromError and oiperr.
func (e *Error) GRPCStatus() *status.Status { return e.st }

// refusal builds an *Error; retryAfter > 0 adds a RetryInfo detail.
func refusal(reason string, code codes.Code, msg string, retryAfter time.Duration) *Error {
	st := status.New(code, msg)
	if retryAfter > 0 {
		if withInfo, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)}); err == nil {
			st = withInfo
		}
	}
	return &Error{Reason: reason, st: st}
}

// Reason returns the refusal reason of err (ReasonOverloaded, ...), or "" if
// err is not one of this package's refusals.
func Reason(err error) string {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Reason
	}
	return ""
}

// RetryAfterSeconds returns the Retry-After header value, in whole seconds
// rounded up and at least 1, for an error carrying a RetryInfo detail; ok is
// false for other errors. oiperr.FromError reads the same detail, so a REST
// edge using oiperr needs this only to set the header itself.
func RetryAfterSeconds(err error) (seconds int, ok bool) {
	st, isStatus := status.FromError(err)
	if !isStatus {
		return 0, false
	}
	for _, d := range st.Details() {
		if info, isInfo := d.(*errdetails.RetryInfo); isInfo && info.GetRetryDelay() != nil {
			s := math.Ceil(info.GetRetryDelay().AsDuration().Seconds())
			return max(int(s), 1), true
		}
	}
	return 0, false
}

// formatDuration prints d for a message: milliseconds when it is that long,
// microseconds below.
func formatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d >= time.Millisecond {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Microsecond).String()
}
