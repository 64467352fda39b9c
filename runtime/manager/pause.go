package manager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/sandboxd/sandboxd/policy"
	"github.com/sandboxd/sandboxd/runtime/cgroups"
	"github.com/sandboxd/sandboxd/runtime/errdefs"
	"github.com/sandboxd/sandboxd/runtime/runsc"
	"github.com/sandboxd/sandboxd/runtime/sandbox"
	"github.com/sandboxd/sandboxd/runtime/snapshot"
)

// PauseTimeout bounds one pause: quiescing the agent and writing the
// image take about a second for a default sandbox, longer for one holding
// a lot of memory (the image is written at disk speed); past two minutes
// something is stuck.
const PauseTimeout = 2 * time.Minute

// pauseBusyWait is how long a requested pause waits for the calls in
// progress to end before it refuses: a client that pauses right after its
// Exec's result arrived would otherwise race the end of that call, but a
// sandbox kept busy is refused rather than waited for.
const pauseBusyWait = time.Second

// busyPoll is how often a waiting pause looks again.
const busyPoll = 5 * time.Millisecond

// pausingPrefix names the directory a pause writes its image into before
// it is complete and renamed to the sandbox's ID.
const pausingPrefix = ".pausing-"

// pausedImages accounts for the disk space of paused sandboxes' images.
type pausedImages struct {
	mu      sync.Mutex
	bytes   int64
	metrics Metrics
}

func (p *pausedImages) add(n int64) {
	p.mu.Lock()
	p.bytes += n
	p.metrics.PausedImages(p.bytes)
	p.mu.Unlock()
}

func (p *pausedImages) total() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bytes
}

func (m *Manager) pausedDir() string { return filepath.Join(m.cfg.StateDir, "paused") }

// Pause checkpoints a running sandbox to disk and frees its processes,
// memory and cgroup. A paused sandbox stays paused; a busy one (an Exec or
// a transfer running) is refused with FailedPrecondition.
func (m *Manager) Pause(ctx context.Context, id string) (Info, error) {
	if err := m.checkID(id); err != nil {
		return Info{}, err
	}
	e, err := m.lookup(ctx, id)
	if err != nil {
		return Info{}, err
	}
	e.touch()
	if err := m.pause(ctx, e, "requested", pauseBusyWait); err != nil {
		return Info{}, err
	}
	m.enforcePausedCap(ctx)
	return e.info(), nil
}

// Resume restores a paused sandbox; a running one is left as it is.
func (m *Manager) Resume(ctx context.Context, id string) (Info, error) {
	if err := m.checkID(id); err != nil {
		return Info{}, err
	}
	e, err := m.lookup(ctx, id)
	if err != nil {
		return Info{}, err
	}
	e.touch()
	if err := m.resume(ctx, e); err != nil {
		return Info{}, err
	}
	return e.info(), nil
}

// pause checkpoints e's sandbox into STATE_DIR/paused/<id>/ and frees the
// rest. It never cuts a call in progress: it waits up to busyWait (or ctx)
// for the calls to end, then refuses. If the checkpoint fails after the
// agent let go of its connection, the sandbox cannot serve again and is
// marked dead.
func (m *Manager) pause(ctx context.Context, e *entry, why string, busyWait time.Duration) error {
	if !lockWithin(ctx, &e.op, busyWait) {
		return fmt.Errorf("sandbox %q is busy (an Exec or a file transfer is running, or it is being resumed): pause it when it is idle: %w", e.id, errdefs.ErrFailedPrecondition)
	}
	defer e.op.Unlock()
	e.mu.Lock()
	st, reason, gone, sb := e.state, e.reason, e.gone, e.sb
	e.mu.Unlock()
	switch {
	case gone:
		return fmt.Errorf("sandbox %q was destroyed: %w", e.id, errdefs.ErrNotFound)
	case st == StatePaused:
		return nil
	case st != StateRunning:
		return fmt.Errorf("sandbox %q is %s (%s): %w", e.id, st, reason, errdefs.ErrFailedPrecondition)
	}
	start := now()
	ctx, cancel := context.WithTimeout(ctx, PauseTimeout)
	defer cancel()
	dir := filepath.Join(m.pausedDir(), e.id)
	tmp := filepath.Join(m.pausedDir(), pausingPrefix+e.id)
	os.RemoveAll(tmp)
	// Egress connections are cut, not waited for: a pause must not depend
	// on what the sandbox's clients keep open.
	m.stopEgress(e)
	err := sb.Checkpoint(ctx, tmp, runsc.CheckpointOpts{ExcludeZeroPages: true})
	if errors.Is(err, sandbox.ErrNotQuiesced) {
		os.RemoveAll(tmp)
		if sb.Died() {
			return fmt.Errorf("pausing sandbox %q: it ended: %w", e.id, errdefs.ErrFailedPrecondition)
		}
		m.startEgress(e, sb) // it goes on running
		return fmt.Errorf("pausing sandbox %q: %w: %w", e.id, errdefs.FromGRPC(errors.Unwrap(err)), errdefs.ErrFailedPrecondition)
	}
	var sealed *snapshot.Sealed
	if err == nil {
		sealed, err = snapshot.Seal(tmp, e.id)
	}
	if err == nil {
		err = os.Rename(tmp, dir)
	}
	if err != nil {
		os.RemoveAll(tmp)
		m.endLocked(ctx, e, fmt.Sprintf("pausing failed: %v", err))
		return fmt.Errorf("pausing sandbox %q failed and it cannot be used any more: %w: %w", e.id, err, errdefs.ErrFailedPrecondition)
	}
	// The sandbox stopped with the checkpoint; free its pipes, runsc
	// state, bundle and cgroup.
	if err := sb.Destroy(context.WithoutCancel(ctx)); err != nil {
		m.log.Warn("freeing a paused sandbox's resources", "sandbox", e.id, "err", err)
	}
	e.mu.Lock()
	release := e.release
	e.sb, e.release = nil, nil
	e.image, e.imageBytes, e.sealed = dir, sealed.Bytes, sealed
	// The reaper may have ended it meanwhile (it marks without waiting
	// for op): then it stays dead, and the clean-up waiting for op
	// deletes the image.
	ended := e.state != StateRunning
	if !ended {
		e.state, e.pausedAt = StatePaused, now()
	}
	e.mu.Unlock()
	if release != nil {
		release()
	}
	m.paused.add(sealed.Bytes)
	if ended {
		return fmt.Errorf("sandbox %q ended while it was being paused: %w", e.id, errdefs.ErrFailedPrecondition)
	}
	m.saveRecord(e)
	m.metrics.Paused(e.tmpl.Name, now().Sub(start))
	m.log.Info("sandbox paused", "sandbox", e.id, "why", why, "image_bytes", sealed.Bytes, "took", now().Sub(start).Round(time.Millisecond))
	return nil
}

// lockWithin takes mu alone if it can within wait (and before ctx ends),
// trying again every busyPoll: unlike Lock, a waiting attempt does not hold
// up new readers, so a sandbox kept busy is refused rather than stalled.
func lockWithin(ctx context.Context, mu *sync.RWMutex, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		if mu.TryLock() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(busyPoll):
		}
	}
}

// resume restores e's paused sandbox from its image, under the same ID,
// with the limits it had. A damaged image or a failed restore loses the
// sandbox: it is marked dead and its image deleted. A cancelled caller
// leaves it paused.
func (m *Manager) resume(ctx context.Context, e *entry) error {
	e.op.Lock()
	defer e.op.Unlock()
	e.mu.Lock()
	st, gone, image, size, sealed := e.state, e.gone, e.image, e.imageBytes, e.sealed
	e.mu.Unlock()
	switch {
	case gone:
		return fmt.Errorf("sandbox %q was destroyed: %w", e.id, errdefs.ErrNotFound)
	case st != StatePaused:
		return nil // resumed meanwhile, or dead: the caller looks again
	}
	if m.isClosed() {
		return errShuttingDown
	}
	start := now()
	release, err := m.admit(e.tmpl)
	if err != nil {
		return fmt.Errorf("resuming sandbox %q: %w", e.id, err)
	}
	if sealed != nil {
		err = sealed.Check(image)
	} else {
		_, err = snapshot.Verify(image, e.id)
	}
	if err != nil {
		release()
		m.endLocked(ctx, e, fmt.Sprintf("its paused image is damaged: %v", err))
		return fmt.Errorf("resuming sandbox %q: its paused image is damaged (%v), so its state is lost: destroy it and create a new one: %w", e.id, err, errdefs.ErrDataLoss)
	}
	rctx, cancel := context.WithTimeout(ctx, BootTimeout)
	defer cancel()
	sb, err := m.resumeSandbox(rctx, e, image)
	if err != nil {
		release()
		if ctx.Err() != nil {
			return fmt.Errorf("resuming sandbox %q: %w", e.id, ctx.Err())
		}
		m.endLocked(ctx, e, fmt.Sprintf("resuming failed: %v", err))
		return fmt.Errorf("resuming sandbox %q failed, so its state is lost (%v): destroy it and create a new one: %w", e.id, err, errdefs.ErrFailedPrecondition)
	}
	e.mu.Lock()
	e.sb, e.release = sb, release
	// As in pause: a sandbox the reaper ended meanwhile stays dead, and
	// the clean-up waiting for op destroys what the resume made.
	ended := e.state != StatePaused
	if !ended {
		e.state, e.pausedAt = StateRunning, time.Time{}
		e.image, e.imageBytes, e.sealed = "", 0, nil
	}
	e.mu.Unlock()
	if ended {
		return fmt.Errorf("sandbox %q ended while it was being resumed: %w", e.id, errdefs.ErrFailedPrecondition)
	}
	// The restored sandbox no longer needs its image (a restore still
	// reading it in the background keeps the files open).
	m.dropImage(image, size)
	m.saveRecord(e)
	go m.watch(e, sb)
	m.startEgress(e, sb)
	m.metrics.Resumed(e.tmpl.Name, now().Sub(start))
	m.log.Info("sandbox resumed", "sandbox", e.id, "took", now().Sub(start).Round(time.Millisecond))
	return nil
}

// admit takes the place a resumed sandbox of t runs in: under its pool's
// max_total if it has one, and a host slot.
func (m *Manager) admit(t *policy.Template) (release func(), _ error) {
	if p := m.poolFor(t.Name); p != nil {
		if err := p.Admit(); err != nil {
			return nil, err
		}
		return p.Release, nil
	}
	if !m.slots.TryAcquire() {
		return nil, errHostFull(m.Policy())
	}
	return m.slots.Release, nil
}

// resumeSandbox restores the image into a sandbox with e's ID, in a new
// cgroup with e's limits.
func (m *Manager) resumeSandbox(ctx context.Context, e *entry, image string) (*sandbox.Sandbox, error) {
	group, err := m.cfg.Cgroups.Create(e.id, cgroups.Resources{CPU: e.tmpl.Limits.CPU, Memory: e.tmpl.Limits.Memory})
	if err != nil {
		return nil, fmt.Errorf("creating the sandbox's cgroup: %w", err)
	}
	cfg := m.sandboxConfig(e.id, e.tmpl)
	cfg.Cgroup = group // Resume deletes it if it fails
	return sandbox.Resume(ctx, cfg, image)
}

// maxAutoPauses is how many idle sandboxes are paused at once: a
// checkpoint is CPU- and disk-heavy, and on a 2-core host two at a time
// leave room for the sandboxes that are serving.
const maxAutoPauses = 2

// autoPause pauses an idle sandbox in the background, unless maxAutoPauses
// pauses already run (the reaper tries again a second later). A sandbox
// that became busy meanwhile is left running.
func (m *Manager) autoPause(ctx context.Context, e *entry) {
	select {
	case m.autoPauses <- struct{}{}:
	default:
		return
	}
	go func() {
		defer func() { <-m.autoPauses }()
		why := fmt.Sprintf("idle for more than %s (pause_after)", e.tmpl.PauseAfter)
		// Not cut by the reaper stopping: Close waits for it instead.
		if err := m.pause(context.WithoutCancel(ctx), e, why, 0); err != nil {
			if !errors.Is(err, errdefs.ErrFailedPrecondition) || e.inflight.Load() == 0 {
				m.log.Warn("pausing an idle sandbox", "sandbox", e.id, "err", err)
			}
			return
		}
		m.enforcePausedCap(ctx)
	}()
}

// dropImage deletes a paused image and its share of the paused bytes.
func (m *Manager) dropImage(dir string, size int64) {
	if err := os.RemoveAll(dir); err != nil {
		m.log.Warn("deleting a paused image", "dir", dir, "err", err)
	}
	m.paused.add(-size)
}

// enforcePausedCap destroys the oldest paused sandboxes while their images
// take more than host.max_paused_bytes.
func (m *Manager) enforcePausedCap(ctx context.Context) {
	max := m.Policy().Host.MaxPausedBytes
	for m.paused.total() > max {
		m.mu.Lock()
		var paused []*entry
		for _, e := range m.sandboxes {
			if st, _ := e.status(); st == StatePaused {
				paused = append(paused, e)
			}
		}
		m.mu.Unlock()
		if len(paused) == 0 {
			return
		}
		oldest := slices.MinFunc(paused, func(a, b *entry) int {
			a.mu.Lock()
			at := a.pausedAt
			a.mu.Unlock()
			b.mu.Lock()
			bt := b.pausedAt
			b.mu.Unlock()
			return at.Compare(bt)
		})
		reason := fmt.Sprintf("destroyed while paused: paused images were over host.max_paused_bytes (%d bytes), and it was the oldest", max)
		if !oldest.markDead(reason) {
			continue
		}
		m.log.Warn("paused sandbox destroyed to stay within host.max_paused_bytes", "sandbox", oldest.id, "paused_bytes", m.paused.total(), "max_paused_bytes", max)
		if err := m.finish(context.WithoutCancel(ctx), oldest); err != nil {
			m.log.Warn("destroying a paused sandbox", "sandbox", oldest.id, "err", err)
		}
	}
}
