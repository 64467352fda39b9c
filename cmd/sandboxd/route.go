package main

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// sandboxIDKey is the request metadata in which clients repeat the sandbox
// ID of a per-sandbox call, so that a proxy can route the call without
// parsing its body. The body stays authoritative: a call whose metadata
// names another sandbox is refused, so a proxy never routes by one ID
// while the daemon acts on another.
const sandboxIDKey = "x-sandbox-id"

// checkRouteUnary refuses a unary call whose x-sandbox-id metadata
// disagrees with the sandbox ID in its request.
func checkRouteUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := checkRoute(ctx, req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// checkRouteStream does checkRouteUnary's check on the first message of a
// stream from the client (Exec's request, Upload's header).
func checkRouteStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &routeCheckedStream{ServerStream: ss})
}

type routeCheckedStream struct {
	grpc.ServerStream
	checked bool
}

func (s *routeCheckedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if !s.checked {
		s.checked = true
		return checkRoute(s.Context(), m)
	}
	return nil
}

// checkRoute compares the x-sandbox-id metadata of ctx, if any, with the
// sandbox ID in msg, if it has one: more than one value, or a value other
// than the body's, is InvalidArgument.
func checkRoute(ctx context.Context, msg any) error {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(sandboxIDKey)
	if len(vals) == 0 {
		return nil
	}
	if len(vals) > 1 {
		return status.Errorf(codes.InvalidArgument, "%s metadata given %d times: send it once", sandboxIDKey, len(vals))
	}
	body, ok := bodyID(msg)
	if !ok {
		return nil
	}
	if vals[0] != body {
		return status.Error(codes.InvalidArgument, fmt.Sprintf("%s metadata %q does not match the request's sandbox_id %q: a proxy would route by one and the daemon act on the other",
			sandboxIDKey, clip(vals[0]), clip(body)))
	}
	return nil
}

// bodyID returns the sandbox ID a request message carries, and whether it
// carries one (an Upload's chunks do not; its header does).
func bodyID(msg any) (string, bool) {
	switch m := msg.(type) {
	case *sandboxv1.UploadRequest:
		if h := m.GetHeader(); h != nil {
			return h.GetSandboxId(), true
		}
		return "", false
	case interface{ GetSandboxId() string }:
		return m.GetSandboxId(), true
	}
	return "", false
}

// maxEchoedID bounds how much of a client's ID an error message repeats.
const maxEchoedID = 80

func clip(s string) string {
	if len(s) > maxEchoedID {
		return s[:maxEchoedID] + "..."
	}
	return s
}
