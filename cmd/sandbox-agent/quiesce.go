package main

// This file readies the agent for a checkpoint. The daemon snapshots a
// warmed template sandbox and restores the image into fresh sandboxes whose
// stdio are new pipes: gVisor rebinds the agent's fds 0-2 to them, while the
// agent's memory (its HTTP/2 connection state included) is the template's.
// So before the checkpoint the agent stops reading the old connection, and
// after the restore it serves the new one from its first byte.

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "github.com/sandboxd/sandboxd/proto/agent/v1"
)

// quiesceMethod is Quiesce's full gRPC method name; it does not count as
// work in progress.
const quiesceMethod = "/agent.v1.AgentService/Quiesce"

// idleStreams are the egress proxy's streams (egress.go), which are not
// work in progress: EgressAccept stays open for as long as the sandbox has
// egress, and an EgressRelay for as long as a client keeps its connection.
// Counting them would refuse every Quiesce (no pause, no checkpoint) and
// starve the spare bash's refill in a sandbox with egress. The daemon ends
// them itself before it pauses a sandbox, cutting live relays rather than
// waiting for them; and after a restore the daemon's next EgressAccept
// replaces a proxy whose stream the old connection left behind.
var idleStreams = map[string]bool{
	agentv1.AgentService_EgressAccept_FullMethodName: true,
	agentv1.AgentService_EgressRelay_FullMethodName:  true,
}

// busyCounter counts the RPCs in progress (Execs, file transfers, Pings),
// the egress streams aside (idleStreams).
type busyCounter struct{ n atomic.Int64 }

func (b *busyCounter) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if info.FullMethod == quiesceMethod {
		return h(ctx, req)
	}
	b.n.Add(1)
	defer b.n.Add(-1)
	return h(ctx, req)
}

func (b *busyCounter) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if idleStreams[info.FullMethod] {
		return h(srv, ss)
	}
	b.n.Add(1)
	defer b.n.Add(-1)
	return h(srv, ss)
}

// Quiesce refuses while other RPCs run; otherwise it detaches the current
// connection's reads (its answer still goes out) so that the next bytes on
// stdin, after a restore, start a new connection.
func (s *server) Quiesce(ctx context.Context, _ *agentv1.QuiesceRequest) (*agentv1.QuiesceResponse, error) {
	if n := s.busy.n.Load(); n > 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "%d requests are in progress; quiesce when the sandbox is idle", n)
	}
	if err := s.lis.Detach(); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "detaching the connection: %v", err)
	}
	return &agentv1.QuiesceResponse{}, nil
}
