package manager

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/sandboxd/sandboxd/policy"
	"github.com/sandboxd/sandboxd/runtime/errdefs"
	"github.com/sandboxd/sandboxd/runtime/identifiers"
	"github.com/sandboxd/sandboxd/runtime/ocispec"
	"github.com/sandboxd/sandboxd/runtime/sandbox"
)

// BootTimeout bounds one cold boot. A boot takes ~150 ms plus the Python
// worker; a minute means the host is badly overloaded, and the client is
// better served by an error than by waiting.
const BootTimeout = 60 * time.Second

// Create boots a sandbox from the named template ("" for the default).
func (m *Manager) Create(ctx context.Context, template string, labels map[string]string) (Info, error) {
	if err := identifiers.ValidateLabels(labels); err != nil {
		return Info{}, err
	}
	pol := m.Policy()
	tmpl, err := pol.Template(template)
	if err != nil {
		if errors.Is(err, policy.ErrUnknownTemplate) {
			return Info{}, fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
		}
		return Info{}, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	if err := m.reserve(pol); err != nil {
		return Info{}, err
	}
	defer m.release()

	id := identifiers.NewID()
	bctx, cancel := context.WithTimeout(ctx, BootTimeout)
	defer cancel()
	start := now()
	sb, err := sandbox.Boot(bctx, m.bootConfig(id, tmpl))
	if err != nil {
		if ctx.Err() != nil {
			return Info{}, fmt.Errorf("creating sandbox: %w", ctx.Err())
		}
		return Info{}, fmt.Errorf("booting sandbox from template %q: %w: %w", tmpl.Name, err, errdefs.ErrUnavailable)
	}
	e := &entry{id: id, tmpl: tmpl, labels: labels, createdAt: now(), sb: sb, state: StateRunning}
	e.touch()
	if err := m.register(e); err != nil {
		sb.Destroy(context.WithoutCancel(ctx))
		return Info{}, err
	}
	go m.watch(e)
	m.log.Info("sandbox created", "sandbox", id, "template", tmpl.Name, "boot", now().Sub(start).Round(time.Millisecond))
	return e.info(), nil
}

// reserve takes a slot under the host limit for a boot.
func (m *Manager) reserve(pol *policy.Policy) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("sandboxd is shutting down: %w", errdefs.ErrUnavailable)
	}
	live := m.booting
	for _, e := range m.sandboxes {
		if st, _ := e.status(); st == StateRunning {
			live++
		}
	}
	if live >= pol.Host.MaxSandboxes {
		return fmt.Errorf("host limit of %d sandboxes reached (policy host.max_sandboxes): destroy a sandbox first: %w", pol.Host.MaxSandboxes, errdefs.ErrResourceExhausted)
	}
	m.booting++
	return nil
}

func (m *Manager) release() {
	m.mu.Lock()
	m.booting--
	m.mu.Unlock()
}

// register adds a booted sandbox, unless the manager closed meanwhile.
func (m *Manager) register(e *entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("sandboxd is shutting down: %w", errdefs.ErrUnavailable)
	}
	m.sandboxes[e.id] = e
	return nil
}

// bootConfig turns a template into the parameters of one sandbox.
func (m *Manager) bootConfig(id string, t *policy.Template) sandbox.Config {
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
			RootfsDir:   rootfs,
			AgentBinary: m.cfg.AgentBinary,
			Env:         t.Env,
			OpenFiles:   uint64(t.Limits.OpenFiles),
			Processes:   uint64(t.Limits.Processes),
			FileSize:    uint64(t.Limits.FileSize),
			TmpSize:     uint64(t.Limits.Disk),
		},
		BundleDir:   filepath.Join(m.bundlesDir(), id),
		Runsc:       &r,
		StartPython: true,
		Logger:      m.log,
	}
}

// watch marks a sandbox dead and frees its resources when it ends on its
// own (crash, kill from outside). A destroyed sandbox is not marked.
func (m *Manager) watch(e *entry) {
	<-e.sb.Exited()
	if e.sb.Destroyed() {
		return
	}
	reason := e.sb.ExitReason()
	if e.markDead(reason) {
		m.log.Warn("sandbox died", "sandbox", e.id, "reason", reason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.sb.Destroy(ctx); err != nil {
		m.log.Warn("cleaning up dead sandbox", "sandbox", e.id, "err", err)
	}
}
