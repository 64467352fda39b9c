package main

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// TestCheckRouteRefusesMismatchedMetadata guarantees that a call whose
// x-sandbox-id metadata names another sandbox than its body is refused
// (a proxy would route by one while the daemon acts on the other), and
// that calls without the metadata, or messages without an ID, pass.
func TestCheckRouteRefusesMismatchedMetadata(t *testing.T) {
	upload := func(id string) *sandboxv1.UploadRequest {
		return &sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Header{Header: &sandboxv1.FileHeader{SandboxId: id}}}
	}
	for _, tc := range []struct {
		name string
		md   []string
		msg  any
		want codes.Code
	}{
		{"no metadata", nil, &sandboxv1.ExecRequest{SandboxId: "sb-a"}, codes.OK},
		{"match", []string{"sb-a"}, &sandboxv1.ExecRequest{SandboxId: "sb-a"}, codes.OK},
		{"mismatch", []string{"sb-b"}, &sandboxv1.GetSandboxRequest{SandboxId: "sb-a"}, codes.InvalidArgument},
		{"empty body", []string{"sb-b"}, &sandboxv1.DestroySandboxRequest{}, codes.InvalidArgument},
		{"twice", []string{"sb-a", "sb-a"}, &sandboxv1.ExecRequest{SandboxId: "sb-a"}, codes.InvalidArgument},
		{"upload header mismatch", []string{"sb-b"}, upload("sb-a"), codes.InvalidArgument},
		{"upload header match", []string{"sb-a"}, upload("sb-a"), codes.OK},
		{"upload chunk", []string{"sb-b"}, &sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Chunk{Chunk: []byte("x")}}, codes.OK},
		{"create has no ID", []string{"sb-b"}, &sandboxv1.CreateSandboxRequest{}, codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			for _, v := range tc.md {
				ctx = metadata.AppendToOutgoingContext(ctx, sandboxIDKey, v)
			}
			out, _ := metadata.FromOutgoingContext(ctx)
			ctx = metadata.NewIncomingContext(context.Background(), out)
			if got := status.Code(checkRoute(ctx, tc.msg)); got != tc.want {
				t.Fatalf("checkRoute = %v, want %v", got, tc.want)
			}
		})
	}
}
