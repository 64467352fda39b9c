package cgroups

// This file works around cgroup v2's "no internal processes" rule for a
// daemon that runs inside a container. A non-root cgroup that has
// processes of its own cannot enable a domain controller (cpu, memory,
// pids) for its children: writing cgroup.subtree_control fails with EBUSY
// (google/gvisor#8111, #8269). A privileged pod on a v2 host runs the
// daemon in the root of its private cgroup namespace, which is exactly
// such a cgroup: /sys/fs/cgroup there is the container's own cgroup, and
// the sandbox parent the Manager creates is its child. So before enabling
// controllers, the daemon moves the processes of its cgroup into a leaf
// child, as docker-in-docker's entrypoint does; runc's `exec` (Kubernetes
// probes, kubectl exec) then falls back to joining the container init's
// cgroup, which is that leaf.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// daemonLeaf is the child cgroup that takes the daemon's processes when
// the daemon's own cgroup must enable controllers for its children. It is
// a sibling of the sandboxes' parent, and its name says whose processes
// these are to anyone listing the pod's cgroups.
const daemonLeaf = "sandboxd-daemon"

// maxEnableTries bounds the attempts to enable the controllers when each
// fails with EBUSY: a process may join the vacated cgroup between the
// move and the write (a Kubernetes exec probe starting at that moment),
// and a second move settles it; more than a few such races in a row means
// something keeps putting processes there, which no retry fixes.
const maxEnableTries = 3

// procSelfCgroup is where the kernel tells a process its cgroups.
const procSelfCgroup = "/proc/self/cgroup"

// enableInLeaf runs enable, which writes cgroup.subtree_control in target
// and its ancestors (target is a cgroup path under the v2 mount, e.g.
// "/sandboxd-0123456789"), after moving the daemon's processes out of its
// own cgroup if that is target or one of target's ancestors. If enable
// still fails with EBUSY, it moves them again and retries, up to
// maxEnableTries in all.
func enableInLeaf(mount, target string, enable func() error) error {
	self, err := selfCgroupV2()
	if err != nil {
		return err
	}
	return enableInLeafAs(mount, self, target, os.Getpid(), enable)
}

// enableInLeafAs is enableInLeaf for the process pid in cgroup self (read
// once: after the first move the daemon is in the leaf, and a retry must
// empty the same cgroup again).
func enableInLeafAs(mount, self, target string, pid int, enable func() error) error {
	var err error
	for range maxEnableTries {
		if _, err := moveToLeaf(mount, self, target, pid); err != nil {
			return err
		}
		if err = enable(); !errors.Is(err, syscall.EBUSY) {
			return err
		}
	}
	return err
}

// selfCgroupV2 returns the daemon's cgroup v2 path, relative to its cgroup
// namespace, from /proc/self/cgroup.
func selfCgroupV2() (string, error) {
	data, err := os.ReadFile(procSelfCgroup)
	if err != nil {
		return "", fmt.Errorf("reading the daemon's cgroup: %w", err)
	}
	return parseSelfCgroupV2(data)
}

// parseSelfCgroupV2 returns the path of the "0::PATH" line of a
// /proc/PID/cgroup file: the process's cgroup in the v2 hierarchy.
func parseSelfCgroupV2(data []byte) (string, error) {
	for line := range strings.SplitSeq(string(data), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok && strings.HasPrefix(p, "/") {
			return path.Clean(p), nil
		}
	}
	return "", fmt.Errorf("reading the daemon's cgroup: %s has no cgroup v2 line (0::PATH)", procSelfCgroup)
}

// moveToLeaf moves every process of cgroup self into its child daemonLeaf
// when self is target or an ancestor of it, so that self may enable
// controllers for its children. mount is the cgroup v2 mount point; self
// and target are cgroup paths under it ("/" is the mount's root); pid is
// the daemon's, which must be in self or, after an earlier move, in its
// leaf. It returns the pids it moved, none when nothing needs to move:
// self is not on target's path, holds no process, or is the host's root
// cgroup, to which the rule does not apply (and whose processes are the
// whole host's).
func moveToLeaf(mount, self, target string, pid int) ([]int, error) {
	self, target = path.Clean("/"+self), path.Clean("/"+target)
	if self != target && self != "/" && !strings.HasPrefix(target, self+"/") {
		return nil, nil
	}
	dir := filepath.Join(mount, filepath.FromSlash(self))
	// Only the host's root cgroup lacks cgroup.type; a cgroup namespace's
	// root has it.
	if _, err := os.Stat(filepath.Join(dir, "cgroup.type")); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("inspecting cgroup %s: %w", self, err)
	}
	leaf := filepath.Join(dir, daemonLeaf)
	pids, err := readProcs(dir)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(pids, pid) {
		inLeaf, err := readProcs(leaf)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if !slices.Contains(inLeaf, pid) {
			// /proc/self/cgroup and the mount disagree, e.g. the host's
			// /sys/fs/cgroup mounted into a container with a private
			// cgroup namespace: moving processes by these paths would
			// move others'.
			return nil, fmt.Errorf("cgroup %s under %s does not hold the daemon (pid %d) that /proc/self/cgroup places there: "+
				"the cgroup mount is not the one of the daemon's cgroup namespace (do not mount the host's /sys/fs/cgroup into a container)", self, mount, pid)
		}
	}
	if len(pids) == 0 {
		return nil, nil
	}
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("creating cgroup %s: %w", path.Join(self, daemonLeaf), err)
	}
	// O_APPEND and O_CREATE change nothing on cgroupfs (like a shell's
	// `echo PID >> cgroup.procs`); they let a fake tree record the moves.
	f, err := os.OpenFile(filepath.Join(leaf, "cgroup.procs"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening cgroup %s: %w", path.Join(self, daemonLeaf), err)
	}
	defer f.Close()
	// Processes forked meanwhile show up in a later read. A pid is tried
	// once: one that shows up again (only in a fake tree, where nothing
	// moves) ends the loop rather than spinning.
	var moved, tried []int
	for len(pids) > 0 {
		for _, p := range pids {
			tried = append(tried, p)
			// One pid per write, as the kernel reads cgroup.procs.
			_, err := f.WriteString(strconv.Itoa(p) + "\n")
			switch {
			case errors.Is(err, syscall.ESRCH):
				// It exited between the read and the move.
			case err != nil:
				return moved, fmt.Errorf("moving pid %d from cgroup %s to %s: %w", p, self, path.Join(self, daemonLeaf), err)
			default:
				moved = append(moved, p)
			}
		}
		again, err := readProcs(dir)
		if err != nil {
			return moved, err
		}
		pids = slices.DeleteFunc(again, func(p int) bool { return slices.Contains(tried, p) })
	}
	return moved, nil
}

// readProcs returns the pids in a cgroup directory's cgroup.procs.
func readProcs(dir string) ([]int, error) {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, fmt.Errorf("reading the processes of cgroup %s: %w", dir, err)
	}
	var pids []int
	for _, field := range bytes.Fields(data) {
		p, err := strconv.Atoi(string(field))
		if err != nil {
			return nil, fmt.Errorf("reading the processes of cgroup %s: bad pid %q", dir, field)
		}
		pids = append(pids, p)
	}
	return pids, nil
}
