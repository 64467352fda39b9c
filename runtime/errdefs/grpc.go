package errdefs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// classes pairs each sentinel with its gRPC code, in matching order.
var classes = []struct {
	err  error
	code codes.Code
}{
	{ErrInvalidArgument, codes.InvalidArgument},
	{ErrNotFound, codes.NotFound},
	{ErrAlreadyExists, codes.AlreadyExists},
	{ErrResourceExhausted, codes.ResourceExhausted},
	{ErrFailedPrecondition, codes.FailedPrecondition},
	{ErrPermissionDenied, codes.PermissionDenied},
	{ErrUnavailable, codes.Unavailable},
	{ErrDeadlineExceeded, codes.DeadlineExceeded},
	{ErrDataLoss, codes.DataLoss},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},
}

// ToGRPC converts err into a gRPC status error. The message is err's text,
// which callers build to be actionable, less the class name that wrapping
// the sentinel appended (the code says it already). Errors of no known class
// become Internal. A status error passes through unchanged.
func ToGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return status.Error(c.code, strings.TrimSuffix(err.Error(), ": "+c.err.Error()))
		}
	}
	return status.Error(codes.Internal, err.Error())
}

// FromGRPC turns a status error received from a sandbox's agent into a
// classified error. The agent is untrusted: only codes that an agent may
// legitimately return keep their class, everything else becomes
// ErrUnavailable, and the message is marked as the agent's.
func FromGRPC(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := st.Message()
	const maxAgentMessage = 1024 // keep a hostile agent from filling our logs
	if len(msg) > maxAgentMessage {
		msg = msg[:maxAgentMessage] + "..."
	}
	switch st.Code() {
	case codes.InvalidArgument:
		return fmt.Errorf("%s: %w", msg, ErrInvalidArgument)
	case codes.NotFound:
		return fmt.Errorf("%s: %w", msg, ErrNotFound)
	case codes.PermissionDenied:
		return fmt.Errorf("%s: %w", msg, ErrPermissionDenied)
	case codes.ResourceExhausted:
		return fmt.Errorf("%s: %w", msg, ErrResourceExhausted)
	case codes.FailedPrecondition:
		return fmt.Errorf("%s: %w", msg, ErrFailedPrecondition)
	case codes.Canceled:
		return fmt.Errorf("%s: %w", msg, context.Canceled)
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: %w", msg, ErrDeadlineExceeded)
	default:
		return fmt.Errorf("sandbox agent: %s (%s): %w", msg, st.Code(), ErrUnavailable)
	}
}
