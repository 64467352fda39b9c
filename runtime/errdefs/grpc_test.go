package errdefs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestToGRPCMapsEveryClass guarantees that each sentinel, however deeply
// wrapped, reaches the client as its own gRPC code, with the message minus
// the trailing class name.
func TestToGRPCMapsEveryClass(t *testing.T) {
	for _, c := range classes {
		err := fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", c.err))
		st := status.Convert(ToGRPC(err))
		if st.Code() != c.code {
			t.Errorf("%v: got code %v, want %v", c.err, st.Code(), c.code)
		}
		if want := "outer: inner"; st.Message() != want {
			t.Errorf("message %q, want %q", st.Message(), want)
		}
	}
	if got := status.Code(ToGRPC(errors.New("boom"))); got != codes.Internal {
		t.Errorf("unclassified error: got %v, want Internal", got)
	}
	if ToGRPC(nil) != nil {
		t.Error("nil must stay nil")
	}
}

// TestFromGRPCDistrustsAgentCodes guarantees that an agent cannot make the
// daemon report arbitrary codes (e.g. Unauthenticated) or huge messages.
func TestFromGRPCDistrustsAgentCodes(t *testing.T) {
	err := FromGRPC(status.Error(codes.NotFound, "no such file"))
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("NotFound lost its class: %v", err)
	}
	err = FromGRPC(status.Error(codes.Unauthenticated, strings.Repeat("x", 5000)))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Unauthenticated should become Unavailable: %v", err)
	}
	if len(err.Error()) > 1200 {
		t.Fatalf("agent message not truncated: %d bytes", len(err.Error()))
	}
	if !errors.Is(FromGRPC(status.Error(codes.Canceled, "x")), context.Canceled) {
		t.Fatal("Canceled must map to context.Canceled")
	}
}
