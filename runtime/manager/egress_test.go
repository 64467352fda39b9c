package manager

// These tests run the daemon's egress loop (egress.go) against a fake
// agent on an in-memory gRPC connection: the test plays the agent's proxy
// (it announces connections and is the sandbox's end of each relay) and
// the destinations are TCP servers on loopback.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/sandboxd/sandboxd/policy"
	agentv1 "github.com/sandboxd/sandboxd/proto/agent/v1"
	"github.com/sandboxd/sandboxd/runtime/egress"
	"github.com/sandboxd/sandboxd/runtime/errdefs"
	"github.com/sandboxd/sandboxd/runtime/identifiers"
	"github.com/sandboxd/sandboxd/runtime/tenant"
)

// egressTestWait bounds every wait of these tests.
const egressTestWait = 10 * time.Second

// fakeAgent serves EgressAccept and EgressRelay as the agent does: the
// test announces connections with announce and gets each relay the daemon
// opens from relays.
type fakeAgent struct {
	agentv1.UnimplementedAgentServiceServer
	announcements chan *agentv1.EgressConnection
	relays        chan *fakeRelay
	exited        chan struct{}
	client        agentv1.AgentServiceClient
}

// fakeRelay is the agent's end of one EgressRelay: the daemon's first
// frame, and the stream until the test calls end.
type fakeRelay struct {
	first  *agentv1.EgressFrame
	stream agentv1.AgentService_EgressRelayServer
	done   chan struct{}
	once   sync.Once
}

// end ends the relay's stream, as the agent's handler returning does.
func (r *fakeRelay) end() { r.once.Do(func() { close(r.done) }) }

func (a *fakeAgent) Agent() agentv1.AgentServiceClient { return a.client }
func (a *fakeAgent) Exited() <-chan struct{}           { return a.exited }

func (a *fakeAgent) EgressAccept(_ *agentv1.EgressAcceptRequest, stream grpc.ServerStreamingServer[agentv1.EgressConnection]) error {
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	for {
		select {
		case c := <-a.announcements:
			if err := stream.Send(c); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

func (a *fakeAgent) EgressRelay(stream grpc.BidiStreamingServer[agentv1.EgressFrame, agentv1.EgressFrame]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	r := &fakeRelay{first: first, stream: stream, done: make(chan struct{})}
	a.relays <- r
	select {
	case <-r.done:
	case <-stream.Context().Done():
	}
	return nil
}

// startFakeAgent serves a fake agent on an in-memory connection.
func startFakeAgent(t *testing.T) *fakeAgent {
	t.Helper()
	a := &fakeAgent{announcements: make(chan *agentv1.EgressConnection), relays: make(chan *fakeRelay, 16), exited: make(chan struct{})}
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	agentv1.RegisterAgentServiceServer(srv, a)
	go srv.Serve(lis)
	cc, err := grpc.NewClient("passthrough:///agent", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	a.client = agentv1.NewAgentServiceClient(cc)
	t.Cleanup(func() { cc.Close(); srv.Stop() })
	return a
}

// announce announces a connection to host:port, as the proxy does when a
// client names its destination.
func (a *fakeAgent) announce(t *testing.T, id uint64, host string, port uint32) {
	t.Helper()
	select {
	case a.announcements <- &agentv1.EgressConnection{Id: id, Host: host, Port: port, Method: "CONNECT"}:
	case <-time.After(egressTestWait):
		t.Fatal("the daemon does not take announcements")
	}
}

// relay returns the next relay the daemon opened, checking its verdict.
func (a *fakeAgent) relay(t *testing.T, id uint64, allowed bool, reason string) *fakeRelay {
	t.Helper()
	select {
	case r := <-a.relays:
		t.Cleanup(r.end)
		if f := r.first; f.GetId() != id || f.GetAllowed() != allowed || !strings.Contains(f.GetReason(), reason) {
			t.Fatalf("verdict %v, want id %d, allowed %v, a reason with %q", f, id, allowed, reason)
		}
		return r
	case <-time.After(egressTestWait):
		t.Fatalf("no verdict for connection %d", id)
		return nil
	}
}

// exchange sends data and eof as the sandbox's client, then reads what the
// daemon relays back until its eof or the stream's end.
func (r *fakeRelay) exchange(t *testing.T, data []byte) ([]byte, error) {
	t.Helper()
	if err := r.stream.Send(&agentv1.EgressFrame{Data: data}); err != nil {
		t.Fatal(err)
	}
	if err := r.stream.Send(&agentv1.EgressFrame{Eof: true}); err != nil {
		t.Fatal(err)
	}
	return r.drain()
}

// drain reads what the daemon relays until its eof or the stream's end.
func (r *fakeRelay) drain() ([]byte, error) {
	var got []byte
	for {
		f, err := r.stream.Recv()
		if err != nil {
			return got, err
		}
		got = append(got, f.GetData()...)
		if f.GetEof() {
			return got, nil
		}
	}
}

// recorded are the egress measurements and audit events of a manager.
type recorded struct {
	nopMetrics
	mu               sync.Mutex
	allowed, refused int
	up, down         int64
	// events receives the audit events.
	events chan EgressEvent
}

func (r *recorded) EgressDecided(_ string, allowed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if allowed {
		r.allowed++
	} else {
		r.refused++
	}
}

func (r *recorded) EgressRelayed(_ string, up, down int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.up += up
	r.down += down
}

func (r *recorded) audit(ev EgressEvent) { r.events <- ev }

// nextEvent returns the next audit event.
func (r *recorded) nextEvent(t *testing.T) EgressEvent {
	t.Helper()
	select {
	case ev := <-r.events:
		return ev
	case <-time.After(egressTestWait):
		t.Fatal("no audit event")
		return EgressEvent{}
	}
}

// hostsResolver resolves names from a fixed table, as /etc/hosts would.
type hostsResolver map[string][]netip.Addr

func (h hostsResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := h[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// egressManager returns a manager with the dialer, metrics and audit of a
// test, a sandbox entry of template web with egress allow and the given
// caps, registered and running on agent, and its recordings. The sandbox's
// loop stops at cleanup.
func egressManager(t *testing.T, agent *fakeAgent, allow []string, maxBytes int64, maxConns int) (*Manager, *entry, *recorded) {
	t.Helper()
	rec := &recorded{events: make(chan EgressEvent, 64)}
	m := &Manager{
		cfg:       Config{StateDir: t.TempDir(), EgressAudit: rec.audit},
		log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		metrics:   rec,
		sandboxes: map[string]*entry{},
		dialer: egress.Dialer{
			Resolver: hostsResolver{"rebind.test": {netip.MustParseAddr("127.0.0.3")}},
			Own:      func() ([]netip.Addr, error) { return nil, nil },
		},
	}
	list, err := egress.ParseList(allow)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &policy.Template{Name: "web", Network: policy.NetworkAllowlist, Egress: policy.Egress{Allow: list},
		Limits: policy.Limits{EgressBytes: maxBytes, EgressConnections: maxConns}, Lifetime: time.Hour}
	eg, err := egressFor(tmpl, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &entry{id: identifiers.NewNodeID(""), tenant: tenant.Local, tmpl: tmpl, state: StateRunning, egress: eg, createdAt: now()}
	e.recordGone = true // no state directory to write records into
	m.sandboxes[e.id] = e
	m.startEgress(e, agent)
	t.Cleanup(func() { m.stopEgress(e) })
	return m, e, rec
}

// upperServer is a destination on loopback that reads a request until
// eof and answers it in upper case, then closes; it returns its port.
func upperServer(t *testing.T) uint32 {
	t.Helper()
	return server(t, func(c net.Conn) {
		data, _ := io.ReadAll(c)
		c.Write(bytes.ToUpper(data))
	})
}

// server serves each connection of a loopback listener with serve, then
// closes it, and returns its port.
func server(t *testing.T, serve func(net.Conn)) uint32 {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return uint32(lis.Addr().(*net.TCPAddr).Port)
}

// port formats a port for an allowlist entry.
func port(p uint32) string { return strconv.Itoa(int(p)) }

// TestEgressRelaysAnAllowedConnection guarantees the allowed path: the
// verdict names the entry, the bytes go both ways with half-close, and the
// connection is counted, its bytes charged to the budget and audited.
func TestEgressRelaysAnAllowedConnection(t *testing.T) {
	agent := startFakeAgent(t)
	p := upperServer(t)
	_, e, rec := egressManager(t, agent, []string{"127.0.0.1/32:" + port(p)}, 1<<20, 4)
	agent.announce(t, 1, "127.0.0.1", p)
	r := agent.relay(t, 1, true, `allowed by "127.0.0.1/32:`+port(p)+`"`)
	got, err := r.exchange(t, []byte("hello egress"))
	if err != nil || string(got) != "HELLO EGRESS" {
		t.Fatalf("relayed back %q, %v; want HELLO EGRESS", got, err)
	}
	r.end()
	ev := rec.nextEvent(t)
	if !ev.Allowed || ev.Host != "127.0.0.1" || ev.Addr != "127.0.0.1:"+port(p) || ev.Up != 12 || ev.Down != 12 || ev.Err != "" ||
		ev.Sandbox != e.id || ev.Tenant != tenant.Local || ev.Template != "web" {
		t.Fatalf("audit event %+v", ev)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.allowed != 1 || rec.refused != 0 || rec.up != 12 || rec.down != 12 {
		t.Errorf("counted %d allowed, %d refused, %d up, %d down; want 1, 0, 12, 12", rec.allowed, rec.refused, rec.up, rec.down)
	}
	if used := e.egress.budget.Used(); used != 24 {
		t.Errorf("budget used %d, want 24", used)
	}
}

// TestEgressRefusalsCarryTheReason guarantees that a refused connection is
// never dialed and that its client learns why: an address no CIDR entry
// holds, a listed name that resolves to a refused address (DNS
// rebinding), a port the entry does not list, a port out of range, a host
// that is no host name, a name that does not resolve; and that an allowed
// destination that does not answer is refused saying so.
func TestEgressRefusalsCarryTheReason(t *testing.T) {
	agent := startFakeAgent(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := uint32(lis.Addr().(*net.TCPAddr).Port)
	lis.Close()
	_, _, rec := egressManager(t, agent, []string{"rebind.test:80", "example.test:443", "127.0.0.1/32:" + port(closed)}, 1<<20, 4)
	for i, tc := range []struct {
		host   string
		port   uint32
		reason string
	}{
		{"10.0.0.1", 80, "no CIDR entry holds 10.0.0.1"},
		{"REBIND.test.", 80, "DNS rebinding"},
		{"example.test", 80, "allowed on port 443 only"},
		{"example.test", 70000, "port 70000 is not a TCP port"},
		{strings.Repeat("x", 4000), 443, "longer than a DNS name"},
		{"example.test", 443, "resolving example.test failed"},
		{"127.0.0.1", closed, "connection refused"},
	} {
		id := uint64(i + 1)
		agent.announce(t, id, tc.host, tc.port)
		agent.relay(t, id, false, tc.reason).end()
		if ev := rec.nextEvent(t); ev.Allowed || !strings.Contains(ev.Reason, tc.reason) || len(ev.Host) > 400 {
			t.Errorf("%s:%d: audit event %+v, want refused with %q and a clipped host", tc.host[:min(len(tc.host), 20)], tc.port, ev, tc.reason)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.refused != 7 || rec.allowed != 0 {
		t.Errorf("counted %d refused, %d allowed; want 7, 0", rec.refused, rec.allowed)
	}
}

// TestEgressUpdateAppliesToNewConnections guarantees UpdateEgress: a list
// within the template's replaces the one in force for the connections
// opened afterwards, one that widens it is InvalidArgument and changes
// nothing, and a connection open already goes on.
func TestEgressUpdateAppliesToNewConnections(t *testing.T) {
	agent := startFakeAgent(t)
	p := upperServer(t)
	entry := "127.0.0.1/32:" + port(p)
	m, e, _ := egressManager(t, agent, []string{entry, "*.example.test"}, 1<<20, 4)
	ctx := context.Background()

	agent.announce(t, 1, "127.0.0.1", p)
	open := agent.relay(t, 1, true, "allowed")
	info, err := m.UpdateEgress(ctx, e.id, []string{"api.example.test:443"})
	if err != nil || len(info.EgressAllow) != 1 || info.EgressAllow[0] != "api.example.test:443" {
		t.Fatalf("UpdateEgress = %v, %v; want the new list", info.EgressAllow, err)
	}
	agent.announce(t, 2, "127.0.0.1", p)
	agent.relay(t, 2, false, "no CIDR entry holds 127.0.0.1").end()
	if got, err := open.exchange(t, []byte("still open")); err != nil || string(got) != "STILL OPEN" {
		t.Fatalf("the connection opened before the update: %q, %v", got, err)
	}

	for _, wider := range [][]string{{"127.0.0.0/8:" + port(p)}, {"*"}, {"other.test"}, {"api.example.test:22"}} {
		if _, err := m.UpdateEgress(ctx, e.id, wider); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "not within") {
			t.Errorf("UpdateEgress(%q) = %v, want InvalidArgument (widening)", wider, err)
		}
	}
	if info, _ := m.Get(ctx, e.id); len(info.EgressAllow) != 1 || info.EgressAllow[0] != "api.example.test:443" {
		t.Fatalf("a refused update changed the list: %v", info.EgressAllow)
	}
	if _, err := m.UpdateEgress(ctx, e.id, []string{entry}); err != nil {
		t.Fatal(err)
	}
	agent.announce(t, 3, "127.0.0.1", p)
	agent.relay(t, 3, true, "allowed").end()
	if _, err := m.UpdateEgress(tenant.NewContext(ctx, "team-b"), e.id, nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("another tenant's UpdateEgress = %v, want NotFound", err)
	}
}

// TestEgressConnectionCapRefusesTheNext guarantees the connection cap: with
// the cap's connections open the next one is refused saying so, and once
// one closes a new one is allowed.
func TestEgressConnectionCapRefusesTheNext(t *testing.T) {
	agent := startFakeAgent(t)
	p := upperServer(t)
	_, e, rec := egressManager(t, agent, []string{"127.0.0.1/32:" + port(p)}, 1<<20, 1)
	agent.announce(t, 1, "127.0.0.1", p)
	first := agent.relay(t, 1, true, "allowed")
	agent.announce(t, 2, "127.0.0.1", p)
	agent.relay(t, 2, false, "egress connection cap of 1 reached").end()
	rec.nextEvent(t)
	if _, err := first.exchange(t, []byte("x")); err != nil {
		t.Fatal(err)
	}
	first.end()
	rec.nextEvent(t)
	for deadline := time.Now().Add(egressTestWait); e.egress.budget.Open() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the closed connection still holds its slot")
		}
	}
	agent.announce(t, 3, "127.0.0.1", p)
	agent.relay(t, 3, true, "allowed")
}

// TestEgressByteCapCutsTheDownload guarantees that a download larger than
// the sandbox's byte cap is cut: the sandbox receives no more than the
// cap, the audit line says the cap cut it, and the next connection is
// refused.
func TestEgressByteCapCutsTheDownload(t *testing.T) {
	agent := startFakeAgent(t)
	p := server(t, func(c net.Conn) { c.Write(make([]byte, 1<<20)) })
	const limit = 100 << 10
	_, _, rec := egressManager(t, agent, []string{"127.0.0.1/32:" + port(p)}, limit, 4)
	agent.announce(t, 1, "127.0.0.1", p)
	r := agent.relay(t, 1, true, "allowed")
	got, _ := r.drain()
	if len(got) > limit || len(got) < limit/2 {
		t.Fatalf("the sandbox received %d bytes under a cap of %d", len(got), limit)
	}
	r.end()
	if ev := rec.nextEvent(t); ev.Down != int64(len(got)) || !strings.Contains(ev.Err, "byte cap") {
		t.Fatalf("audit event %+v, want %d bytes down and the byte cap", ev, len(got))
	}
	agent.announce(t, 2, "127.0.0.1", p)
	agent.relay(t, 2, false, "byte cap")
}

// TestStoppingEgressCutsConnections guarantees what a pause relies on:
// stopping a sandbox's egress ends its open connections (the sandbox's end
// and the destination's) and returns once they are gone.
func TestStoppingEgressCutsConnections(t *testing.T) {
	agent := startFakeAgent(t)
	closed := make(chan struct{})
	p := server(t, func(c net.Conn) {
		io.Copy(io.Discard, c)
		close(closed)
	})
	m, e, _ := egressManager(t, agent, []string{"127.0.0.1/32:" + port(p)}, 1<<20, 4)
	agent.announce(t, 1, "127.0.0.1", p)
	r := agent.relay(t, 1, true, "allowed")
	if err := r.stream.Send(&agentv1.EgressFrame{Data: []byte("partial")}); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() { m.stopEgress(e); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(egressTestWait):
		t.Fatal("stopping egress waits for an open connection")
	}
	select {
	case <-closed:
	case <-time.After(egressTestWait):
		t.Fatal("the destination's connection stayed open")
	}
	select {
	case <-r.stream.Context().Done():
	case <-time.After(egressTestWait):
		t.Fatal("the relay stream stayed open")
	}
}

// TestCreateEgressNarrowsNeverWidens guarantees the lists a new sandbox
// may get: its template's when it asks for none, a narrower one within it,
// never a wider one or junk (InvalidArgument naming the entry), and none
// at all from a template without egress, whose requests for a list are
// InvalidArgument saying the template has no egress.
func TestCreateEgressNarrowsNeverWidens(t *testing.T) {
	web := egressTemplate(t)
	none, _ := policy.Default().Template("")
	if eg, err := egressFor(none, nil); eg != nil || err != nil {
		t.Fatalf("template without egress: %v, %v; want no egress", eg, err)
	}
	if _, err := egressFor(none, []string{"127.0.0.2/32:443"}); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "has no egress") {
		t.Fatalf("a list for a template without egress: %v, want InvalidArgument saying it has none", err)
	}
	eg, err := egressFor(web, nil)
	if err != nil || !slices.Equal(eg.allow().Strings(), web.Egress.Allow.Strings()) {
		t.Fatalf("no list asked: %v, %v; want the template's", eg, err)
	}
	if eg.budget.Used() != 0 {
		t.Fatalf("a new budget has %d bytes used", eg.budget.Used())
	}
	eg, err = egressFor(web, []string{"127.0.0.2/32:443"})
	if err != nil || !slices.Equal(eg.allow().Strings(), []string{"127.0.0.2/32:443"}) {
		t.Fatalf("a narrower list: %v, %v", eg, err)
	}
	for _, wider := range [][]string{{"127.0.0.0/8:443"}, {"127.0.0.2/32:80"}, {"*.sandboxd.test:443"}, {"example.com"}, {"127.0.0.2"}} {
		if _, err := egressFor(web, wider); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "egress entry") {
			t.Errorf("egressFor(%q) = %v, want InvalidArgument naming the entry", wider, err)
		}
	}
}

// TestEgressTrafficKeepsTheSandboxBusy guarantees that bytes moving on an
// open connection count as use of the sandbox, so that a long download
// is not taken for idleness (idle timeout, pause_after), while a
// connection that moves nothing does not keep it alive.
func TestEgressTrafficKeepsTheSandboxBusy(t *testing.T) {
	agent := startFakeAgent(t)
	got := make(chan []byte, 1)
	p := server(t, func(c net.Conn) {
		buf := make([]byte, 5)
		io.ReadFull(c, buf)
		got <- buf
		io.Copy(io.Discard, c)
	})
	_, e, _ := egressManager(t, agent, []string{"127.0.0.1/32:" + port(p)}, 1<<20, 4)
	agent.announce(t, 1, "127.0.0.1", p)
	r := agent.relay(t, 1, true, "allowed")
	idle := time.Unix(0, 0)
	e.lastUsed.Store(idle.UnixNano())
	time.Sleep(50 * time.Millisecond)
	if !e.idleSince().Equal(idle) {
		t.Fatalf("an open connection that moves nothing counts as use")
	}
	if err := r.stream.Send(&agentv1.EgressFrame{Data: []byte("bytes")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(egressTestWait):
		t.Fatal("the bytes did not arrive")
	}
	if !e.idleSince().After(idle) {
		t.Fatalf("bytes moved on a connection, and the sandbox still counts as idle since %v", e.idleSince())
	}
}

// TestEgressReloadNarrowsRunningSandboxes guarantees that a policy reload
// that takes a destination out of a template closes it for the template's
// running sandboxes too, for their next connections, that an update cannot
// bring it back, and that a template gone from the policy leaves its
// sandboxes no egress.
func TestEgressReloadNarrowsRunningSandboxes(t *testing.T) {
	agent := startFakeAgent(t)
	p := upperServer(t)
	entry := "127.0.0.1/32:" + port(p)
	m, e, _ := egressManager(t, agent, []string{entry, "api.example.test:443"}, 1<<20, 4)
	ctx := context.Background()
	reload := func(allow ...string) {
		t.Helper()
		pol := &policy.Policy{Templates: map[string]*policy.Template{}}
		if allow != nil {
			list, err := egress.ParseList(allow)
			if err != nil {
				t.Fatal(err)
			}
			pol.Templates["web"] = &policy.Template{Name: "web", Network: policy.NetworkAllowlist, Egress: policy.Egress{Allow: list}}
		}
		m.policy.Store(pol)
		m.narrowEgress()
	}

	reload(entry, "api.example.test:443", "new.example.test")
	if got := e.egress.allow().Strings(); len(got) != 2 {
		t.Fatalf("a reload that keeps the destinations changed the list: %v", got)
	}
	reload("api.example.test:443")
	if got := e.egress.allow().Strings(); len(got) != 1 || got[0] != "api.example.test:443" {
		t.Fatalf("after the reload the list is %v, want only api.example.test:443", got)
	}
	agent.announce(t, 1, "127.0.0.1", p)
	agent.relay(t, 1, false, "no CIDR entry holds 127.0.0.1").end()
	if _, err := m.UpdateEgress(ctx, e.id, []string{entry}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("UpdateEgress back to a destination the reloaded template dropped = %v, want InvalidArgument", err)
	}
	reload() // the template is gone
	if got := e.egress.allow(); len(got) != 0 {
		t.Fatalf("the template left the policy, but its sandbox keeps egress %v", got.Strings())
	}
}
