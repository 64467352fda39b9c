package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
)

// Group is the cgroup of one sandbox. It is safe for concurrent use.
type Group struct {
	m    *Manager
	path string // e.g. "/sandboxd/<id>"
}

func (m *Manager) group(id string) *Group {
	return &Group{m: m, path: m.path() + "/" + id}
}

// Path returns the group's cgroup path, the value for the OCI spec's
// linux.cgroupsPath, e.g. "/sandboxd/<id>".
func (g *Group) Path() string { return g.path }

// dir returns the group's directory of a v1 controller; on v2 the one
// directory, whatever the controller.
func (g *Group) dir(controller string) string {
	if g.m.v2 {
		return filepath.Join(g.m.root, g.path)
	}
	return filepath.Join(g.m.root, controller, g.path)
}

// OOMKilled reports whether the kernel has OOM-killed any process of the
// group since it was created.
func (g *Group) OOMKilled() (bool, error) {
	n, err := g.oomKills()
	if err != nil {
		return false, fmt.Errorf("reading OOM kills of %s: %w", g.path, err)
	}
	return n > 0, nil
}

// Delete kills the group's processes and removes the group from every
// controller. Deleting a group that does not exist returns nil.
func (g *Group) Delete() error {
	if err := g.Kill(); err != nil {
		return err
	}
	if err := g.m.remove(g.path); err != nil {
		return fmt.Errorf("removing cgroup %s: %w", g.path, err)
	}
	return nil
}

// remove removes the empty cgroup path from every controller; a missing
// one is no error.
func (m *Manager) remove(path string) error {
	if m.v2 {
		if _, err := os.Stat(filepath.Join(m.root, path)); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		cg, err := cgroup2.Load(path, cgroup2.WithMountpoint(m.root))
		if err != nil {
			return err
		}
		return cg.Delete()
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(path))
	if errors.Is(err, cgroup1.ErrCgroupDeleted) {
		return nil
	}
	if err != nil {
		return err
	}
	return cg.Delete()
}
