package manager

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/sandboxd/sandboxd/runtime/identifiers"
)

// reconcile removes what an earlier run of this daemon left behind: runsc
// sandboxes in its root (create/start sandboxes outlive the daemon), bundle
// directories, cgroups, and any runsc process still naming its root. The state
// directory and runsc root are this daemon's alone (the daemon holds a lock
// on them), so everything found there is ours.
func (m *Manager) reconcile(ctx context.Context) error {
	r := m.cfg.Runsc
	if err := os.MkdirAll(r.Root, 0o700); err != nil {
		return fmt.Errorf("creating runsc root: %w", err)
	}
	left, err := r.List(ctx)
	if err != nil {
		return err
	}
	for _, c := range left {
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
	if n := killStrays(r.Root); n > 0 {
		m.log.Warn("killed leftover runsc processes", "count", n)
	}
	groups, err := m.cfg.Cgroups.List()
	if err != nil {
		return err
	}
	for _, id := range groups {
		g, err := m.cfg.Cgroups.Load(id)
		if err == nil {
			err = g.Delete()
		}
		if err != nil {
			return fmt.Errorf("deleting leftover cgroup %s: %w", id, err)
		}
		m.log.Info("deleted leftover cgroup", "sandbox", id)
	}
	if err := os.RemoveAll(m.bundlesDir()); err != nil {
		return fmt.Errorf("removing old bundles: %w", err)
	}
	if err := os.MkdirAll(m.bundlesDir(), 0o700); err != nil {
		return fmt.Errorf("creating bundles directory: %w", err)
	}
	return nil
}

// killStrays SIGKILLs every process whose command line carries
// --root=<root>: runsc sandbox, gofer and helper processes whose state
// files were lost (e.g. the daemon was killed in the middle of a create).
func killStrays(root string) int {
	flag := []byte("--root=" + root + "\x00")
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	n := 0
	for _, p := range procs {
		cmdline, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(cmdline, flag) {
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
