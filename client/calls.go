package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// CreateSandbox creates a sandbox on the node placement picks: of two
// random nodes, the one with more idle sandboxes of the template; when
// that node is full or down, the others in turn.
func (c *Client) CreateSandbox(ctx context.Context, in *sandboxv1.CreateSandboxRequest, opts ...grpc.CallOption) (*sandboxv1.Sandbox, error) {
	nodes, err := c.nodeList(ctx, false)
	if err != nil {
		return nil, err
	}
	if len(nodes) == 0 {
		return nil, status.Error(codes.Unavailable, "the cluster has no nodes")
	}
	var errs []string
	for _, node := range c.placement(ctx, nodes, in.GetTemplate()) {
		api, ctx, err := c.to(ctx, node, "")
		if err != nil {
			return nil, err
		}
		sb, err := api.CreateSandbox(ctx, in, opts...)
		switch status.Code(err) {
		case codes.OK:
			return sb, nil
		case codes.ResourceExhausted, codes.Unavailable:
			if ctx.Err() != nil {
				return nil, err
			}
			errs = append(errs, fmt.Sprintf("%s: %s", node, status.Convert(err).Message()))
		default:
			return nil, err
		}
	}
	if len(nodes) == 1 {
		return nil, status.Error(codes.Unavailable, errs[0])
	}
	return nil, status.Errorf(codes.ResourceExhausted, "no node could create the sandbox: %s", strings.Join(errs, "; "))
}

// placement orders nodes for a create of template: the better of two
// random nodes (power of two choices), then the other, then the rest at
// random. Better is more idle sandboxes of the template, then, on a tie
// (both pools empty, or both full), fewer of its sandboxes in use. A node
// whose pools could not be read within probeTimeout loses to one that
// answered.
func (c *Client) placement(ctx context.Context, nodes []string, template string) []string {
	order := slices.Clone(nodes)
	rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	if len(order) < 2 {
		return order
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var loads [2]load
	var wg sync.WaitGroup
	for i := range loads {
		wg.Go(func() {
			loads[i] = load{idle: -1}
			api, pctx, err := c.to(pctx, order[i], "")
			if err != nil {
				return
			}
			if resp, err := api.ListPools(pctx, &sandboxv1.ListPoolsRequest{}); err == nil {
				loads[i] = loadOf(resp, template)
			}
		})
	}
	wg.Wait()
	if loads[1].better(loads[0]) {
		order[0], order[1] = order[1], order[0]
	}
	return order
}

// load is what placement compares of a node: its pool of the template.
type load struct {
	idle  int // -1: unknown (the node did not answer)
	inUse int
}

// better reports whether l should get a create before o.
func (l load) better(o load) bool {
	if l.idle != o.idle {
		return l.idle > o.idle
	}
	return l.inUse < o.inUse
}

// loadOf returns the pool of template ("" for the default) in a node's
// pools; a template without a pool there has no idle sandboxes.
func loadOf(resp *sandboxv1.ListPoolsResponse, template string) load {
	if template == "" {
		template = resp.GetDefaultTemplate()
	}
	for _, p := range resp.GetPools() {
		if p.GetTemplate() == template {
			return load{idle: int(p.GetIdle()), inUse: int(p.GetInUse())}
		}
	}
	return load{}
}

// GetSandbox asks the sandbox's node.
func (c *Client) GetSandbox(ctx context.Context, in *sandboxv1.GetSandboxRequest, opts ...grpc.CallOption) (*sandboxv1.Sandbox, error) {
	api, ctx, err := c.route(ctx, in.GetSandboxId())
	if err != nil {
		return nil, err
	}
	return api.GetSandbox(ctx, in, opts...)
}

// DestroySandbox asks the sandbox's node.
func (c *Client) DestroySandbox(ctx context.Context, in *sandboxv1.DestroySandboxRequest, opts ...grpc.CallOption) (*sandboxv1.DestroySandboxResponse, error) {
	api, ctx, err := c.route(ctx, in.GetSandboxId())
	if err != nil {
		return nil, err
	}
	return api.DestroySandbox(ctx, in, opts...)
}

// PauseSandbox asks the sandbox's node.
func (c *Client) PauseSandbox(ctx context.Context, in *sandboxv1.PauseSandboxRequest, opts ...grpc.CallOption) (*sandboxv1.Sandbox, error) {
	api, ctx, err := c.route(ctx, in.GetSandboxId())
	if err != nil {
		return nil, err
	}
	return api.PauseSandbox(ctx, in, opts...)
}

// ResumeSandbox asks the sandbox's node.
func (c *Client) ResumeSandbox(ctx context.Context, in *sandboxv1.ResumeSandboxRequest, opts ...grpc.CallOption) (*sandboxv1.Sandbox, error) {
	api, ctx, err := c.route(ctx, in.GetSandboxId())
	if err != nil {
		return nil, err
	}
	return api.ResumeSandbox(ctx, in, opts...)
}

// EditFile asks the sandbox's node.
func (c *Client) EditFile(ctx context.Context, in *sandboxv1.EditFileRequest, opts ...grpc.CallOption) (*sandboxv1.EditFileResponse, error) {
	api, ctx, err := c.route(ctx, in.GetSandboxId())
	if err != nil {
		return nil, err
	}
	return api.EditFile(ctx, in, opts...)
}

// ListFiles asks the sandbox's node.
func (c *Client) ListFiles(ctx context.Context, in *sandboxv1.ListFilesRequest, opts ...grpc.CallOption) (*sandboxv1.ListFilesResponse, error) {
	api, ctx, err := c.route(ctx, in.GetSandboxId())
	if err != nil {
		return nil, err
	}
	return api.ListFiles(ctx, in, opts...)
}

// UpdateSandboxEgress asks the sandbox's node.
func (c *Client) UpdateSandboxEgress(ctx context.Context, in *sandboxv1.UpdateSandboxEgressRequest, opts ...grpc.CallOption) (*sandboxv1.Sandbox, error) {
	api, ctx, err := c.route(ctx, in.GetSandboxId())
	if err != nil {
		return nil, err
	}
	return api.UpdateSandboxEgress(ctx, in, opts...)
}

// Exec runs on the sandbox's node.
func (c *Client) Exec(ctx context.Context, in *sandboxv1.ExecRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[sandboxv1.ExecEvent], error) {
	api, ctx, err := c.route(ctx, in.GetSandboxId())
	if err != nil {
		return nil, err
	}
	return api.Exec(ctx, in, opts...)
}

// Download reads from the sandbox's node.
func (c *Client) Download(ctx context.Context, in *sandboxv1.DownloadRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[sandboxv1.DownloadResponse], error) {
	api, ctx, err := c.route(ctx, in.GetSandboxId())
	if err != nil {
		return nil, err
	}
	return api.Download(ctx, in, opts...)
}

// Upload returns a stream that opens on its first Send, at the node of the
// sandbox its header names: the ID travels only in the first message.
func (c *Client) Upload(ctx context.Context, opts ...grpc.CallOption) (grpc.ClientStreamingClient[sandboxv1.UploadRequest, sandboxv1.UploadResponse], error) {
	return &upload{c: c, ctx: ctx, opts: opts}, nil
}

// upload is an Upload stream that is routed by its first message.
type upload struct {
	c      *Client
	ctx    context.Context
	opts   []grpc.CallOption
	stream grpc.ClientStreamingClient[sandboxv1.UploadRequest, sandboxv1.UploadResponse]
}

var errNoHeader = status.Error(codes.InvalidArgument, "the first message of an Upload must be its header")

func (u *upload) Send(m *sandboxv1.UploadRequest) error {
	if u.stream == nil {
		h := m.GetHeader()
		if h == nil {
			return errNoHeader
		}
		api, ctx, err := u.c.route(u.ctx, h.GetSandboxId())
		if err != nil {
			return err
		}
		if u.stream, err = api.Upload(ctx, u.opts...); err != nil {
			return err
		}
	}
	return u.stream.Send(m)
}

func (u *upload) CloseAndRecv() (*sandboxv1.UploadResponse, error) {
	if u.stream == nil {
		return nil, errNoHeader
	}
	return u.stream.CloseAndRecv()
}

func (u *upload) Header() (metadata.MD, error) {
	if u.stream == nil {
		return nil, errNoHeader
	}
	return u.stream.Header()
}

func (u *upload) Trailer() metadata.MD {
	if u.stream == nil {
		return nil
	}
	return u.stream.Trailer()
}

func (u *upload) CloseSend() error {
	if u.stream == nil {
		return nil
	}
	return u.stream.CloseSend()
}

func (u *upload) Context() context.Context {
	if u.stream == nil {
		return u.ctx
	}
	return u.stream.Context()
}

func (u *upload) SendMsg(m any) error {
	req, ok := m.(*sandboxv1.UploadRequest)
	if !ok {
		return status.Errorf(codes.Internal, "Upload sends UploadRequest, not %T", m)
	}
	return u.Send(req)
}

func (u *upload) RecvMsg(m any) error {
	if u.stream == nil {
		return errNoHeader
	}
	return u.stream.RecvMsg(m)
}

// ListSandboxes asks every node and merges the answers, oldest first. If a
// node cannot answer, the call fails naming it (ListSandboxesPartial
// returns what the others said).
func (c *Client) ListSandboxes(ctx context.Context, in *sandboxv1.ListSandboxesRequest, opts ...grpc.CallOption) (*sandboxv1.ListSandboxesResponse, error) {
	resp, err := c.ListSandboxesPartial(ctx, in, opts...)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// ListSandboxesPartial is ListSandboxes that returns the sandboxes of the
// nodes that answered along with the error of those that did not.
func (c *Client) ListSandboxesPartial(ctx context.Context, in *sandboxv1.ListSandboxesRequest, opts ...grpc.CallOption) (*sandboxv1.ListSandboxesResponse, error) {
	all := &sandboxv1.ListSandboxesResponse{}
	err := c.fanOut(ctx, func(ctx context.Context, api sandboxv1.SandboxServiceClient, add func(func())) error {
		resp, err := api.ListSandboxes(ctx, in, opts...)
		if err == nil {
			add(func() { all.Sandboxes = append(all.Sandboxes, resp.GetSandboxes()...) })
		}
		return err
	})
	slices.SortStableFunc(all.Sandboxes, func(a, b *sandboxv1.Sandbox) int {
		if c := a.GetCreatedAt().AsTime().Compare(b.GetCreatedAt().AsTime()); c != 0 {
			return c
		}
		return strings.Compare(a.GetSandboxId(), b.GetSandboxId())
	})
	return all, err
}

// ListPools asks every node; each pool names its node (Pool.node), and
// default_template is the first node's.
func (c *Client) ListPools(ctx context.Context, in *sandboxv1.ListPoolsRequest, opts ...grpc.CallOption) (*sandboxv1.ListPoolsResponse, error) {
	all := &sandboxv1.ListPoolsResponse{}
	err := c.fanOut(ctx, func(ctx context.Context, api sandboxv1.SandboxServiceClient, add func(func())) error {
		resp, err := api.ListPools(ctx, in, opts...)
		if err == nil {
			add(func() {
				all.Pools = append(all.Pools, resp.GetPools()...)
				if all.DefaultTemplate == "" {
					all.DefaultTemplate = resp.GetDefaultTemplate()
				}
			})
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(all.Pools, func(a, b *sandboxv1.Pool) int {
		if c := strings.Compare(a.GetTemplate(), b.GetTemplate()); c != 0 {
			return c
		}
		return strings.Compare(a.GetNode(), b.GetNode())
	})
	return all, nil
}

// fanOut runs call on every node at once; add applies a result under a
// lock. With one node its error is returned as it is; with more, the error
// names every node that failed and has the code of the first of them.
func (c *Client) fanOut(ctx context.Context, call func(context.Context, sandboxv1.SandboxServiceClient, func(func())) error) error {
	nodes, err := c.nodeList(ctx, false)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	add := func(f func()) {
		mu.Lock()
		defer mu.Unlock()
		f()
	}
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			api, ctx, err := c.to(ctx, n, "")
			if err == nil {
				err = call(ctx, api, add)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if len(nodes) == 1 {
		return errs[0]
	}
	var msgs []string
	code := codes.OK
	for i, e := range errs {
		if e != nil {
			if code == codes.OK {
				code = status.Code(e)
			}
			msgs = append(msgs, fmt.Sprintf("node %s: %s", nodes[i], status.Convert(e).Message()))
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return status.Error(code, strings.Join(msgs, "; "))
}
