package manager

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/sandboxd/sandboxd/policy"
	"github.com/sandboxd/sandboxd/runtime/cgroups"
	"github.com/sandboxd/sandboxd/runtime/errdefs"
	"github.com/sandboxd/sandboxd/runtime/identifiers"
	"github.com/sandboxd/sandboxd/runtime/ocispec"
	"github.com/sandboxd/sandboxd/runtime/pool"
	"github.com/sandboxd/sandboxd/runtime/sandbox"
)

// BootTimeout bounds one cold boot. A boot takes ~0.5 s plus the warm
// imports; two minutes means the host is badly overloaded, and the client
// is better served by an error than by waiting.
const BootTimeout = 2 * time.Minute

// CreateRequest asks for a sandbox.
type CreateRequest struct {
	// Template names the policy template; "" means the default.
	Template string
	// Labels are kept with the sandbox.
	Labels map[string]string
	// BypassPool makes a fresh sandbox even if the pool has one ready
	// (restored when the template's snapshot is ready).
	BypassPool bool
	// BypassSnapshot boots a fresh sandbox in full, from neither the pool
	// nor the snapshot.
	BypassSnapshot bool
	// Limits lower the template's limits for this sandbox; zero fields keep
	// the template's. Lowering one fixed at boot skips the pool.
	Limits Limits
	// EgressAllow narrows the template's egress allowlist for this
	// sandbox (entries within the template's); empty keeps the template's.
	// A template without egress takes none.
	EgressAllow []string
}

// Create returns a sandbox of the requested template: warm from its pool
// when one is ready, else booted for the request.
func (m *Manager) Create(ctx context.Context, req CreateRequest) (Info, error) {
	if err := identifiers.ValidateLabels(req.Labels); err != nil {
		return Info{}, err
	}
	tmpl, err := m.Policy().Template(req.Template)
	if err != nil {
		if errors.Is(err, policy.ErrUnknownTemplate) {
			return Info{}, fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
		}
		return Info{}, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	tmpl, atBoot, err := lower(tmpl, req.Limits)
	if err != nil {
		return Info{}, err
	}
	tmpl, tenantAtBoot, admitted, err := m.admitTenant(ctx, tmpl)
	if err != nil {
		return Info{}, err
	}
	defer admitted()
	atBoot = atBoot || tenantAtBoot
	eg, err := egressFor(tmpl, req.EgressAllow)
	if err != nil {
		return Info{}, err
	}
	if m.isClosed() {
		return Info{}, errShuttingDown
	}
	start := now()
	bctx, cancel := context.WithTimeout(ctx, BootTimeout)
	defer cancel()

	var sb *sandbox.Sandbox
	var cold bool
	var release func()
	if p := m.poolFor(tmpl.Name); p != nil {
		var s pool.Sandbox
		var err error
		switch {
		case atBoot || req.BypassSnapshot:
			// Pooled sandboxes were made with the template's limits, and
			// may have been restored.
			s, err = p.BootWith(bctx, m.booter(tmpl, req.BypassSnapshot))
			cold = true
		default:
			s, cold, err = p.Acquire(bctx, req.BypassPool)
		}
		if err != nil {
			m.metrics.AcquireFailed()
			return Info{}, m.bootFailed(ctx, tmpl, err)
		}
		sb, release = s.(*sandbox.Sandbox), p.Release
	} else {
		if !m.slots.TryAcquire() {
			m.metrics.AcquireFailed()
			return Info{}, errHostFull(m.Policy())
		}
		if sb, err = m.start(bctx, tmpl, req.BypassSnapshot, false); err != nil {
			m.slots.Release()
			m.metrics.AcquireFailed()
			return Info{}, m.bootFailed(ctx, tmpl, err)
		}
		cold, release = true, m.slots.Release
	}
	m.metrics.Acquired(cold, now().Sub(start))

	kind := StartPool
	switch {
	case cold && sb.Restored():
		kind = StartRestore
	case cold:
		kind = StartBoot
	}
	e := &entry{id: sb.ID(), tenant: owner(ctx), tmpl: tmpl, labels: req.Labels, createdAt: now(), sb: sb, state: StateRunning, start: kind, release: release, egress: eg}
	e.touch()
	if err := m.register(e); err != nil {
		m.finish(context.WithoutCancel(ctx), e)
		return Info{}, err
	}
	m.startEgress(e, sb)
	// In the background: the write (~0.25 ms, BenchmarkWriteRecord) would
	// otherwise be most of a pool hit's time in the daemon (~0.02 ms).
	go m.saveRecord(e)
	go m.watch(e, sb)
	m.log.Info("sandbox created", "sandbox", e.id, "template", tmpl.Name, "start", kind, "took", now().Sub(start).Round(time.Microsecond))
	return e.info(), nil
}

var errShuttingDown = fmt.Errorf("sandboxd is shutting down: %w", errdefs.ErrUnavailable)

func errHostFull(pol *policy.Policy) error {
	return fmt.Errorf("host limit of %d sandboxes reached (policy host.max_sandboxes): destroy a sandbox first: %w", pol.Host.MaxSandboxes, errdefs.ErrResourceExhausted)
}

// bootFailed classifies a failed acquisition: limits keep their class, a
// cancelled client is cancelled, anything else is a boot failure.
func (m *Manager) bootFailed(ctx context.Context, tmpl *policy.Template, err error) error {
	switch {
	case errors.Is(err, errdefs.ErrResourceExhausted), errors.Is(err, errdefs.ErrUnavailable):
		return err
	case ctx.Err() != nil:
		return fmt.Errorf("creating sandbox: %w", ctx.Err())
	default:
		return fmt.Errorf("booting sandbox from template %q: %w: %w", tmpl.Name, err, errdefs.ErrUnavailable)
	}
}

// start makes one sandbox of a template ready: restored from the
// template's snapshot when it is ready and fits t (bypassSnapshot unset),
// else booted in full. A failed restore is logged, counted as a failure of
// the template's pool and of its snapshot, and falls back to a boot. idle
// says that the sandbox will wait in a pool (see sandbox.Config.Prefault).
func (m *Manager) start(ctx context.Context, t *policy.Template, bypassSnapshot, idle bool) (*sandbox.Sandbox, error) {
	if !bypassSnapshot {
		if image, ok := m.snapshotImage(t); ok {
			sb, err := m.restore(ctx, t, image, idle)
			if err == nil {
				m.snapshots.RestoreSucceeded(t.Name)
				return sb, nil
			}
			if ctx.Err() != nil {
				return nil, err
			}
			m.snapshots.RestoreFailed(t.Name, err)
			if p := m.poolFor(t.Name); p != nil {
				p.NoteFailure(fmt.Errorf("restoring from the snapshot (booted instead): %w", err))
			} else {
				m.log.Warn("restoring from the snapshot failed; booting instead", "template", t.Name, "err", err)
			}
		}
	}
	return m.boot(ctx, t)
}

// sandboxConfig returns the configuration of a new sandbox of t with the
// given ID, the runsc flags it runs under included; the cgroup is not set.
func (m *Manager) sandboxConfig(id string, t *policy.Template) sandbox.Config {
	rootfs := t.Rootfs
	if rootfs == policy.DefaultRootfs {
		rootfs = m.cfg.DefaultRootfs
	}
	r := m.cfg.Runsc
	// The writable layer lives in sandbox memory, capped at the template's
	// disk size: writes beyond it fail with ENOSPC inside the sandbox.
	r.Overlay = fmt.Sprintf("root:memory,size=%d", t.Limits.Disk)
	return sandbox.Config{
		ID: id,
		Spec: ocispec.Params{
			EgressProxy: egressProxy(t),
			RootfsDir:   rootfs,
			AgentBinary: m.cfg.AgentBinary,
			Env:         t.Env,
			OpenFiles:   uint64(t.Limits.OpenFiles),
			Processes:   uint64(t.Limits.Processes),
			FileSize:    uint64(t.Limits.FileSize),
			TmpSize:     uint64(t.Limits.Disk),
		},
		BundleDir:          filepath.Join(m.bundlesDir(), id),
		Runsc:              &r,
		StartPython:        true,
		PythonAddressSpace: t.Limits.PythonAddressSpace,
		WarmImports:        t.WarmImports,
		Logger:             m.log,
		HolderSocket:       m.holderSocket(id),
	}
}

// egressProxy is the address of the egress proxy that a sandbox of t
// reaches the network through, or "" when t has no egress.
func egressProxy(t *policy.Template) string {
	if t.Network != policy.NetworkAllowlist {
		return ""
	}
	return egressProxyAddr
}

// boot cold-boots one sandbox of a template, warm imports included.
func (m *Manager) boot(ctx context.Context, t *policy.Template) (*sandbox.Sandbox, error) {
	start := now()
	sb, err := m.launch(ctx, t, func(cfg sandbox.Config) (*sandbox.Sandbox, error) { return sandbox.Boot(ctx, cfg) })
	if err != nil {
		m.metrics.BootFailed(t.Name)
		return nil, err
	}
	m.metrics.Booted(t.Name, now().Sub(start))
	return sb, nil
}

// restore makes one sandbox of a template from its snapshot image;
// prefault for one that will wait in a pool.
func (m *Manager) restore(ctx context.Context, t *policy.Template, image string, prefault bool) (*sandbox.Sandbox, error) {
	start := now()
	sb, err := m.launch(ctx, t, func(cfg sandbox.Config) (*sandbox.Sandbox, error) {
		cfg.Prefault = prefault
		return sandbox.Restore(ctx, cfg, image)
	})
	if err != nil {
		m.metrics.RestoreFailed(t.Name)
		return nil, err
	}
	m.metrics.Restored(t.Name, now().Sub(start))
	return sb, nil
}

// launch gives a new sandbox of t an ID and a cgroup with the template's
// limits, then starts it with run.
func (m *Manager) launch(ctx context.Context, t *policy.Template, run func(sandbox.Config) (*sandbox.Sandbox, error)) (*sandbox.Sandbox, error) {
	id := identifiers.NewNodeID(m.cfg.Node)
	group, err := m.cfg.Cgroups.Create(id, cgroups.Resources{CPU: t.Limits.CPU, Memory: t.Limits.Memory})
	if err != nil {
		return nil, fmt.Errorf("creating the sandbox's cgroup: %w", err)
	}
	cfg := m.sandboxConfig(id, t)
	cfg.Cgroup = group // Boot and Restore delete it if they fail
	return run(cfg)
}

// register adds a sandbox, unless the manager closed meanwhile.
func (m *Manager) register(e *entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errShuttingDown
	}
	m.sandboxes[e.id] = e
	m.metrics.Created(e.tmpl.Name)
	return nil
}

// finish ends a sandbox for good, however it ended: it kills the running
// sandbox at once (a call in progress fails fast rather than holding the
// clean-up), waits until no call, pause or resume holds the sandbox, then
// frees everything: the sandbox, its paused image, its state record and
// its place. Calling it again does nothing more.
func (m *Manager) finish(ctx context.Context, e *entry) error {
	var err error
	if sb := e.sandbox(); sb != nil {
		err = sb.Destroy(ctx)
	}
	e.op.Lock()
	defer e.op.Unlock()
	if ferr := m.freeLocked(ctx, e); err == nil {
		err = ferr
	}
	return err
}

// endLocked marks e dead for reason and frees everything it held; the
// caller holds e.op alone.
func (m *Manager) endLocked(ctx context.Context, e *entry, reason string) {
	if e.markDead(reason) {
		m.log.Warn("sandbox lost", "sandbox", e.id, "reason", reason)
	}
	if err := m.freeLocked(context.WithoutCancel(ctx), e); err != nil {
		m.log.Warn("cleaning up a lost sandbox", "sandbox", e.id, "err", err)
	}
}

// freeLocked frees what e holds: its sandbox, paused image, state record
// and place. The caller holds e.op alone.
func (m *Manager) freeLocked(ctx context.Context, e *entry) error {
	var err error
	m.stopEgress(e)
	e.mu.Lock()
	sb, release, image, size := e.sb, e.release, e.image, e.imageBytes
	e.release, e.image, e.imageBytes, e.sealed = nil, "", 0, nil
	e.mu.Unlock()
	if sb != nil {
		// A resume may have replaced the sandbox finish killed; Destroy of
		// the same one again returns its first result.
		err = sb.Destroy(ctx)
	}
	if image != "" {
		m.dropImage(image, size)
	}
	m.forgetRecord(e)
	if release != nil {
		release()
	}
	e.destroyedOnce.Do(func() { m.metrics.Destroyed(e.tmpl.Name) })
	return err
}

// watch marks a sandbox dead and frees its resources when it ends on its
// own (crash, kill from outside). A destroyed or paused sandbox is not
// marked.
func (m *Manager) watch(e *entry, sb *sandbox.Sandbox) {
	<-sb.Exited()
	if !sb.Died() {
		return
	}
	reason := sb.ExitReason()
	if e.markDead(reason) {
		m.log.Warn("sandbox died", "sandbox", e.id, "reason", reason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.finish(ctx, e); err != nil {
		m.log.Warn("cleaning up dead sandbox", "sandbox", e.id, "err", err)
	}
}
