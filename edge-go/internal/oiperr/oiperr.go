// Package oiperr maps errors to what an OIP REST client sees: an HTTP status
// and a message. gRPC status errors are the gateway's common currency: the
// transports return them and the codec raises them, so one table here decides
// every status code the REST API answers with. A request over one of the
// gateway's limits is transport.ErrTooLarge: 413.
package oiperr

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tandem-ml/tandem/edge-go/internal/transport"
)

// StatusClientClosedRequest is nginx's code for a client that went away
// before its answer: never sent, since nobody is left to read it, but logged.
const StatusClientClosedRequest = 499

// DefaultRetryAfter is the Retry-After, in seconds, of a 429 whose error does
// not say when to retry.
const DefaultRetryAfter = 1

// httpStatus is the one mapping from gRPC codes to HTTP statuses; codes not
// listed are the gateway's or the service's bugs: 500.
var httpStatus = map[codes.Code]int{
	codes.InvalidArgument:   http.StatusBadRequest,
	codes.NotFound:          http.StatusNotFound,
	codes.ResourceExhausted: http.StatusTooManyRequests,
	codes.Unavailable:       http.StatusServiceUnavailable,
	codes.DeadlineExceeded:  http.StatusGatewayTimeout,
	codes.Unauthenticated:   http.StatusUnauthorized,
	codes.PermissionDenied:  http.StatusForbidden,
	codes.Canceled:          StatusClientClosedRequest,
}

// HTTPStatus returns the HTTP status for a gRPC code.
func HTTPStatus(code codes.Code) int {
	if s, ok := httpStatus[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Response is what the REST API answers for an error.
type Response struct {
	Status  int
	Message string
	// RetryAfter is the Retry-After header in seconds, set only for 429.
	RetryAfter string
}

// FromError maps any error the handlers meet to its REST response.
func FromError(err error) Response {
	if tooLarge, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return Response{
			Status:  http.StatusRequestEntityTooLarge,
			Message: fmt.Sprintf("request body too large: the limit is %d bytes", tooLarge.Limit),
		}
	}
	if errors.Is(err, transport.ErrTooLarge) {
		return Response{Status: http.StatusRequestEntityTooLarge, Message: err.Error()}
	}
	// A context error that never went through a transport, such as the
	// client leaving while its body is read, speaks for itself.
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return Response{Status: http.StatusGatewayTimeout, Message: err.Error()}
	case errors.Is(err, context.Canceled):
		return Response{Status: StatusClientClosedRequest, Message: err.Error()}
	}
	st, ok := status.FromError(err)
	if !ok {
		return Response{Status: http.StatusInternalServerError, Message: err.Error()}
	}
	resp := Response{Status: HTTPStatus(st.Code()), Message: st.Message()}
	if resp.Status == http.StatusTooManyRequests {
		resp.RetryAfter = strconv.Itoa(retryAfterSeconds(st))
	}
	return resp
}

// ToGRPC maps any error the edge gRPC listener meets to the status its
// client gets: statuses pass through, a request too large is
// RESOURCE_EXHAUSTED (what gRPC itself answers for an oversized message),
// context errors become their codes and anything else is INTERNAL.
func ToGRPC(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, transport.ErrTooLarge) {
		return status.Error(codes.ResourceExhausted, err.Error())
	}
	if st, ok := status.FromError(err); ok {
		return st.Err()
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, err.Error())
}

// retryAfterSeconds reads a RetryInfo detail, rounded up to whole seconds as
// Retry-After needs, or falls back to DefaultRetryAfter.
func retryAfterSeconds(st *status.Status) int {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.RetryInfo); ok && info.GetRetryDelay() != nil {
			seconds := math.Ceil(info.GetRetryDelay().AsDuration().Seconds())
			return max(int(seconds), 0)
		}
	}
	return DefaultRetryAfter
}
