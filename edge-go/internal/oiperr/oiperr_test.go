package oiperr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tandem-ml/tandem/edge-go/internal/transport"
)

func TestHTTPStatus(t *testing.T) {
	tests := []struct {
		code codes.Code
		want int
	}{
		{codes.InvalidArgument, 400},
		{codes.Unauthenticated, 401},
		{codes.PermissionDenied, 403},
		{codes.NotFound, 404},
		{codes.ResourceExhausted, 429},
		{codes.Canceled, 499},
		{codes.Internal, 500},
		{codes.Unknown, 500},
		{codes.Unimplemented, 500},
		{codes.DataLoss, 500},
		{codes.FailedPrecondition, 500},
		{codes.OutOfRange, 500},
		{codes.Aborted, 500},
		{codes.AlreadyExists, 500},
		{codes.Unavailable, 503},
		{codes.DeadlineExceeded, 504},
	}
	for _, tt := range tests {
		if got := HTTPStatus(tt.code); got != tt.want {
			t.Errorf("HTTPStatus(%v) = %d, want %d", tt.code, got, tt.want)
		}
	}
}

func TestFromError(t *testing.T) {
	retryIn := func(d time.Duration) error {
		st, err := status.New(codes.ResourceExhausted, "queue full").
			WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	tests := []struct {
		name string
		err  error
		want Response
	}{
		{"invalid argument", status.Error(codes.InvalidArgument, `input "x": bad`), Response{Status: 400, Message: `input "x": bad`}},
		{"not found", status.Error(codes.NotFound, "unknown model"), Response{Status: 404, Message: "unknown model"}},
		{"unavailable", status.Error(codes.Unavailable, "down"), Response{Status: 503, Message: "down"}},
		{"deadline status", status.Error(codes.DeadlineExceeded, "slow"), Response{Status: 504, Message: "slow"}},
		{"wrapped status", fmt.Errorf("infer: %w", status.Error(codes.NotFound, "gone")), Response{Status: 404, Message: "infer: rpc error: code = NotFound desc = gone"}},
		{"overloaded", status.Error(codes.ResourceExhausted, "busy"), Response{Status: 429, Message: "busy", RetryAfter: "1"}},
		{"overloaded with retry info", retryIn(2500 * time.Millisecond), Response{Status: 429, Message: "queue full", RetryAfter: "3"}},
		{"body too large", fmt.Errorf("read body: %w", &http.MaxBytesError{Limit: 1024}), Response{Status: 413, Message: "request body too large: the limit is 1024 bytes"}},
		{"too large", fmt.Errorf("%w: its tensors take 9 bytes", transport.ErrTooLarge), Response{Status: 413, Message: "request too large: its tensors take 9 bytes"}},
		{"too large status", transport.TooLarge("model input too large: 9 bytes"), Response{Status: 413, Message: "model input too large: 9 bytes"}},
		{"context deadline", fmt.Errorf("read body: %w", context.DeadlineExceeded), Response{Status: 504, Message: "read body: context deadline exceeded"}},
		{"context canceled", context.Canceled, Response{Status: 499, Message: "context canceled"}},
		{"plain error", errors.New("boom"), Response{Status: 500, Message: "boom"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FromError(tt.err); got != tt.want {
				t.Errorf("FromError(%v) = %+v, want %+v", tt.err, got, tt.want)
			}
		})
	}
}

func TestToGRPC(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code codes.Code
		msg  string
	}{
		{"status passes through", status.Error(codes.NotFound, "unknown model"), codes.NotFound, "unknown model"},
		{"too large", fmt.Errorf("%w: its tensors take 9 bytes", transport.ErrTooLarge), codes.ResourceExhausted, "request too large: its tensors take 9 bytes"},
		{"too large status", transport.TooLarge("over max_payload"), codes.ResourceExhausted, "over max_payload"},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded, "context deadline exceeded"},
		{"canceled", fmt.Errorf("read: %w", context.Canceled), codes.Canceled, "read: context canceled"},
		{"plain error", errors.New("boom"), codes.Internal, "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert(ToGRPC(tt.err))
			if st.Code() != tt.code || st.Message() != tt.msg {
				t.Errorf("ToGRPC(%v) = %v %q, want %v %q", tt.err, st.Code(), st.Message(), tt.code, tt.msg)
			}
		})
	}
	if ToGRPC(nil) != nil {
		t.Error("ToGRPC(nil) is not nil")
	}
}
