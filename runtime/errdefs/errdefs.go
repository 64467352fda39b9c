// Package errdefs classifies sandboxd errors once, with sentinels that code
// wraps with %w, and maps them to gRPC status codes in one function. Code
// anywhere in the daemon returns fmt.Errorf("doing x: %w", errdefs.ErrNotFound)
// and the API layer calls ToGRPC; nothing else picks status codes.
package errdefs

import "errors"

// The error classes of sandboxd. Each maps to one gRPC code (see ToGRPC).
var (
	// ErrInvalidArgument: the request is malformed; retrying it cannot help.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotFound: the named sandbox or file does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: the thing to create exists already.
	ErrAlreadyExists = errors.New("already exists")
	// ErrResourceExhausted: a limit was reached (sandboxes, sizes, disk).
	ErrResourceExhausted = errors.New("resource exhausted")
	// ErrFailedPrecondition: the sandbox is not in a state for this request,
	// e.g. it died.
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrPermissionDenied: the sandbox user may not do this.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrUnavailable: the daemon is shutting down or a sandbox cannot be
	// reached right now.
	ErrUnavailable = errors.New("unavailable")
	// ErrDeadlineExceeded: the operation ran out of time.
	ErrDeadlineExceeded = errors.New("deadline exceeded")
	// ErrDataLoss: stored state is damaged beyond use, e.g. a paused
	// sandbox's image.
	ErrDataLoss = errors.New("data loss")
)
