// Package manager is sandboxd's domain service: it creates sandboxes from
// policy templates (warm from pools or booted for the request), keeps the
// registry of live and dead sandboxes, runs code and moves files through
// their agents, decides and relays their egress (egress.go), reaps expired
// sandboxes, applies policy reloads and removes whatever a previous run of
// the daemon left behind. The gRPC layer only
// translates to and from it.
package manager

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/policy"
	"github.com/sandboxd/sandboxd/runtime/cgroups"
	"github.com/sandboxd/sandboxd/runtime/egress"
	"github.com/sandboxd/sandboxd/runtime/errdefs"
	"github.com/sandboxd/sandboxd/runtime/identifiers"
	"github.com/sandboxd/sandboxd/runtime/pool"
	"github.com/sandboxd/sandboxd/runtime/runsc"
	"github.com/sandboxd/sandboxd/runtime/sandbox"
	"github.com/sandboxd/sandboxd/runtime/snapshot"
)

// Config configures a Manager.
type Config struct {
	// Runsc is the base runsc configuration (binary, root, platform,
	// network); the manager adds each template's overlay size.
	Runsc runsc.Runsc
	// StateDir holds the bundles of live sandboxes.
	StateDir string
	// DefaultRootfs is the host directory that the policy's "default" rootfs
	// means.
	DefaultRootfs string
	// AgentBinary is the host path of the agent binary.
	AgentBinary string
	// Policy is the policy in force at start.
	Policy *policy.Policy
	// Logger receives the manager's events.
	Logger *slog.Logger
	// Metrics receives the manager's measurements; nil records nothing.
	Metrics Metrics
	// Cgroups creates each sandbox's cgroup with the template's CPU and
	// memory limits; the manager owns every group under its parent.
	Cgroups *cgroups.Manager
	// EgressAudit receives an event for each egress connection of a
	// sandbox, refused or closed, for the audit log; nil: none.
	EgressAudit func(EgressEvent)
	// Listeners are the daemon's own TCP listening sockets, which no
	// sandbox's egress may reach, whatever its allowlist says.
	Listeners []netip.AddrPort
	// Node is the address clients reach this daemon at (--node-address),
	// put in every new sandbox ID; empty: plain IDs. It has passed
	// identifiers.ValidateNodeAddress.
	Node string
}

// Manager is safe for concurrent use.
type Manager struct {
	cfg     Config
	policy  atomic.Pointer[policy.Policy]
	log     *slog.Logger
	metrics Metrics
	slots   *hostSlots
	// dialer decides, resolves and dials sandboxes' egress connections on
	// the host.
	dialer egress.Dialer

	mu        sync.Mutex
	sandboxes map[string]*entry
	// pendingByTenant counts each tenant's creates in progress, which hold
	// a place in its quota (tenants.go).
	pendingByTenant map[string]int
	closed          bool

	poolsMu sync.Mutex // serialises policy updates
	pools   atomic.Pointer[poolSet]

	paused     pausedImages
	autoPauses chan struct{} // one token per automatic pause running

	snapshots   *snapshot.Store
	snapshotsMu sync.Mutex // serialises applySnapshots

	stopReaper context.CancelFunc
	reaperDone chan struct{}
}

// New removes what an earlier run left in the state directory and the runsc
// root, adopts the sandboxes it paused, then returns a Manager with its
// pools filling and its reaper running.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	m := &Manager{cfg: cfg, log: cfg.Logger, metrics: cfg.Metrics, sandboxes: map[string]*entry{}, pendingByTenant: map[string]int{}, autoPauses: make(chan struct{}, maxAutoPauses)}
	m.dialer.Listeners = cfg.Listeners
	if m.metrics == nil {
		m.metrics = nopMetrics{}
	}
	m.paused.metrics = m.metrics
	m.slots = &hostSlots{max: cfg.Policy.Host.MaxSandboxes}
	m.policy.Store(cfg.Policy)
	m.pools.Store(&poolSet{})
	adopted, err := m.adopt(ctx)
	if err != nil {
		return nil, fmt.Errorf("adopting the sandboxes of an earlier run: %w", err)
	}
	if err := m.reconcile(ctx, adopted); err != nil {
		return nil, fmt.Errorf("removing leftovers of an earlier run: %w", err)
	}
	store, err := snapshot.Open(m.snapshotsDir(), m.log, m.metrics)
	if err != nil {
		return nil, err
	}
	m.snapshots = store
	m.applySnapshots()
	m.applyPools(cfg.Policy)
	rctx, cancel := context.WithCancel(context.Background())
	m.stopReaper, m.reaperDone = cancel, make(chan struct{})
	go m.reap(rctx)
	return m, nil
}

// Policy returns the policy in force.
func (m *Manager) Policy() *policy.Policy { return m.policy.Load() }

func (m *Manager) bundlesDir() string { return filepath.Join(m.cfg.StateDir, "bundles") }

func (m *Manager) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// checkID refuses an ID that is malformed (InvalidArgument) or that names
// another node (NotFound, saying which node owns it): a call that reached
// the wrong daemon must not look like one for a sandbox that is gone.
func (m *Manager) checkID(id string) error {
	if err := identifiers.ValidateID(id); err != nil {
		return err
	}
	if node, ok := identifiers.NodeOf(id); ok && node != m.cfg.Node {
		here := m.cfg.Node
		if here == "" {
			here = "a daemon without --node-address"
		}
		return fmt.Errorf("sandbox %q belongs to node %s, and this is %s: send its calls to its node: %w", id, node, here, errdefs.ErrNotFound)
	}
	return nil
}

// lookup returns the entry of id if it belongs to the tenant of ctx, or a
// NotFound error: another tenant's sandbox is answered exactly like an
// unknown one, so that its existence does not leak.
func (m *Manager) lookup(ctx context.Context, id string) (*entry, error) {
	m.mu.Lock()
	e, ok := m.sandboxes[id]
	m.mu.Unlock()
	if !ok || e.tenant != owner(ctx) {
		return nil, fmt.Errorf("sandbox %q not found: %w", id, errdefs.ErrNotFound)
	}
	return e, nil
}

// use returns e's running sandbox for one call, resuming it first if it
// is paused; done must be called when the call ends, and until then the
// sandbox is neither paused nor replaced. A destroyed sandbox gives
// NotFound, an ended one FailedPrecondition saying why.
func (m *Manager) use(ctx context.Context, e *entry) (_ *sandbox.Sandbox, done func(), _ error) {
	id := e.id
	e.touch()
	for {
		e.op.RLock()
		e.mu.Lock()
		st, reason, gone, sb := e.state, e.reason, e.gone, e.sb
		e.mu.Unlock()
		switch {
		case gone:
			e.op.RUnlock()
			return nil, nil, fmt.Errorf("sandbox %q was destroyed: %w", id, errdefs.ErrNotFound)
		case st == StateRunning:
			e.inflight.Add(1)
			return sb, func() {
				e.touch()
				e.inflight.Add(-1)
				e.op.RUnlock()
			}, nil
		case st == StatePaused:
			e.op.RUnlock()
			if err := m.resume(ctx, e); err != nil {
				return nil, nil, err
			}
		default:
			e.op.RUnlock()
			return nil, nil, fmt.Errorf("sandbox %q is %s (%s): destroy it and create a new one: %w", id, st, reason, errdefs.ErrFailedPrecondition)
		}
	}
}

// Close stops the pools and the reaper. With keep, it pauses every running
// client sandbox, in parallel and within ctx, and leaves them and the
// paused ones on disk for the next start to adopt; a sandbox that cannot
// be paused in time is destroyed. Without keep it destroys every sandbox.
// New requests fail with Unavailable from then on.
func (m *Manager) Close(ctx context.Context, keep bool) {
	m.mu.Lock()
	m.closed = true
	all := make([]*entry, 0, len(m.sandboxes))
	for _, e := range m.sandboxes {
		all = append(all, e)
	}
	m.sandboxes = map[string]*entry{}
	m.mu.Unlock()
	m.stopReaper()
	<-m.reaperDone
	for range cap(m.autoPauses) {
		m.autoPauses <- struct{}{} // waits for the automatic pauses running
	}
	m.snapshots.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var kept, destroyed int
	wg.Go(m.closePools)
	for _, e := range all {
		wg.Go(func() {
			if keep && m.keepAtShutdown(ctx, e) {
				mu.Lock()
				kept++
				mu.Unlock()
				return
			}
			if err := m.finish(context.WithoutCancel(ctx), e); err != nil {
				m.log.Warn("destroying sandbox at shutdown", "sandbox", e.id, "err", err)
			}
			mu.Lock()
			destroyed++
			mu.Unlock()
		})
	}
	wg.Wait()
	m.log.Info("sandboxes closed", "paused_for_next_start", kept, "destroyed", destroyed)
	unmountNullNetNS(m.cfg.Runsc.Root)
	if err := m.cfg.Cgroups.Close(); err != nil {
		m.log.Warn("removing the cgroup parent", "err", err)
	}
}

// keepAtShutdown pauses a running sandbox for the next start and reports
// whether it is now paused on disk; a dead one, or one that fails to
// pause, is not kept.
func (m *Manager) keepAtShutdown(ctx context.Context, e *entry) bool {
	switch st, _ := e.status(); st {
	case StatePaused:
		return true
	case StateRunning:
		// Calls ended with the server; wait only for a resume under way.
		err := m.pause(ctx, e, "daemon shutdown", PauseTimeout)
		if err == nil {
			return true
		}
		m.log.Warn("could not pause a sandbox at shutdown: destroying it", "sandbox", e.id, "err", err)
	}
	return false
}

// unmountNullNetNS removes the network namespace bind mount that runsc pins
// in its root to speed up later boots (runsc/specutils.UnmountNullNetNS):
// left mounted, it would outlive the daemon and keep the state directory
// busy. Concurrent boots can stack several mounts, hence the loop.
func unmountNullNetNS(root string) {
	for unix.Unmount(filepath.Join(root, "null-netns"), unix.MNT_DETACH) == nil {
	}
}

// now is the manager's clock.
func now() time.Time { return time.Now() }

// hostSlots counts every sandbox on the host (booting, idle in a pool, in
// use) against policy host.max_sandboxes.
type hostSlots struct {
	mu   sync.Mutex
	used int
	max  int
}

// TryAcquire takes a slot; false when the host is full.
func (h *hostSlots) TryAcquire() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.used >= h.max {
		return false
	}
	h.used++
	return true
}

// acquireAnyway takes a slot even over the limit: for a sandbox that
// exists already (adopted after a restart under a lower limit).
func (h *hostSlots) acquireAnyway() {
	h.mu.Lock()
	h.used++
	h.mu.Unlock()
}

// Release gives a slot back.
func (h *hostSlots) Release() {
	h.mu.Lock()
	h.used--
	h.mu.Unlock()
}

// setMax applies a new host limit; sandboxes over it are not touched.
func (h *hostSlots) setMax(n int) {
	h.mu.Lock()
	h.max = n
	h.mu.Unlock()
}

var _ pool.Slots = (*hostSlots)(nil)
