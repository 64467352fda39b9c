package manager

// This file is the daemon's side of egress (policy network: allowlist).
// The sandbox keeps --network=none; its agent serves an HTTP proxy on the
// sandbox's loopback and announces each connection a client opens through
// it on an EgressAccept stream. For each, the manager takes a slot of the
// sandbox's budget, decides and dials it with runtime/egress under the
// sandbox's allowlist in force, gives the verdict on an EgressRelay stream
// and relays the bytes. Every decision is logged, counted and audited.
//
// The relay loop runs while a client's sandbox runs: from its hand-out,
// resume or adoption until it is paused or ends; pausing cuts its
// connections. Bytes moving count as use of the sandbox for its idle
// clocks; a connection held open without traffic does not. Everything the
// agent sends is untrusted: message sizes are capped, the host and port are
// checked by runtime/egress, and the budget bounds the connections it can
// have decided at once.

import (
	"context"
	"fmt"
	"math"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/sandboxd/sandboxd/policy"
	agentv1 "github.com/sandboxd/sandboxd/proto/agent/v1"
	"github.com/sandboxd/sandboxd/runtime/egress"
	"github.com/sandboxd/sandboxd/runtime/errdefs"
	"github.com/sandboxd/sandboxd/runtime/sandbox"
)

// Egress limits and timings.
const (
	// maxAnnouncement caps one connection announcement from the agent: a
	// host of at most 253 bytes and the client's method, which the agent
	// read within its 64 KiB request head; a larger message fails the
	// stream instead of being buffered.
	maxAnnouncement = 128 << 10
	// maxRelayFrame caps one frame from the agent: it sends at most 32 KiB
	// of data a frame, and twice that leaves room for the framing.
	maxRelayFrame = 64 << 10
	// egressReadyTimeout bounds the wait for the agent's proxy to listen
	// before a sandbox is handed out or resumed: it takes a millisecond;
	// past ten seconds the agent is stuck, and the sandbox is handed out
	// anyway (its proxy may come up later, or its code does without).
	egressReadyTimeout = 10 * time.Second
	// egressRetryDelay spaces the reopenings of an EgressAccept stream that
	// ended while its sandbox runs: soon enough that egress comes back
	// quickly, slow enough that a failing agent does not keep the daemon
	// busy.
	egressRetryDelay = time.Second
	// maxEgressRefusals is how many refusals over the budget's caps are
	// answered at once: each holds a relay stream until the agent has
	// given its client the 403 (milliseconds, at most relayLinger), and a
	// sandbox that asks faster waits, which bounds the daemon's work.
	maxEgressRefusals = 16
	// maxLoggedMethod bounds the client's HTTP method in logs: real ones
	// are a few letters.
	maxLoggedMethod = 16
)

// egressProxyAddr is where the agent's egress proxy listens in the
// sandbox, the address HTTP_PROXY names.
var egressProxyAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(agentv1.EgressProxyPort_EGRESS_PROXY_PORT_DEFAULT)))

// EgressEvent describes one egress connection of a sandbox once it is
// refused, or closed after it was allowed: what its audit line records.
type EgressEvent struct {
	// Time is when the sandbox announced the connection.
	Time                      time.Time
	Sandbox, Tenant, Template string
	// Host is the destination as decided: a name normalized, or an
	// address; clipped when it was junk.
	Host string
	Port uint32
	// Addr is the address dialed, or the one refused; empty when no
	// address was reached.
	Addr string
	// Allowed says whether the connection was relayed; Reason says why,
	// or why not.
	Allowed bool
	Reason  string
	// Up and Down are the bytes relayed from and to the sandbox.
	Up, Down int64
	// Duration is how long the connection took, from its announcement.
	Duration time.Duration
	// Err says why an allowed connection ended abnormally (cut by the byte
	// cap, a pause, a failure); empty when both sides closed.
	Err string
}

// egressState is one sandbox's egress: the allowlist in force, the budget
// of its whole life and the relay loop of its running sandbox. Only
// sandboxes of templates with network: allowlist have one.
type egressState struct {
	// list is the allowlist in force; UpdateEgress swaps it and each
	// connection is decided under the one it finds.
	list atomic.Pointer[egress.List]
	// budget caps the bytes relayed over the sandbox's life and its open
	// connections.
	budget *egress.Budget

	// listMu serialises the changes of list (UpdateEgress, a policy
	// reload narrowing it), so that a change decided under an older policy
	// cannot land after the reload narrowed the list.
	listMu sync.Mutex

	mu sync.Mutex
	// stop ends the running loop and its connections and waits for them;
	// nil while no loop runs.
	stop func()
}

// newEgressState returns the egress of a sandbox of t with allowlist l.
func newEgressState(t *policy.Template, l egress.List) *egressState {
	s := &egressState{budget: egress.NewBudget(t.Limits.EgressBytes, t.Limits.EgressConnections)}
	s.list.Store(&l)
	return s
}

// allow returns the allowlist in force.
func (s *egressState) allow() egress.List { return *s.list.Load() }

// egressFor returns the egress of a new sandbox of t: requested, which
// must lie within t's allowlist, or t's own when requested is empty; nil
// for a template without egress, which takes no list.
func egressFor(t *policy.Template, requested []string) (*egressState, error) {
	if t.Network != policy.NetworkAllowlist {
		if len(requested) > 0 {
			return nil, errNoEgress(t)
		}
		return nil, nil
	}
	l := t.Egress.Allow
	if len(requested) > 0 {
		var err error
		if l, err = narrowed(t.Name, t.Egress.Allow, requested); err != nil {
			return nil, err
		}
	}
	return newEgressState(t, l), nil
}

// narrowed parses a sandbox's allowlist, which must lie within its
// template's (InvalidArgument naming the entry that widens it).
func narrowed(template string, ceiling egress.List, entries []string) (egress.List, error) {
	l, err := egress.ParseList(entries)
	if err != nil {
		return nil, err
	}
	if err := l.Within(ceiling); err != nil {
		return nil, fmt.Errorf("template %q: %w", template, err)
	}
	return l, nil
}

// egressCeiling returns the widest allowlist a sandbox of t may have now:
// its template's in the policy in force, which a reload may have narrowed,
// or nothing once the template is gone from the policy or has no egress
// any more; t's own while no policy is set.
func (m *Manager) egressCeiling(t *policy.Template) egress.List {
	p := m.Policy()
	if p == nil {
		return t.Egress.Allow
	}
	cur, ok := p.Templates[t.Name]
	if !ok || cur.Network != policy.NetworkAllowlist {
		return nil
	}
	return cur.Egress.Allow
}

// narrowEgress applies a reloaded policy to running sandboxes' egress: an
// entry of a sandbox's list that its template's list in the policy no
// longer covers (in full: an entry with a port no longer listed goes as a
// whole) is dropped, for connections opened from now on. Removing a
// destination from a template therefore closes it for every sandbox of
// the template, not only new ones.
func (m *Manager) narrowEgress() {
	m.mu.Lock()
	var entries []*entry
	for _, e := range m.sandboxes {
		if e.egress != nil {
			entries = append(entries, e)
		}
	}
	m.mu.Unlock()
	for _, e := range entries {
		e.egress.listMu.Lock()
		ceiling := m.egressCeiling(e.tmpl)
		var keep, dropped egress.List
		for _, r := range e.egress.allow() {
			if (egress.List{r}).Within(ceiling) == nil {
				keep = append(keep, r)
			} else {
				dropped = append(dropped, r)
			}
		}
		if len(dropped) > 0 {
			e.egress.list.Store(&keep)
			m.saveRecord(e)
		}
		e.egress.listMu.Unlock()
		if len(dropped) > 0 {
			m.log.Warn("egress narrowed by the policy reload: the template no longer allows these destinations", "sandbox", e.id,
				"template", e.tmpl.Name, "dropped", dropped.Strings(), "allow", keep.Strings())
		}
	}
}

// errNoEgress refuses an egress allowlist for a sandbox of t, a template
// without egress.
func errNoEgress(t *policy.Template) error {
	return fmt.Errorf("template %q has no egress (network: %s), so its sandboxes take no egress allowlist: use a template with network: allowlist: %w",
		t.Name, t.Network, errdefs.ErrInvalidArgument)
}

// UpdateEgress replaces the egress allowlist of a sandbox of the tenant of
// ctx with allow, which must lie within its template's in the policy in
// force (InvalidArgument otherwise; see egressCeiling); an empty allow
// closes its egress. Connections open already go on; those opened from now
// on are decided under the new list. A paused sandbox resumes with it, and
// its record keeps it across restarts.
func (m *Manager) UpdateEgress(ctx context.Context, id string, allow []string) (Info, error) {
	if err := m.checkID(id); err != nil {
		return Info{}, err
	}
	e, err := m.lookup(ctx, id)
	if err != nil {
		return Info{}, err
	}
	e.touch()
	if e.egress == nil {
		if len(allow) > 0 {
			return Info{}, errNoEgress(e.tmpl)
		}
		return e.info(), nil
	}
	if st, reason := e.status(); st == StateDead {
		return Info{}, fmt.Errorf("sandbox %q is %s (%s): %w", id, st, reason, errdefs.ErrFailedPrecondition)
	}
	e.egress.listMu.Lock()
	l, err := narrowed(e.tmpl.Name, m.egressCeiling(e.tmpl), allow)
	if err == nil {
		e.egress.list.Store(&l)
		m.saveRecord(e)
	}
	e.egress.listMu.Unlock()
	if err != nil {
		return Info{}, err
	}
	m.log.Info("egress allowlist updated", "sandbox", id, "template", e.tmpl.Name, "allow", l.Strings())
	return e.info(), nil
}

// runningSandbox is what egress needs of a running sandbox
// (*sandbox.Sandbox): its agent, and the channel closed when it exits.
type runningSandbox interface {
	Agent() agentv1.AgentServiceClient
	Exited() <-chan struct{}
}

var _ runningSandbox = (*sandbox.Sandbox)(nil)

// startEgress starts the relay loop of e's running sandbox sb, if e has
// egress, and waits (at most egressReadyTimeout) until the agent's proxy
// listens, so that the client's first request finds it. No loop of e may
// be running: e's sandbox is new, resumed or adopted, or stopEgress
// stopped its loop.
func (m *Manager) startEgress(e *entry, sb runningSandbox) {
	if e.egress == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		m.serveEgress(ctx, e, sb.Agent(), sb.Exited(), ready)
	}()
	e.egress.mu.Lock()
	e.egress.stop = func() { cancel(); <-done }
	e.egress.mu.Unlock()
	select {
	case <-ready:
	case <-time.After(egressReadyTimeout):
		m.log.Warn("the sandbox's egress proxy did not start in time", "sandbox", e.id, "waited", egressReadyTimeout)
	}
}

// stopEgress ends e's relay loop, if one runs, cutting its connections,
// and waits until they are gone.
func (m *Manager) stopEgress(e *entry) {
	if e.egress == nil {
		return
	}
	e.egress.mu.Lock()
	stop := e.egress.stop
	e.egress.stop = nil
	e.egress.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// serveEgress runs e's proxy through agent until ctx ends or the sandbox
// exits, reopening EgressAccept when its stream ends otherwise (the agent
// restarted its proxy, say). ready is closed once the first stream has
// started, or failed to. Connections end with ctx.
func (m *Manager) serveEgress(ctx context.Context, e *entry, agent agentv1.AgentServiceClient, exited <-chan struct{}, ready chan struct{}) {
	var relays sync.WaitGroup
	defer relays.Wait()
	var readyOnce sync.Once
	signal := func() { readyOnce.Do(func() { close(ready) }) }
	defer signal()
	for {
		err := m.acceptEgress(ctx, e, agent, &relays, signal)
		select {
		case <-ctx.Done():
			return
		case <-exited:
			return
		default:
		}
		m.log.Warn("the sandbox's egress proxy stopped: restarting it", "sandbox", e.id, "err", err, "in", egressRetryDelay)
		select {
		case <-ctx.Done():
			return
		case <-exited:
			return
		case <-time.After(egressRetryDelay):
		}
	}
}

// acceptEgress opens one EgressAccept stream, calls started once the
// proxy listens (or failed to), and handles each connection it announces
// in a goroutine of relays, until the stream ends.
func (m *Manager) acceptEgress(ctx context.Context, e *entry, agent agentv1.AgentServiceClient, relays *sync.WaitGroup, started func()) error {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := agent.EgressAccept(actx, &agentv1.EgressAcceptRequest{}, grpc.MaxCallRecvMsgSize(maxAnnouncement))
	if err != nil {
		started()
		return fmt.Errorf("starting the egress proxy: %w", errdefs.FromGRPC(err))
	}
	// The agent sends its headers once the proxy listens.
	_, herr := stream.Header()
	started()
	if herr != nil {
		return fmt.Errorf("starting the egress proxy: %w", errdefs.FromGRPC(herr))
	}
	refusals := make(chan struct{}, maxEgressRefusals)
	for {
		c, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("receiving egress connections: %w", errdefs.FromGRPC(err))
		}
		e.touch()
		at := now()
		release, err := e.egress.budget.Acquire()
		if err != nil {
			select {
			case refusals <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
			relays.Go(func() {
				defer func() { <-refusals }()
				m.refuseEgress(ctx, e, agent, c, at, err.Error())
			})
			continue
		}
		relays.Go(func() {
			defer release()
			m.connectEgress(ctx, e, agent, c, at)
		})
	}
}

// tcpPort returns port if it is a TCP port, else 0, which every decision
// refuses.
func tcpPort(port uint32) uint16 {
	if port > math.MaxUint16 {
		return 0
	}
	return uint16(port)
}

// refuseEgress refuses connection c without deciding it (a cap of the
// budget was reached): the client gets a 403 saying why. The host is
// logged as a decision names it: normalized, or clipped if it is junk.
func (m *Manager) refuseEgress(ctx context.Context, e *entry, agent agentv1.AgentServiceClient, c *agentv1.EgressConnection, at time.Time, why string) {
	host := e.egress.allow().Check(c.GetHost(), tcpPort(c.GetPort())).Host
	m.answerRefused(ctx, e, agent, c, at, host, "", why)
}

// connectEgress decides connection c under the sandbox's list in force
// and, if it is allowed and the destination answers, relays it within the
// sandbox's budget.
func (m *Manager) connectEgress(ctx context.Context, e *entry, agent agentv1.AgentServiceClient, c *agentv1.EgressConnection, at time.Time) {
	port := tcpPort(c.GetPort())
	conn, d, err := m.dialer.Connect(ctx, e.egress.allow(), c.GetHost(), port)
	var addr string
	if d.Addr.IsValid() {
		addr = d.Addr.String()
	}
	if err != nil {
		why := d.Reason
		switch {
		case port == 0 && c.GetPort() != 0:
			why = fmt.Sprintf("port %d is not a TCP port (1-65535)", c.GetPort())
		case d.Allowed:
			why = err.Error() // allowed, but the destination did not answer
		}
		m.answerRefused(ctx, e, agent, c, at, d.Host, addr, why)
		return
	}
	remote, ok := conn.(egress.Conn)
	if !ok {
		conn.Close()
		m.answerRefused(ctx, e, agent, c, at, d.Host, addr, fmt.Sprintf("the connection to %s cannot be half-closed", addr))
		return
	}
	rctx, cancel := context.WithCancel(ctx)
	stream, err := agent.EgressRelay(rctx, grpc.MaxCallRecvMsgSize(maxRelayFrame))
	if err != nil {
		cancel()
		remote.Close()
		m.log.Debug("egress connection lost before its verdict", "sandbox", e.id, "host", d.Host, "err", err)
		return
	}
	rs := newRelayStream(stream, cancel, e.touch)
	if err := rs.verdict(c.GetId(), true, d.Reason); err != nil {
		rs.Close()
		remote.Close()
		m.log.Debug("egress connection lost before its verdict", "sandbox", e.id, "host", d.Host, "err", err)
		return
	}
	m.metrics.EgressDecided(e.tmpl.Name, true)
	m.log.Info("egress allowed", "sandbox", e.id, "template", e.tmpl.Name, "host", d.Host, "port", c.GetPort(), "addr", addr,
		"method", clipText(c.GetMethod(), maxLoggedMethod), "reason", d.Reason)
	up, down, rerr := egress.Relay(ctx, rs, remote, e.egress.budget)
	ev := m.egressEvent(e, c, at, d.Host, addr, true, d.Reason)
	ev.Up, ev.Down = up, down
	if rerr != nil {
		ev.Err = rerr.Error()
	}
	m.metrics.EgressRelayed(e.tmpl.Name, up, down)
	m.log.Info("egress closed", "sandbox", e.id, "template", e.tmpl.Name, "host", d.Host, "port", c.GetPort(), "addr", addr,
		"bytes_up", up, "bytes_down", down, "took", ev.Duration.Round(time.Millisecond), "err", ev.Err)
	m.auditEgress(ev)
	e.touch()
	m.saveRecord(e) // the bytes relayed count across a restart
}

// answerRefused gives connection c its refusal (the client gets a 403
// saying why), and logs, counts and audits it.
func (m *Manager) answerRefused(ctx context.Context, e *entry, agent agentv1.AgentServiceClient, c *agentv1.EgressConnection, at time.Time, host, addr, why string) {
	m.metrics.EgressDecided(e.tmpl.Name, false)
	m.log.Info("egress refused", "sandbox", e.id, "template", e.tmpl.Name, "host", host, "port", c.GetPort(), "addr", addr,
		"method", clipText(c.GetMethod(), maxLoggedMethod), "reason", why)
	m.auditEgress(m.egressEvent(e, c, at, host, addr, false, why))
	rctx, cancel := context.WithCancel(ctx)
	stream, err := agent.EgressRelay(rctx, grpc.MaxCallRecvMsgSize(maxRelayFrame))
	if err != nil {
		cancel()
		return // the agent is gone; its client's connection with it
	}
	rs := newRelayStream(stream, cancel, e.touch)
	defer rs.Close()
	if err := rs.verdict(c.GetId(), false, why); err != nil {
		m.log.Debug("egress refusal not delivered", "sandbox", e.id, "host", host, "err", err)
	}
}

// egressEvent describes connection c of e for its audit line.
func (m *Manager) egressEvent(e *entry, c *agentv1.EgressConnection, at time.Time, host, addr string, allowed bool, reason string) EgressEvent {
	return EgressEvent{
		Time: at, Sandbox: e.id, Tenant: e.tenant, Template: e.tmpl.Name, Host: host, Port: c.GetPort(), Addr: addr,
		Allowed: allowed, Reason: reason, Duration: now().Sub(at),
	}
}

// auditEgress passes ev to the audit log, if there is one.
func (m *Manager) auditEgress(ev EgressEvent) {
	if m.cfg.EgressAudit != nil {
		m.cfg.EgressAudit(ev)
	}
}
