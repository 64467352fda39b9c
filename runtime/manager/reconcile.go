package manager

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/sandboxd/sandboxd/runtime/holder"
	"github.com/sandboxd/sandboxd/runtime/identifiers"
)

// reconcile removes what an earlier run of this daemon left behind, except
// the sandboxes it adopted (keep): runsc sandboxes in its root
// (create/start sandboxes outlive the daemon), bundle directories, cgroups,
// holders, and any runsc process still naming its root. The state
// directory and runsc root are this daemon's alone (the daemon holds a lock
// on them), so everything found there is ours.
func (m *Manager) reconcile(ctx context.Context, keep map[string]bool) error {
	r := m.cfg.Runsc
	if err := os.MkdirAll(r.Root, 0o700); err != nil {
		return fmt.Errorf("creating runsc root: %w", err)
	}
	left, err := r.List(ctx)
	if err != nil {
		return err
	}
	for _, c := range left {
		if keep[c.ID] {
			continue
		}
		if identifiers.ValidateID(c.ID) != nil {
			m.log.Warn("ignoring unexpected entry in runsc root", "id", c.ID)
			continue
		}
		if err := r.Delete(ctx, c.ID); err != nil {
			m.log.Warn("deleting leftover sandbox", "sandbox", c.ID, "err", err)
			continue
		}
		m.log.Info("deleted leftover sandbox", "sandbox", c.ID, "status", c.Status)
	}
	if n := killStrays(r.Root, keep); n > 0 {
		m.log.Warn("killed leftover runsc processes", "count", n)
	}
	groups, err := m.cfg.Cgroups.List()
	if err != nil {
		return err
	}
	for _, id := range groups {
		if keep[id] {
			continue
		}
		g, err := m.cfg.Cgroups.Load(id)
		if err == nil {
			err = g.Delete()
		}
		if err != nil {
			return fmt.Errorf("deleting leftover cgroup %s: %w", id, err)
		}
		m.log.Info("deleted leftover cgroup", "sandbox", id)
	}
	if err := os.MkdirAll(m.bundlesDir(), 0o700); err != nil {
		return fmt.Errorf("creating bundles directory: %w", err)
	}
	if err := removeAllBut(m.bundlesDir(), keep, ""); err != nil {
		return fmt.Errorf("removing old bundles: %w", err)
	}
	m.releaseHolders(ctx, keep)
	return nil
}

// removeAllBut removes every entry of dir but those named ID+suffix for an
// ID in keep.
func removeAllBut(dir string, keep map[string]bool, suffix string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, de := range ents {
		if id, ok := strings.CutSuffix(de.Name(), suffix); ok && keep[id] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, de.Name())); err != nil {
			return err
		}
	}
	return nil
}

// releaseHolders ends the holders of sandboxes that were not adopted (their
// sandboxes were deleted above, so most exited already) and removes their
// sockets.
func (m *Manager) releaseHolders(ctx context.Context, keep map[string]bool) {
	ents, err := os.ReadDir(m.holdersDir())
	if err != nil {
		m.log.Warn("listing holders", "err", err)
		return
	}
	for _, de := range ents {
		id, _ := strings.CutSuffix(de.Name(), ".sock")
		if keep[id] {
			continue
		}
		sock := filepath.Join(m.holdersDir(), de.Name())
		if err := holder.Release(ctx, sock); err != nil && !errors.Is(err, holder.ErrGone) {
			m.log.Warn("releasing a leftover holder", "socket", sock, "err", err)
		}
		os.Remove(sock)
	}
}

// killStrays SIGKILLs every process whose command line carries
// --root=<root> and names no sandbox of keep: runsc sandbox, gofer and
// helper processes whose state files were lost (e.g. the daemon was killed
// in the middle of a create).
func killStrays(root string, keep map[string]bool) int {
	flag := []byte("--root=" + root + "\x00")
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	n := 0
	for _, p := range procs {
		cmdline, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(cmdline, flag) || namesAny(cmdline, keep) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}

// namesAny reports whether cmdline contains one of the IDs.
func namesAny(cmdline []byte, ids map[string]bool) bool {
	for id := range ids {
		if bytes.Contains(cmdline, []byte(id)) {
			return true
		}
	}
	return false
}
