package main

import (
	"context"
	"fmt"
	"io"

	"google.golang.org/protobuf/types/known/timestamppb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"github.com/sandboxd/sandboxd/runtime/errdefs"
	"github.com/sandboxd/sandboxd/runtime/manager"
	"github.com/sandboxd/sandboxd/runtime/snapshot"
)

// server adapts the manager to sandbox.v1.SandboxService: it only
// translates messages and errors.
type server struct {
	sandboxv1.UnimplementedSandboxServiceServer
	m *manager.Manager
	// node is the daemon's --node-address, shown on every sandbox and pool.
	node string
}

func (s *server) CreateSandbox(ctx context.Context, req *sandboxv1.CreateSandboxRequest) (*sandboxv1.Sandbox, error) {
	info, err := s.m.Create(ctx, manager.CreateRequest{
		Template: req.GetTemplate(), Labels: req.GetLabels(), BypassPool: req.GetBypassPool(), BypassSnapshot: req.GetBypassSnapshot(),
		Limits: limitsFromProto(req.GetLimits()), EgressAllow: req.GetEgressAllow(),
	})
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return s.sandbox(info), nil
}

func (s *server) GetSandbox(ctx context.Context, req *sandboxv1.GetSandboxRequest) (*sandboxv1.Sandbox, error) {
	info, err := s.m.Get(ctx, req.GetSandboxId())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return s.sandbox(info), nil
}

func (s *server) ListSandboxes(ctx context.Context, req *sandboxv1.ListSandboxesRequest) (*sandboxv1.ListSandboxesResponse, error) {
	infos := s.m.List(ctx, req.GetLabelSelector())
	resp := &sandboxv1.ListSandboxesResponse{Sandboxes: make([]*sandboxv1.Sandbox, len(infos))}
	for i, info := range infos {
		resp.Sandboxes[i] = s.sandbox(info)
	}
	return resp, nil
}

func (s *server) DestroySandbox(ctx context.Context, req *sandboxv1.DestroySandboxRequest) (*sandboxv1.DestroySandboxResponse, error) {
	if err := s.m.Destroy(ctx, req.GetSandboxId()); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &sandboxv1.DestroySandboxResponse{}, nil
}

func (s *server) PauseSandbox(ctx context.Context, req *sandboxv1.PauseSandboxRequest) (*sandboxv1.Sandbox, error) {
	info, err := s.m.Pause(ctx, req.GetSandboxId())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return s.sandbox(info), nil
}

func (s *server) ResumeSandbox(ctx context.Context, req *sandboxv1.ResumeSandboxRequest) (*sandboxv1.Sandbox, error) {
	info, err := s.m.Resume(ctx, req.GetSandboxId())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return s.sandbox(info), nil
}

func (s *server) Exec(req *sandboxv1.ExecRequest, stream sandboxv1.SandboxService_ExecServer) error {
	return errdefs.ToGRPC(s.m.Exec(stream.Context(), req, stream.Send))
}

func (s *server) Upload(stream sandboxv1.SandboxService_UploadServer) error {
	first, err := stream.Recv()
	if err == io.EOF {
		return errdefs.ToGRPC(fmt.Errorf("empty upload: send a header first: %w", errdefs.ErrInvalidArgument))
	}
	if err != nil {
		return err
	}
	next := func() ([]byte, error) {
		msg, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		chunk, ok := msg.GetMsg().(*sandboxv1.UploadRequest_Chunk)
		if !ok {
			return nil, fmt.Errorf("only the first Upload message may be a header: %w", errdefs.ErrInvalidArgument)
		}
		return chunk.Chunk, nil
	}
	resp, err := s.m.Upload(stream.Context(), first.GetHeader(), next)
	if err != nil {
		return errdefs.ToGRPC(err)
	}
	return stream.SendAndClose(resp)
}

func (s *server) Download(req *sandboxv1.DownloadRequest, stream sandboxv1.SandboxService_DownloadServer) error {
	return errdefs.ToGRPC(s.m.Download(stream.Context(), req.GetSandboxId(), req.GetPath(), stream.Send))
}

// UpdateSandboxEgress replaces a sandbox's egress allowlist.
func (s *server) UpdateSandboxEgress(ctx context.Context, req *sandboxv1.UpdateSandboxEgressRequest) (*sandboxv1.Sandbox, error) {
	info, err := s.m.UpdateEgress(ctx, req.GetSandboxId(), req.GetAllow())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return s.sandbox(info), nil
}

// EditFile runs a text-editor command in a sandbox.
func (s *server) EditFile(ctx context.Context, req *sandboxv1.EditFileRequest) (*sandboxv1.EditFileResponse, error) {
	resp, err := s.m.EditFile(ctx, req)
	return resp, errdefs.ToGRPC(err)
}

// ListFiles lists a directory of a sandbox.
func (s *server) ListFiles(ctx context.Context, req *sandboxv1.ListFilesRequest) (*sandboxv1.ListFilesResponse, error) {
	resp, err := s.m.ListFiles(ctx, req)
	return resp, errdefs.ToGRPC(err)
}

var protoStates = map[manager.State]sandboxv1.SandboxState{
	manager.StateRunning: sandboxv1.SandboxState_SANDBOX_STATE_RUNNING,
	manager.StateDead:    sandboxv1.SandboxState_SANDBOX_STATE_DEAD,
	manager.StatePaused:  sandboxv1.SandboxState_SANDBOX_STATE_PAUSED,
}

var protoStarts = map[manager.StartKind]sandboxv1.StartKind{
	manager.StartPool:    sandboxv1.StartKind_START_KIND_POOL,
	manager.StartRestore: sandboxv1.StartKind_START_KIND_RESTORE,
	manager.StartBoot:    sandboxv1.StartKind_START_KIND_BOOT,
}

var protoSnapshotStates = map[snapshot.State]sandboxv1.SnapshotState{
	snapshot.StateDisabled: sandboxv1.SnapshotState_SNAPSHOT_STATE_DISABLED,
	snapshot.StateBuilding: sandboxv1.SnapshotState_SNAPSHOT_STATE_BUILDING,
	snapshot.StateReady:    sandboxv1.SnapshotState_SNAPSHOT_STATE_READY,
	snapshot.StateFailed:   sandboxv1.SnapshotState_SNAPSHOT_STATE_FAILED,
}

func snapshotProto(st snapshot.Status) *sandboxv1.Snapshot {
	out := &sandboxv1.Snapshot{State: protoSnapshotStates[st.State], ImageBytes: st.Bytes, LastError: st.LastError}
	if !st.BuiltAt.IsZero() {
		out.BuiltAt = timestamppb.New(st.BuiltAt)
	}
	return out
}

// sandbox is toProto with the node that owns the sandbox.
func (s *server) sandbox(i manager.Info) *sandboxv1.Sandbox {
	p := toProto(i)
	p.Node = s.node
	return p
}

func toProto(i manager.Info) *sandboxv1.Sandbox {
	var pausedAt *timestamppb.Timestamp
	if !i.PausedAt.IsZero() {
		pausedAt = timestamppb.New(i.PausedAt)
	}
	return &sandboxv1.Sandbox{
		PausedAt:    pausedAt,
		SandboxId:   i.ID,
		Template:    i.Template,
		State:       protoStates[i.State],
		StateReason: i.Reason,
		CreatedAt:   timestamppb.New(i.CreatedAt),
		ExpiresAt:   timestamppb.New(i.ExpiresAt),
		Labels:      i.Labels,
		ColdStart:   i.Start != manager.StartPool,
		Start:       protoStarts[i.Start],
		OomKilled:   i.OOMKilled,
		Limits:      limitsToProto(i.Limits),
		Usage:       usageToProto(i.Usage),
		EgressAllow: i.EgressAllow,
	}
}

func (s *server) ListPools(context.Context, *sandboxv1.ListPoolsRequest) (*sandboxv1.ListPoolsResponse, error) {
	pools := s.m.Pools()
	resp := &sandboxv1.ListPoolsResponse{Pools: make([]*sandboxv1.Pool, len(pools))}
	for i, p := range pools {
		resp.Pools[i] = &sandboxv1.Pool{
			Template: p.Template, Idle: int32(p.Idle), InUse: int32(p.InUse), Booting: int32(p.Booting),
			TargetIdle: int32(p.TargetIdle), MaxTotal: int32(p.MaxTotal),
			Hits: p.Hits, Misses: p.Misses, Failures: p.Failures, LastError: p.LastError,
			Snapshot: snapshotProto(s.m.Snapshot(p.Template)),
			Node:     s.node,
		}
	}
	resp.DefaultTemplate = s.m.Policy().DefaultTemplate
	return resp, nil
}
