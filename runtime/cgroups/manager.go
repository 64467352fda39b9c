package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sandboxd/sandboxd/runtime/errdefs"
	"github.com/sandboxd/sandboxd/runtime/identifiers"
)

// unifiedMount is where cgroup v2 is mounted on a unified host.
const unifiedMount = "/sys/fs/cgroup"

// requiredV1 are the v1 controllers a sandbox cgroup needs: limits (cpu,
// memory, pids) and usage (cpuacct). Groups are created in every other
// mounted controller too: runsc joins all it knows, and creating a
// missing one itself adds 15-25 ms to a sandbox's boot.
var requiredV1 = []string{"cpu", "cpuacct", "memory", "pids"}

// requiredV2 are the v2 controllers a sandbox cgroup needs.
var requiredV2 = []string{"cpu", "memory", "pids"}

// Manager creates sandbox cgroups under one parent cgroup. It is safe for
// concurrent use.
type Manager struct {
	parent string // validated, relative, e.g. "sandboxd"
	v2     bool
	// root is the v1 hierarchy root holding one directory per controller
	// (/sys/fs/cgroup), or the v2 mount point.
	root string
	// controllers are the mounted v1 controllers' directory names in root.
	controllers []string
	// swap: the kernel accounts swap, so limits include it.
	swap bool
}

// NewManager detects the host's cgroup mode and creates (or reuses) the
// parent cgroup, a relative name such as "sandboxd". On v2 it enables the
// cpu, memory and pids controllers for the parent's children.
func NewManager(parent string) (*Manager, error) {
	if err := validateParent(parent); err != nil {
		return nil, err
	}
	switch cgroups.Mode() {
	case cgroups.Unified:
		return newManagerV2(parent)
	case cgroups.Legacy, cgroups.Hybrid:
		return newManagerV1(parent)
	default:
		return nil, fmt.Errorf("detecting cgroup mode: no cgroup file system at %s", unifiedMount)
	}
}

func newManagerV1(parent string) (*Manager, error) {
	subsystems, err := cgroup1.Default()
	if err != nil {
		return nil, fmt.Errorf("finding cgroup v1 controllers: %w", err)
	}
	m := &Manager{parent: parent}
	for _, s := range subsystems {
		// Every controller is a directory of the same root.
		dir := s.(interface{ Path(string) string }).Path("/")
		m.root = filepath.Dir(dir)
		m.controllers = append(m.controllers, filepath.Base(dir))
	}
	for _, name := range requiredV1 {
		if !slices.Contains(m.controllers, name) {
			return nil, fmt.Errorf("cgroup v1 controller %s is not mounted", name)
		}
	}
	if _, err := cgroup1.New(cgroup1.StaticPath(m.path()), &specs.LinuxResources{}); err != nil {
		return nil, fmt.Errorf("creating cgroup %s: %w", m.path(), err)
	}
	m.swap = exists(filepath.Join(m.root, "memory", m.path(), "memory.memsw.limit_in_bytes"))
	return m, nil
}

func newManagerV2(parent string) (*Manager, error) {
	m := &Manager{parent: parent, v2: true, root: unifiedMount}
	dir := filepath.Join(m.root, m.path())
	enable := "+" + strings.Join(requiredV2, " +")
	// In a container the daemon's cgroup may be an ancestor of the parent
	// (leaf.go): its processes move to a leaf first.
	if err := enableInLeaf(m.root, m.path(), func() error {
		// Enables the controllers in every ancestor's subtree_control.
		if _, err := cgroup2.NewManager(m.root, m.path(), &cgroup2.Resources{
			CPU: &cgroup2.CPU{}, Memory: &cgroup2.Memory{}, Pids: &cgroup2.Pids{},
		}); err != nil {
			return fmt.Errorf("creating cgroup %s: %w", m.path(), err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(enable), 0); err != nil {
			return fmt.Errorf("enabling %s in cgroup %s: %w", enable, m.path(), err)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	m.swap = exists(filepath.Join(dir, "memory.swap.max"))
	return m, nil
}

// Version returns "v1" or "v2", the cgroup version the Manager uses.
func (m *Manager) Version() string {
	if m.v2 {
		return "v2"
	}
	return "v1"
}

// path is the parent's cgroup path, e.g. "/sandboxd".
func (m *Manager) path() string { return "/" + m.parent }

// Create creates the cgroup of sandbox id with limits r. It fails with
// errdefs.ErrAlreadyExists if the cgroup exists.
func (m *Manager) Create(id string, r Resources) (*Group, error) {
	if err := identifiers.ValidateID(id); err != nil {
		return nil, fmt.Errorf("creating cgroup: %w", err)
	}
	l, err := r.limits()
	if err != nil {
		return nil, fmt.Errorf("creating cgroup %s: %w", id, err)
	}
	g := m.group(id)
	// Claim the id atomically: the library's own mkdir tolerates existing
	// directories.
	if err := os.Mkdir(g.dir("memory"), 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("creating cgroup %s: %w", g.path, errdefs.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("creating cgroup %s: %w", g.path, err)
	}
	if m.v2 {
		_, err = cgroup2.NewManager(m.root, g.path, l.v2(m.swap))
	} else {
		_, err = cgroup1.New(cgroup1.StaticPath(g.path), l.v1(m.swap))
	}
	if err != nil {
		err = fmt.Errorf("creating cgroup %s: %w", g.path, err)
		if derr := g.Delete(); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, err
	}
	return g, nil
}

// Load returns the existing cgroup of sandbox id, e.g. to delete a
// leftover. It fails with errdefs.ErrNotFound if there is none.
func (m *Manager) Load(id string) (*Group, error) {
	if err := identifiers.ValidateID(id); err != nil {
		return nil, fmt.Errorf("loading cgroup: %w", err)
	}
	g := m.group(id)
	if !slices.ContainsFunc(m.dirs(g.path), exists) {
		return nil, fmt.Errorf("loading cgroup %s: %w", g.path, errdefs.ErrNotFound)
	}
	return g, nil
}

// List returns the sandbox IDs that have a cgroup under the parent, in
// any controller, sorted. The daemon deletes these leftovers at start.
func (m *Manager) List() ([]string, error) {
	var ids []string
	for _, dir := range m.dirs(m.path()) {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing cgroups: %w", err)
		}
		for _, e := range entries {
			if e.IsDir() && identifiers.ValidateID(e.Name()) == nil {
				ids = append(ids, e.Name())
			}
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// Close removes the parent cgroup if it has no children; otherwise it
// leaves it in place and returns nil. It must not run concurrently with
// Create.
func (m *Manager) Close() error {
	for _, dir := range m.dirs(m.path()) {
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("closing cgroup %s: %w", m.path(), err)
		}
		if slices.ContainsFunc(entries, fs.DirEntry.IsDir) {
			return nil
		}
	}
	if err := m.remove(m.path()); err != nil {
		return fmt.Errorf("removing cgroup %s: %w", m.path(), err)
	}
	return nil
}

// dirs returns the directories of cgroup path in every controller: one
// per mounted controller on v1, one on v2.
func (m *Manager) dirs(path string) []string {
	if m.v2 {
		return []string{filepath.Join(m.root, path)}
	}
	dirs := make([]string, len(m.controllers))
	for i, c := range m.controllers {
		dirs[i] = filepath.Join(m.root, c, path)
	}
	return dirs
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
