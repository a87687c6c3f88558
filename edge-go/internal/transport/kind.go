package transport

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// ErrTooLarge marks a request over one of the gateway's size limits other
// than the body's own (which net/http reports as *http.MaxBytesError): 413
// over REST. Wrap it with what was too large, or make the error with
// TooLarge.
var ErrTooLarge = errors.New("request too large")

// TooLarge is a request-too-large error that is at once ErrTooLarge (so REST
// answers 413) and a RESOURCE_EXHAUSTED gRPC status (so it keeps the
// Invoker's promise that every error is a status, and the edge gRPC listener
// answers it as gRPC does an oversized message). msg is the whole message,
// for example that of a worker's NATS 413.
func TooLarge(msg string) error { return &tooLargeError{msg: msg} }

type tooLargeError struct{ msg string }

func (e *tooLargeError) Error() string        { return e.msg }
func (e *tooLargeError) Is(target error) bool { return target == ErrTooLarge }
func (e *tooLargeError) GRPCStatus() *status.Status {
	return status.New(codes.ResourceExhausted, e.msg)
}

// Kinds of hop failure that no status code tells apart, for metrics.
const (
	KindNoResponders = "no_responders"
	KindNotSent      = "not_sent"
)

// WithKind is the status error st that also names the kind of hop failure
// it is (for example KindNoResponders), which ErrorKind reports.
func WithKind(kind string, st *status.Status) error {
	return &kindError{st: st, kind: kind}
}

// NotSent is WithKind(kind, st) for a failure that proves the request
// reached no worker (see the package doc): the one failure Retry makes
// again.
func NotSent(kind string, st *status.Status) error {
	return &kindError{st: st, kind: kind, notSent: true}
}

// WasNotSent reports whether err is a NotSent error: the request it failed
// cannot have been run.
func WasNotSent(err error) bool {
	k, ok := errors.AsType[*kindError](err)
	return ok && k.notSent
}

type kindError struct {
	st      *status.Status
	kind    string
	notSent bool
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
	if errors.Is(err, ErrTooLarge) {
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

// ObserveFailures hands every failed call's ErrorKind to note (the hop
// error counter); the service's answers are not failures. Put it under
// Retry, so that an attempt that is retried counts too.
func ObserveFailures(note func(kind string)) Middleware {
	return func(next Invoker) Invoker {
		return Wrap(next, func(ctx context.Context, rpc RPC, req proto.Message) (proto.Message, error) {
			resp, err := next.Invoke(ctx, rpc, req)
			if kind := ErrorKind(err); kind != "" {
				note(kind)
			}
			return resp, err
		})
	}
}
