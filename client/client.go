// Package client is the Go client of sandboxd, for one daemon or a cluster
// of them (one per node, as a Kubernetes DaemonSet runs them).
//
// A Client implements sandboxv1.SandboxServiceClient, so code written for
// one daemon works unchanged on many:
//   - CreateSandbox asks two random nodes for their pools and creates on
//     the one with more idle sandboxes of the template (power of two
//     choices), trying the other nodes in turn when a node is full
//     (ResourceExhausted) or down (Unavailable).
//   - Every per-sandbox call goes straight to the node named in the
//     sandbox's ID (daemons started with --node-address put it there), with
//     the ID in the x-sandbox-id metadata and the node in x-sandbox-node,
//     so that a proxy in between can route it exactly.
//   - ListSandboxes and ListPools ask every node.
//
// A Client only ever dials the nodes it was given (or that its DNS name
// resolves to): an ID naming another address is NotFound, so a forged ID
// cannot make it send credentials elsewhere.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"github.com/sandboxd/sandboxd/runtime/identifiers"
)

// Metadata keys our clients set on calls, for proxies to route by.
const (
	// SandboxIDKey carries the sandbox ID of a per-sandbox call. The daemon
	// refuses a call whose body names another sandbox.
	SandboxIDKey = "x-sandbox-id"
	// NodeKey carries the address of the node a call is for: the one in the
	// sandbox's ID, or the one placement chose for a create. A proxy routes
	// by it, through an allow-list of the cluster's nodes.
	NodeKey = "x-sandbox-node"
)

// Tuning of connections and placement.
const (
	// MaxMessageSize bounds every gRPC message either way: an Exec result
	// with the most figures a policy allows is up to 24 MiB (the daemon's
	// largest message).
	MaxMessageSize = 24 << 20
	// connectTimeout bounds one connection attempt to a node: a node of
	// the cluster answers a SYN within milliseconds, so a second without
	// an answer means it is down, and its calls fail (Unavailable) instead
	// of waiting for the OS's minutes-long TCP timeout.
	connectTimeout = time.Second
	// reconnectMaxDelay caps the back-off between attempts to reach a node
	// that went down, so its sandboxes answer again within about a second
	// of its daemon coming back (gRPC's default grows to two minutes).
	reconnectMaxDelay = time.Second
	// probeTimeout bounds the ListPools calls placement makes: a slow node
	// should lose the choice, not hold up the create.
	probeTimeout = 2 * time.Second
	// dnsRefresh is how long a DNS name's node list is reused; an ID naming
	// a node not in the list forces an earlier refresh (at most once per
	// dnsMinRefresh), so new nodes are found when their IDs show up.
	dnsRefresh     = 30 * time.Second
	dnsMinRefresh  = time.Second
	dnsScheme      = "dns:///"
	maxLocateCache = 4096 // owners of IDs without a node, remembered
)

// Config says how to reach the cluster and authenticate to it.
type Config struct {
	// Addrs are the nodes: each HOST:PORT (TCP), unix:PATH or a socket path;
	// or one dns:///NAME:PORT, whose addresses (A and AAAA records, e.g. of
	// a headless Kubernetes Service) are the nodes, each at PORT.
	Addrs []string
	// Proxy, if set, is the HOST:PORT of a proxy (such as the nginx
	// configuration in deploy/nginx) through which every call goes; each
	// carries the x-sandbox-node of the node it is for.
	Proxy string
	// Token is the tenant's bearer token, sent on every call.
	Token string
	// TLS, if set, secures every connection (nodes or proxy).
	TLS *tls.Config
	// OnDial, if set, is told the outcome of every connection attempt, so
	// a CLI can explain why a node could not be reached.
	OnDial func(addr string, err error)
	// DialOptions are added to every connection's options.
	DialOptions []grpc.DialOption
}

// Client is a client of a sandboxd cluster. It is safe for concurrent use.
type Client struct {
	cfg Config
	// dnsName is the NAME:PORT of a dns:/// address; empty for a list.
	dnsName string

	mu       sync.Mutex
	nodes    []string // the cluster's nodes as they appear in IDs
	resolved time.Time
	conns    map[string]*grpc.ClientConn // by node (by "" for the proxy)
	owners   map[string]string           // node of IDs without one
	closed   bool
}

var _ sandboxv1.SandboxServiceClient = (*Client)(nil)

// New returns a client of the cluster cfg describes. Like grpc.NewClient it
// connects on first use.
func New(cfg Config) (*Client, error) {
	c := &Client{cfg: cfg, conns: map[string]*grpc.ClientConn{}, owners: map[string]string{}}
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("no daemon address")
	}
	for _, a := range cfg.Addrs {
		if name, ok := strings.CutPrefix(a, dnsScheme); ok {
			if len(cfg.Addrs) > 1 {
				return nil, fmt.Errorf("%s: a dns:/// address names the whole cluster; give it alone", a)
			}
			if _, _, err := net.SplitHostPort(name); err != nil {
				return nil, fmt.Errorf("%s: want dns:///NAME:PORT", a)
			}
			c.dnsName = name
			continue
		}
		if a == "" {
			return nil, errors.New("empty daemon address")
		}
		if !slices.Contains(c.nodes, a) {
			c.nodes = append(c.nodes, a)
		}
	}
	if cfg.Proxy != "" && c.dnsName == "" {
		for _, n := range c.nodes {
			if ParseAddress(n).Network != "tcp" {
				return nil, fmt.Errorf("node %s: through a proxy every node is HOST:PORT", n)
			}
		}
	}
	return c, nil
}

// Close closes every connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var errs []error
	for _, cc := range c.conns {
		errs = append(errs, cc.Close())
	}
	c.conns = nil
	return errors.Join(errs...)
}

// Nodes returns the cluster's nodes, resolving a DNS name when its list is
// older than dnsRefresh.
func (c *Client) Nodes(ctx context.Context) ([]string, error) {
	return c.nodeList(ctx, false)
}

func (c *Client) nodeList(ctx context.Context, force bool) ([]string, error) {
	c.mu.Lock()
	name, nodes, age := c.dnsName, c.nodes, time.Since(c.resolved)
	c.mu.Unlock()
	if name == "" || (age < dnsRefresh && !(force && age >= dnsMinRefresh)) {
		return nodes, nil
	}
	host, port, _ := net.SplitHostPort(name)
	addrs, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		if len(nodes) > 0 {
			return nodes, nil // keep the last answer through a DNS hiccup
		}
		return nil, status.Errorf(codes.Unavailable, "resolving %s: %v", host, err)
	}
	fresh := make([]string, 0, len(addrs))
	for _, a := range addrs {
		fresh = append(fresh, net.JoinHostPort(a, port))
	}
	slices.Sort(fresh)
	c.mu.Lock()
	c.nodes, c.resolved = fresh, time.Now()
	c.mu.Unlock()
	return fresh, nil
}

// Address is a daemon address taken apart.
type Address struct {
	Network string // "unix" or "tcp"
	Address string // socket path or HOST:PORT
}

// String returns the address as users write it.
func (a Address) String() string { return a.Address }

// ParseAddress reads a daemon address: "unix:PATH" or "unix://PATH" is a
// unix socket, "tcp://HOST:PORT" is TCP; otherwise anything with a slash is
// a socket path, HOST:PORT with a numeric port is TCP, and the rest is a
// socket path.
func ParseAddress(s string) Address {
	if rest, ok := strings.CutPrefix(s, "unix:"); ok {
		if p, ok := strings.CutPrefix(rest, "//"); ok {
			rest = p
		}
		return Address{"unix", rest}
	}
	if rest, ok := strings.CutPrefix(s, "tcp://"); ok {
		return Address{"tcp", rest}
	}
	if !strings.Contains(s, "/") {
		if _, port, err := net.SplitHostPort(s); err == nil {
			if _, err := strconv.ParseUint(port, 10, 16); err == nil {
				return Address{"tcp", s}
			}
		}
	}
	return Address{"unix", s}
}

// conn returns the connection that reaches node: the proxy's, or the
// node's own, dialled on first use.
func (c *Client) conn(node string) (*grpc.ClientConn, error) {
	key, target := node, node
	if c.cfg.Proxy != "" {
		key, target = "", c.cfg.Proxy
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, status.Error(codes.Canceled, "client closed")
	}
	if cc := c.conns[key]; cc != nil {
		return cc, nil
	}
	cc, err := c.dial(target)
	if err != nil {
		return nil, err
	}
	c.conns[key] = cc
	return cc, nil
}

// dial creates a connection to addr, reporting each attempt to OnDial.
func (c *Client) dial(addr string) (*grpc.ClientConn, error) {
	a := ParseAddress(addr)
	target := "passthrough:///" + a.Address
	if a.Network == "unix" {
		abs, err := filepath.Abs(a.Address)
		if err != nil {
			return nil, err
		}
		a.Address, target = abs, "unix://"+abs
	}
	creds := insecure.NewCredentials()
	if c.cfg.TLS != nil {
		creds = credentials.NewTLS(c.cfg.TLS)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			nc, err := d.DialContext(ctx, a.Network, a.Address)
			if c.cfg.OnDial != nil {
				c.cfg.OnDial(addr, err)
			}
			return nc, err
		}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: reconnectMaxDelay},
			MinConnectTimeout: connectTimeout,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize)),
	}
	if c.cfg.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(c.cfg.Token)))
	}
	cc, err := grpc.NewClient(target, append(opts, c.cfg.DialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("bad daemon address %q: %v", addr, err)
	}
	return cc, nil
}

// bearer sends a tenant's token as `authorization: Bearer TOKEN`. It is
// allowed without TLS, for the unix socket and loopback TCP; off loopback
// the daemon serves only TLS.
type bearer string

// GetRequestMetadata adds the token to a call.
func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false: see bearer.
func (bearer) RequireTransportSecurity() bool { return false }

// to returns node's service client and ctx with the routing metadata: the
// node always, the sandbox ID when id is not empty.
func (c *Client) to(ctx context.Context, node, id string) (sandboxv1.SandboxServiceClient, context.Context, error) {
	cc, err := c.conn(node)
	if err != nil {
		return nil, nil, err
	}
	kv := []string{NodeKey, node}
	if id != "" {
		kv = append(kv, SandboxIDKey, id)
	}
	return sandboxv1.NewSandboxServiceClient(cc), metadata.AppendToOutgoingContext(ctx, kv...), nil
}

// route returns the service client of the node that owns sandbox id and ctx
// with the routing metadata.
func (c *Client) route(ctx context.Context, id string) (sandboxv1.SandboxServiceClient, context.Context, error) {
	node, err := c.owner(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	return c.to(ctx, node, id)
}

// owner finds the node of sandbox id: the one its ID names, if that is a
// node of the cluster; the only node, for a single daemon; else (IDs of
// daemons without --node-address) the node that knows it.
func (c *Client) owner(ctx context.Context, id string) (string, error) {
	nodes, err := c.nodeList(ctx, false)
	if err != nil {
		return "", err
	}
	if len(nodes) == 1 && c.dnsName == "" {
		// One daemon: it answers for every ID, its own or not.
		return nodes[0], nil
	}
	if err := identifiers.ValidateID(id); err != nil {
		return "", status.Error(codes.InvalidArgument, err.Error())
	}
	if node, ok := identifiers.NodeOf(id); ok {
		if !slices.Contains(nodes, node) {
			if nodes, err = c.nodeList(ctx, true); err != nil {
				return "", err
			}
		}
		if !slices.Contains(nodes, node) {
			return "", status.Errorf(codes.NotFound, "sandbox %q belongs to node %s, which is not a node of this cluster (%s)", id, node, strings.Join(nodes, ", "))
		}
		return node, nil
	}
	return c.locate(ctx, id, nodes)
}

// locate asks every node for an ID that names none and remembers which
// one has it.
func (c *Client) locate(ctx context.Context, id string, nodes []string) (string, error) {
	c.mu.Lock()
	node, ok := c.owners[id]
	c.mu.Unlock()
	if ok {
		return node, nil
	}
	type answer struct {
		node string
		err  error
	}
	answers := make(chan answer, len(nodes))
	for _, n := range nodes {
		go func() {
			api, ctx, err := c.to(ctx, n, id)
			if err == nil {
				_, err = api.GetSandbox(ctx, &sandboxv1.GetSandboxRequest{SandboxId: id})
			}
			answers <- answer{n, err}
		}()
	}
	var errs []error
	for range nodes {
		a := <-answers
		if a.err == nil {
			c.mu.Lock()
			if len(c.owners) >= maxLocateCache {
				clear(c.owners)
			}
			c.owners[id] = a.node
			c.mu.Unlock()
			return a.node, nil
		}
		if status.Code(a.err) != codes.NotFound {
			errs = append(errs, fmt.Errorf("node %s: %w", a.node, a.err))
		}
	}
	if len(errs) > 0 {
		return "", status.Errorf(codes.Unavailable, "sandbox %q: no node has it, and some could not be asked: %v", id, errors.Join(errs...))
	}
	return "", status.Errorf(codes.NotFound, "sandbox %q not found on any node", id)
}
