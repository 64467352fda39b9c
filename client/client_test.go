package client

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"github.com/sandboxd/sandboxd/runtime/identifiers"
)

// fakeNode is one daemon of a test cluster: it makes node IDs of its own
// address and records the sandbox and node metadata of every call.
type fakeNode struct {
	sandboxv1.UnimplementedSandboxServiceServer
	addr string
	srv  *grpc.Server

	mu      sync.Mutex
	idle    int32
	full    bool // CreateSandbox answers ResourceExhausted
	own     map[string]bool
	calls   []string // "Method id node" per call
	created int
}

func startNode(t *testing.T) *fakeNode {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &fakeNode{addr: l.Addr().String(), srv: grpc.NewServer(), own: map[string]bool{}}
	sandboxv1.RegisterSandboxServiceServer(n.srv, n)
	go n.srv.Serve(l)
	t.Cleanup(n.srv.Stop)
	return n
}

func (n *fakeNode) record(ctx context.Context, method string) {
	md, _ := metadata.FromIncomingContext(ctx)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, method+" "+first(md.Get(SandboxIDKey))+" "+first(md.Get(NodeKey)))
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func (n *fakeNode) CreateSandbox(ctx context.Context, _ *sandboxv1.CreateSandboxRequest) (*sandboxv1.Sandbox, error) {
	n.record(ctx, "Create")
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.full {
		return nil, status.Error(codes.ResourceExhausted, "full")
	}
	id := identifiers.NewNodeID(n.addr)
	n.own[id] = true
	n.created++
	if n.idle > 0 {
		n.idle--
	}
	return &sandboxv1.Sandbox{SandboxId: id, Node: n.addr, CreatedAt: timestamppb.Now()}, nil
}

func (n *fakeNode) ListPools(ctx context.Context, _ *sandboxv1.ListPoolsRequest) (*sandboxv1.ListPoolsResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return &sandboxv1.ListPoolsResponse{DefaultTemplate: "python", Pools: []*sandboxv1.Pool{{Template: "python", Idle: n.idle, InUse: int32(len(n.own)), Node: n.addr}}}, nil
}

func (n *fakeNode) GetSandbox(ctx context.Context, req *sandboxv1.GetSandboxRequest) (*sandboxv1.Sandbox, error) {
	n.record(ctx, "Get")
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.own[req.GetSandboxId()] {
		return nil, status.Error(codes.NotFound, "not here")
	}
	return &sandboxv1.Sandbox{SandboxId: req.GetSandboxId(), Node: n.addr}, nil
}

func (n *fakeNode) ListSandboxes(ctx context.Context, _ *sandboxv1.ListSandboxesRequest) (*sandboxv1.ListSandboxesResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	resp := &sandboxv1.ListSandboxesResponse{}
	for id := range n.own {
		resp.Sandboxes = append(resp.Sandboxes, &sandboxv1.Sandbox{SandboxId: id, Node: n.addr})
	}
	return resp, nil
}

func (n *fakeNode) Upload(stream grpc.ClientStreamingServer[sandboxv1.UploadRequest, sandboxv1.UploadResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	n.record(stream.Context(), "Upload")
	var size int64
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&sandboxv1.UploadResponse{Path: first.GetHeader().GetPath(), Size: size})
		}
		if err != nil {
			return err
		}
		size += int64(len(m.GetChunk()))
	}
}

func (n *fakeNode) Exec(req *sandboxv1.ExecRequest, stream grpc.ServerStreamingServer[sandboxv1.ExecEvent]) error {
	n.record(stream.Context(), "Exec")
	return stream.Send(&sandboxv1.ExecEvent{})
}

func (n *fakeNode) callLog() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.calls...)
}

func newClient(t *testing.T, cfg Config, nodes ...*fakeNode) *Client {
	t.Helper()
	for _, n := range nodes {
		cfg.Addrs = append(cfg.Addrs, n.addr)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestCreatePrefersTheNodeWithMoreIdle guarantees power-of-two placement:
// of two nodes, the one with idle sandboxes of the template gets the
// create every time.
func TestCreatePrefersTheNodeWithMoreIdle(t *testing.T) {
	a, b := startNode(t), startNode(t)
	a.idle = 100
	c := newClient(t, Config{}, a, b)
	for range 20 {
		sb, err := c.CreateSandbox(t.Context(), &sandboxv1.CreateSandboxRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if sb.GetNode() != a.addr {
			t.Fatalf("created on %s, want %s (100 idle against 0)", sb.GetNode(), a.addr)
		}
	}
}

// TestCreateSpreadsWhenPoolsAreEven guarantees that creates do not pile
// onto one node when no node has a warmer pool.
func TestCreateSpreadsWhenPoolsAreEven(t *testing.T) {
	nodes := []*fakeNode{startNode(t), startNode(t), startNode(t)}
	c := newClient(t, Config{}, nodes...)
	for range 60 {
		if _, err := c.CreateSandbox(t.Context(), &sandboxv1.CreateSandboxRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		if n.created > 28 || n.created < 12 {
			t.Errorf("node %s got %d of 60 creates", n.addr, n.created)
		}
	}
}

// TestCreateTriesAnotherNodeWhenOneIsFullOrDown guarantees that a full
// node (ResourceExhausted) or a dead one (Unavailable) does not fail a
// create another node can serve.
func TestCreateTriesAnotherNodeWhenOneIsFullOrDown(t *testing.T) {
	full, dead, ok := startNode(t), startNode(t), startNode(t)
	full.full, full.idle, dead.idle = true, 100, 100
	dead.srv.Stop()
	c := newClient(t, Config{}, full, dead, ok)
	for range 10 {
		sb, err := c.CreateSandbox(t.Context(), &sandboxv1.CreateSandboxRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if sb.GetNode() != ok.addr {
			t.Fatalf("created on %s, want %s", sb.GetNode(), ok.addr)
		}
	}
	ok.full = true
	if _, err := c.CreateSandbox(t.Context(), &sandboxv1.CreateSandboxRequest{}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("every node full or down: %v, want ResourceExhausted", err)
	}
}

// TestPerSandboxCallsReachTheOwner guarantees that every per-sandbox call,
// Upload included (its ID is in its first message only), goes to the node
// in the ID, with x-sandbox-id and x-sandbox-node set for proxies.
func TestPerSandboxCallsReachTheOwner(t *testing.T) {
	a, b := startNode(t), startNode(t)
	c := newClient(t, Config{}, a, b)
	for _, owner := range []*fakeNode{a, b} {
		other := map[*fakeNode]*fakeNode{a: b, b: a}[owner]
		id := identifiers.NewNodeID(owner.addr)
		owner.own[id] = true
		before := len(other.callLog())
		if _, err := c.GetSandbox(t.Context(), &sandboxv1.GetSandboxRequest{SandboxId: id}); err != nil {
			t.Fatal(err)
		}
		up, _ := c.Upload(t.Context())
		if err := up.Send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Header{Header: &sandboxv1.FileHeader{SandboxId: id, Path: "f"}}}); err != nil {
			t.Fatal(err)
		}
		if err := up.Send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Chunk{Chunk: []byte("abc")}}); err != nil {
			t.Fatal(err)
		}
		if resp, err := up.CloseAndRecv(); err != nil || resp.GetSize() != 3 {
			t.Fatalf("upload: %v, %v", resp, err)
		}
		ex, err := c.Exec(t.Context(), &sandboxv1.ExecRequest{SandboxId: id})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ex.Recv(); err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{"Get " + id + " " + owner.addr: true, "Upload " + id + " " + owner.addr: true, "Exec " + id + " " + owner.addr: true}
		for _, call := range owner.callLog() {
			delete(want, call)
		}
		if len(want) > 0 {
			t.Errorf("owner %s did not see %v; it saw %v", owner.addr, want, owner.callLog())
		}
		if got := other.callLog()[before:]; len(got) > 0 {
			t.Errorf("node %s got calls for %s's sandbox: %v", other.addr, owner.addr, got)
		}
	}
}

// TestForgedNodeIsNeverDialled stops a credential leak: an ID naming an
// address outside the cluster is NotFound, and the client never connects
// there (with the tenant's token).
func TestForgedNodeIsNeverDialled(t *testing.T) {
	a, b := startNode(t), startNode(t)
	evil := startNode(t)
	var mu sync.Mutex
	var dialled []string
	c := newClient(t, Config{Token: "secret", OnDial: func(addr string, _ error) {
		mu.Lock()
		defer mu.Unlock()
		dialled = append(dialled, addr)
	}}, a, b)
	id := identifiers.NewNodeID(evil.addr)
	_, err := c.GetSandbox(t.Context(), &sandboxv1.GetSandboxRequest{SandboxId: id})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("forged ID: %v, want NotFound", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, d := range dialled {
		if d == evil.addr {
			t.Fatalf("the client dialled %s, which is not a node of the cluster", d)
		}
	}
	if len(evil.callLog()) > 0 {
		t.Fatalf("the forged node got calls: %v", evil.callLog())
	}
}

// TestDeadNodeAnswersUnavailableFast guarantees that the sandboxes of a
// node that went down fail fast with Unavailable (never another node's
// answer), and that they answer again once it is back.
func TestDeadNodeAnswersUnavailableFast(t *testing.T) {
	a, b := startNode(t), startNode(t)
	c := newClient(t, Config{}, a, b)
	id := identifiers.NewNodeID(a.addr)
	a.own[id] = true
	if _, err := c.GetSandbox(t.Context(), &sandboxv1.GetSandboxRequest{SandboxId: id}); err != nil {
		t.Fatal(err)
	}
	a.srv.Stop()
	start := time.Now()
	_, err := c.GetSandbox(t.Context(), &sandboxv1.GetSandboxRequest{SandboxId: id})
	if status.Code(err) != codes.Unavailable || time.Since(start) > time.Second {
		t.Fatalf("dead node: %v after %v, want Unavailable within 1s", err, time.Since(start))
	}
	if len(b.callLog()) > 0 {
		t.Fatalf("another node was asked: %v", b.callLog())
	}
	// The node comes back on the same address.
	l, err := net.Listen("tcp", a.addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", a.addr, err)
	}
	srv := grpc.NewServer()
	sandboxv1.RegisterSandboxServiceServer(srv, a)
	go srv.Serve(l)
	defer srv.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.GetSandbox(t.Context(), &sandboxv1.GetSandboxRequest{SandboxId: id})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node back, but its sandbox still answers %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestListFansOut guarantees that a list shows every node's sandboxes and
// that a node that cannot answer fails the list, naming it.
func TestListFansOut(t *testing.T) {
	a, b := startNode(t), startNode(t)
	c := newClient(t, Config{}, a, b)
	for _, n := range []*fakeNode{a, b, a} {
		n.own[identifiers.NewNodeID(n.addr)] = true
	}
	resp, err := c.ListSandboxes(t.Context(), &sandboxv1.ListSandboxesRequest{})
	if err != nil || len(resp.GetSandboxes()) != 3 {
		t.Fatalf("list: %v, %v; want 3 sandboxes", resp, err)
	}
	b.srv.Stop()
	_, err = c.ListSandboxes(t.Context(), &sandboxv1.ListSandboxesRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("list with a node down: %v, want Unavailable", err)
	}
	part, err := c.ListSandboxesPartial(t.Context(), &sandboxv1.ListSandboxesRequest{})
	if err == nil || len(part.GetSandboxes()) != 2 {
		t.Fatalf("partial list: %d sandboxes, %v; want a's 2 and an error", len(part.GetSandboxes()), err)
	}
}

// TestPlainIDsAreLocated guarantees that IDs of daemons without
// --node-address still reach their daemon in a cluster.
func TestPlainIDsAreLocated(t *testing.T) {
	a, b := startNode(t), startNode(t)
	c := newClient(t, Config{}, a, b)
	id := identifiers.NewID()
	b.own[id] = true
	sb, err := c.GetSandbox(t.Context(), &sandboxv1.GetSandboxRequest{SandboxId: id})
	if err != nil || sb.GetNode() != b.addr {
		t.Fatalf("plain ID: %v, %v; want it found on %s", sb, err, b.addr)
	}
	if _, err := c.GetSandbox(t.Context(), &sandboxv1.GetSandboxRequest{SandboxId: identifiers.NewID()}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown plain ID: %v, want NotFound", err)
	}
}

// TestParseAddressForms guarantees how addresses are read: paths and
// unix: forms are unix sockets, HOST:PORT and tcp:// are TCP.
func TestParseAddressForms(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Address
	}{
		{"/run/sandboxd/sandboxd.sock", Address{"unix", "/run/sandboxd/sandboxd.sock"}},
		{"unix:///run/x.sock", Address{"unix", "/run/x.sock"}},
		{"unix:/run/x.sock", Address{"unix", "/run/x.sock"}},
		{"unix:rel.sock", Address{"unix", "rel.sock"}},
		{"rel.sock", Address{"unix", "rel.sock"}},
		{"./a:1", Address{"unix", "./a:1"}},
		{"127.0.0.1:7070", Address{"tcp", "127.0.0.1:7070"}},
		{"localhost:7070", Address{"tcp", "localhost:7070"}},
		{"[::1]:7070", Address{"tcp", "[::1]:7070"}},
		{"tcp://10.0.0.1:7070", Address{"tcp", "10.0.0.1:7070"}},
	} {
		if got := ParseAddress(tc.in); got != tc.want {
			t.Errorf("ParseAddress(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// TestLoadOrder checks what placement prefers: idle sandboxes first, then
// fewer in use; a node that did not answer last.
func TestLoadOrder(t *testing.T) {
	for _, tc := range []struct {
		a, b load
		want bool
	}{
		{load{idle: 2}, load{idle: 1}, true},
		{load{idle: 0, inUse: 1}, load{idle: 0, inUse: 5}, true},
		{load{idle: 0, inUse: 5}, load{idle: 0, inUse: 1}, false},
		{load{idle: 0, inUse: 9}, load{idle: -1}, true},
		{load{idle: 1, inUse: 1}, load{idle: 1, inUse: 1}, false},
	} {
		if got := tc.a.better(tc.b); got != tc.want {
			t.Errorf("%+v.better(%+v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
