package mcp

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// fakeDaemon is a SandboxService that keeps sandboxes as records and
// answers each Exec with what exec returns, so that the tests can drive
// every outcome without gVisor.
type fakeDaemon struct {
	sandboxv1.UnimplementedSandboxServiceServer

	mu        sync.Mutex
	creates   int
	live      map[string]bool // sandbox ID -> still running
	destroyed []string
	execs     []*sandboxv1.ExecRequest
	files     map[string][]byte // "ID:path" -> content

	// createDelay slows CreateSandbox, to widen the window for races.
	createDelay time.Duration
	// exec answers an Exec: output events then a result, or an error.
	exec func(context.Context, *sandboxv1.ExecRequest) ([]*sandboxv1.ExecEvent, error)
	// editErr, when set, is EditFile's answer.
	editErr error
}

// startFake serves a fakeDaemon in memory and returns it with a client.
func startFake(t *testing.T) (*fakeDaemon, sandboxv1.SandboxServiceClient) {
	t.Helper()
	f := &fakeDaemon{live: map[string]bool{}, files: map[string][]byte{}}
	f.exec = func(_ context.Context, req *sandboxv1.ExecRequest) ([]*sandboxv1.ExecEvent, error) {
		return []*sandboxv1.ExecEvent{stdout(req.GetCode() + "\n"), result(&sandboxv1.ExecResult{Status: sandboxv1.ExecStatus_EXEC_STATUS_OK})}, nil
	}
	ln := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	sandboxv1.RegisterSandboxServiceServer(srv, f)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient("passthrough:///fake",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return f, sandboxv1.NewSandboxServiceClient(cc)
}

// stdout is an Exec event of output on stdout.
func stdout(s string) *sandboxv1.ExecEvent {
	return &sandboxv1.ExecEvent{Event: &sandboxv1.ExecEvent_Stdout{Stdout: []byte(s)}}
}

// stderr is an Exec event of output on stderr.
func stderr(s string) *sandboxv1.ExecEvent {
	return &sandboxv1.ExecEvent{Event: &sandboxv1.ExecEvent_Stderr{Stderr: []byte(s)}}
}

// result is the last Exec event.
func result(r *sandboxv1.ExecResult) *sandboxv1.ExecEvent {
	return &sandboxv1.ExecEvent{Event: &sandboxv1.ExecEvent_Result{Result: r}}
}

// CreateSandbox makes a running sandbox sb-N, after createDelay.
func (f *fakeDaemon) CreateSandbox(ctx context.Context, _ *sandboxv1.CreateSandboxRequest) (*sandboxv1.Sandbox, error) {
	time.Sleep(f.createDelay)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates++
	id := fmt.Sprintf("sb-%d", f.creates)
	f.live[id] = true
	return &sandboxv1.Sandbox{SandboxId: id, State: sandboxv1.SandboxState_SANDBOX_STATE_RUNNING, Start: sandboxv1.StartKind_START_KIND_POOL}, nil
}

// GetSandbox describes a sandbox: running, dead, or not found.
func (f *fakeDaemon) GetSandbox(_ context.Context, req *sandboxv1.GetSandboxRequest) (*sandboxv1.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	running, ok := f.live[req.GetSandboxId()]
	switch {
	case !ok:
		return nil, status.Errorf(codes.NotFound, "sandbox %q not found", req.GetSandboxId())
	case !running:
		return &sandboxv1.Sandbox{SandboxId: req.GetSandboxId(), State: sandboxv1.SandboxState_SANDBOX_STATE_DEAD, StateReason: "out of memory"}, nil
	}
	return &sandboxv1.Sandbox{SandboxId: req.GetSandboxId(), State: sandboxv1.SandboxState_SANDBOX_STATE_RUNNING}, nil
}

// DestroySandbox forgets a sandbox; an unknown one is no error.
func (f *fakeDaemon) DestroySandbox(_ context.Context, req *sandboxv1.DestroySandboxRequest) (*sandboxv1.DestroySandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.live[req.GetSandboxId()]; ok {
		delete(f.live, req.GetSandboxId())
		f.destroyed = append(f.destroyed, req.GetSandboxId())
	}
	return &sandboxv1.DestroySandboxResponse{}, nil
}

// check fails a call on a sandbox that is not live, as the daemon does.
func (f *fakeDaemon) check(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	running, ok := f.live[id]
	switch {
	case !ok:
		return status.Errorf(codes.NotFound, "sandbox %q not found", id)
	case !running:
		return status.Errorf(codes.FailedPrecondition, "sandbox %q is dead (out of memory): destroy it and create a new one", id)
	}
	return nil
}

// Exec records the request and sends what f.exec answers.
func (f *fakeDaemon) Exec(req *sandboxv1.ExecRequest, stream sandboxv1.SandboxService_ExecServer) error {
	if err := f.check(req.GetSandboxId()); err != nil {
		return err
	}
	f.mu.Lock()
	f.execs = append(f.execs, req)
	exec := f.exec
	f.mu.Unlock()
	events, err := exec(stream.Context(), req)
	if err != nil {
		return err
	}
	for _, ev := range events {
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
	return nil
}

// Upload keeps the file in f.files.
func (f *fakeDaemon) Upload(stream sandboxv1.SandboxService_UploadServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hdr := first.GetHeader()
	if err := f.check(hdr.GetSandboxId()); err != nil {
		return err
	}
	var data []byte
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		data = append(data, msg.GetChunk()...)
	}
	path := absPath(hdr.GetPath())
	f.mu.Lock()
	f.files[hdr.GetSandboxId()+":"+path] = data
	f.mu.Unlock()
	return stream.SendAndClose(&sandboxv1.UploadResponse{Path: path, Size: int64(len(data))})
}

// Download sends a file of f.files in 64 KiB chunks.
func (f *fakeDaemon) Download(req *sandboxv1.DownloadRequest, stream sandboxv1.SandboxService_DownloadServer) error {
	if err := f.check(req.GetSandboxId()); err != nil {
		return err
	}
	path := absPath(req.GetPath())
	f.mu.Lock()
	data, ok := f.files[req.GetSandboxId()+":"+path]
	f.mu.Unlock()
	if !ok {
		return status.Errorf(codes.NotFound, "%s: no such file", path)
	}
	if err := stream.Send(&sandboxv1.DownloadResponse{Msg: &sandboxv1.DownloadResponse_Info{Info: &sandboxv1.FileInfo{Path: path, Size: int64(len(data))}}}); err != nil {
		return err
	}
	for len(data) > 0 {
		n := min(len(data), 64<<10)
		if err := stream.Send(&sandboxv1.DownloadResponse{Msg: &sandboxv1.DownloadResponse_Chunk{Chunk: data[:n]}}); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// EditFile answers editErr, or names the command and the path.
func (f *fakeDaemon) EditFile(_ context.Context, req *sandboxv1.EditFileRequest) (*sandboxv1.EditFileResponse, error) {
	if err := f.check(req.GetSandboxId()); err != nil {
		return nil, err
	}
	if f.editErr != nil {
		return nil, f.editErr
	}
	return &sandboxv1.EditFileResponse{Content: fmt.Sprintf("%v %s", req.GetCommand(), absPath(req.GetPath()))}, nil
}

// ListFiles lists a directory and a file in it, whatever the path.
func (f *fakeDaemon) ListFiles(_ context.Context, req *sandboxv1.ListFilesRequest) (*sandboxv1.ListFilesResponse, error) {
	if err := f.check(req.GetSandboxId()); err != nil {
		return nil, err
	}
	return &sandboxv1.ListFilesResponse{Entries: []*sandboxv1.FileEntry{
		{Path: "/workspace/data", Mode: 0o755, IsDir: true},
		{Path: "/workspace/data/a.csv", Mode: 0o644, Size: 1234},
	}}, nil
}

// onlySandbox is the one sandbox the fake holds.
func (f *fakeDaemon) onlySandbox() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id := range f.live {
		return id
	}
	return ""
}

// file is the content of path in sandbox id.
func (f *fakeDaemon) file(id, path string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.files[id+":"+path]
}

// absPath resolves a sandbox path as the daemon does, for the fake's files.
func absPath(p string) string {
	if strings.HasPrefix(p, "/") {
		return p
	}
	return "/workspace/" + p
}

// sandboxesUsed lists the sandboxes that Execs ran in, in order.
func (f *fakeDaemon) sandboxesUsed() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for _, r := range f.execs {
		ids = append(ids, r.GetSandboxId())
	}
	return ids
}

// waitDestroyed waits until sandbox id is destroyed, or fails the test.
func (f *fakeDaemon) waitDestroyed(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		_, live := f.live[id]
		f.mu.Unlock()
		if !live {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox %s not destroyed", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// newTestServer returns a Server over the fake daemon, with its notes
// logged to the test; at cleanup, after the sessions' clients close, it
// destroys the sandboxes left.
func newTestServer(t *testing.T, client sandboxv1.SandboxServiceClient) *Server {
	s := New(Config{
		Client:   client,
		Create:   &sandboxv1.CreateSandboxRequest{},
		Describe: func(err error) string { return status.Convert(err).Message() },
		Note:     func(msg string) { t.Log(msg) },
	})
	t.Cleanup(s.sandboxes.closeAll)
	return s
}

// connect opens an MCP session of a Go SDK client to s, in memory.
func connect(t *testing.T, s *Server) *mcpsdk.ClientSession {
	t.Helper()
	ct, st := mcpsdk.NewInMemoryTransports()
	if _, err := s.mcp.Connect(context.Background(), st, nil); err != nil {
		t.Fatal(err)
	}
	cs, err := mcpsdk.NewClient(&mcpsdk.Implementation{Name: "test"}, nil).Connect(context.Background(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// call calls a tool and returns its result's text content and whether it
// is an error result; a protocol error fails the test.
func call(t *testing.T, cs *mcpsdk.ClientSession, tool string, args map[string]any) (string, bool) {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcpsdk.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	return text(res), res.IsError
}

// text joins the text contents of res.
func text(res *mcpsdk.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcpsdk.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}
