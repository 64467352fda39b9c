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
	// BypassPool boots a fresh sandbox even if the pool has one ready.
	BypassPool bool
	// Limits lower the template's limits for this sandbox; zero fields keep
	// the template's. Lowering one fixed at boot skips the pool.
	Limits Limits
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
		if atBoot {
			// Pooled sandboxes were booted with the template's limits.
			s, err = p.BootWith(bctx, m.booter(tmpl))
			cold = true
		} else {
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
		if sb, err = m.boot(bctx, tmpl); err != nil {
			m.slots.Release()
			m.metrics.AcquireFailed()
			return Info{}, m.bootFailed(ctx, tmpl, err)
		}
		cold, release = true, m.slots.Release
	}
	m.metrics.Acquired(cold, now().Sub(start))

	e := &entry{id: sb.ID(), tmpl: tmpl, labels: req.Labels, createdAt: now(), sb: sb, state: StateRunning, cold: cold, release: release}
	e.touch()
	if err := m.register(e); err != nil {
		m.finish(context.WithoutCancel(ctx), e)
		return Info{}, err
	}
	go m.watch(e)
	m.log.Info("sandbox created", "sandbox", e.id, "template", tmpl.Name, "cold", cold, "took", now().Sub(start).Round(time.Microsecond))
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

// boot cold-boots one sandbox of a template, warm imports included.
func (m *Manager) boot(ctx context.Context, t *policy.Template) (*sandbox.Sandbox, error) {
	id := identifiers.NewID()
	rootfs := t.Rootfs
	if rootfs == policy.DefaultRootfs {
		rootfs = m.cfg.DefaultRootfs
	}
	r := m.cfg.Runsc
	// The writable layer lives in sandbox memory, capped at the template's
	// disk size: writes beyond it fail with ENOSPC inside the sandbox.
	r.Overlay = fmt.Sprintf("root:memory,size=%d", t.Limits.Disk)
	start := now()
	group, err := m.cfg.Cgroups.Create(id, cgroups.Resources{CPU: t.Limits.CPU, Memory: t.Limits.Memory})
	if err != nil {
		m.metrics.BootFailed(t.Name)
		return nil, fmt.Errorf("creating the sandbox's cgroup: %w", err)
	}
	sb, err := sandbox.Boot(ctx, sandbox.Config{
		ID: id,
		Spec: ocispec.Params{
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
		Warmup:             sandbox.WarmupCode(t.WarmImports),
		Cgroup:             group, // Boot deletes it if it fails
		Logger:             m.log,
	})
	if err != nil {
		m.metrics.BootFailed(t.Name)
		return nil, err
	}
	m.metrics.Booted(t.Name, now().Sub(start))
	return sb, nil
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

// finish destroys a sandbox's resources and gives back its place; it runs
// once per sandbox, however it ended.
func (m *Manager) finish(ctx context.Context, e *entry) error {
	err := e.sb.Destroy(ctx)
	e.releaseOnce.Do(func() {
		e.release()
		m.metrics.Destroyed(e.tmpl.Name)
	})
	return err
}

// watch marks a sandbox dead and frees its resources when it ends on its
// own (crash, kill from outside). A destroyed sandbox is not marked.
func (m *Manager) watch(e *entry) {
	<-e.sb.Exited()
	if !e.sb.Died() {
		return
	}
	reason := e.sb.ExitReason()
	if e.markDead(reason) {
		m.log.Warn("sandbox died", "sandbox", e.id, "reason", reason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.finish(ctx, e); err != nil {
		m.log.Warn("cleaning up dead sandbox", "sandbox", e.id, "err", err)
	}
}
