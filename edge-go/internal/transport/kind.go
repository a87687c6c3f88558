package transport

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tandem-ml/tandem/edge-go/internal/oiperr"
)

// Kinds of hop failure that no status code tells apart, for metrics.
const (
	KindNoResponders   = "no_responders"
	KindAttemptTimeout = "attempt_timeout"
)

// WithKind is the status error st that also names the kind of hop failure
// it is (for example KindNoResponders), which ErrorKind reports.
func WithKind(kind string, st *status.Status) error {
	return &kindError{st: st, kind: kind}
}

type kindError struct {
	st   *status.Status
	kind string
}

func (e *kindError) Error() string              { return e.st.Err().Error() }
func (e *kindError) GRPCStatus() *status.Status { return e.st }

// ErrorKind names what went wrong on the hop: the kind given to WithKind, or
// else one for the code: unavailable, deadline, too_large, overloaded,
// canceled, internal. It is "" for the service's answers (a bad input, an
// unknown model), which are not failures of the hop.
func ErrorKind(err error) string {
	if err == nil {
		return ""
	}
	if k, ok := errors.AsType[*kindError](err); ok {
		return k.kind
	}
	if errors.Is(err, oiperr.ErrTooLarge) {
		return "too_large"
	}
	switch status.Code(err) {
	case codes.Unavailable:
		return "unavailable"
	case codes.DeadlineExceeded:
		return "deadline"
	case codes.ResourceExhausted:
		return "overloaded"
	case codes.Canceled:
		return "canceled"
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition,
		codes.OutOfRange, codes.Unauthenticated, codes.PermissionDenied, codes.OK:
		return ""
	}
	return "internal"
}
