// Package manager is sandboxd's domain service: it creates sandboxes from
// policy templates, keeps the registry of live and dead sandboxes, runs
// code and moves files through their agents, reaps expired sandboxes and
// removes whatever a previous run of the daemon left behind. The gRPC layer
// only translates to and from it.
package manager

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/policy"
	"github.com/sandboxd/sandboxd/runtime/errdefs"
	"github.com/sandboxd/sandboxd/runtime/runsc"
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
	// Policy is the policy in force.
	Policy *policy.Policy
	// Logger receives the manager's events.
	Logger *slog.Logger
}

// Manager is safe for concurrent use.
type Manager struct {
	cfg    Config
	policy atomic.Pointer[policy.Policy]
	log    *slog.Logger

	mu        sync.Mutex
	sandboxes map[string]*entry
	booting   int // boots in progress, counted against the host limit
	closed    bool

	stopReaper context.CancelFunc
	reaperDone chan struct{}
}

// New removes what an earlier run left in the state directory and the runsc
// root, then returns a Manager with its reaper running.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	m := &Manager{cfg: cfg, log: cfg.Logger, sandboxes: map[string]*entry{}}
	m.policy.Store(cfg.Policy)
	if err := m.reconcile(ctx); err != nil {
		return nil, fmt.Errorf("removing leftovers of an earlier run: %w", err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	m.stopReaper, m.reaperDone = cancel, make(chan struct{})
	go m.reap(rctx)
	return m, nil
}

// Policy returns the policy in force.
func (m *Manager) Policy() *policy.Policy { return m.policy.Load() }

func (m *Manager) bundlesDir() string { return filepath.Join(m.cfg.StateDir, "bundles") }

// lookup returns the entry of id, or a NotFound error.
func (m *Manager) lookup(id string) (*entry, error) {
	m.mu.Lock()
	e, ok := m.sandboxes[id]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("sandbox %q not found: %w", id, errdefs.ErrNotFound)
	}
	return e, nil
}

// running returns the entry of id if its sandbox is running, a NotFound
// error if unknown and a FailedPrecondition error saying why if it ended.
func (m *Manager) running(id string) (*entry, error) {
	e, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	if st, reason := e.status(); st != StateRunning {
		return nil, fmt.Errorf("sandbox %q is %s (%s): destroy it and create a new one: %w", id, st, reason, errdefs.ErrFailedPrecondition)
	}
	e.touch()
	return e, nil
}

// Close destroys every sandbox and stops the reaper. New requests fail with
// Unavailable from then on.
func (m *Manager) Close(ctx context.Context) {
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
	var wg sync.WaitGroup
	for _, e := range all {
		wg.Go(func() {
			if err := e.sb.Destroy(ctx); err != nil {
				m.log.Warn("destroying sandbox at shutdown", "sandbox", e.id, "err", err)
			}
		})
	}
	wg.Wait()
	m.log.Info("all sandboxes destroyed", "count", len(all))
	unmountNullNetNS(m.cfg.Runsc.Root)
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
