package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// killTimeout bounds how long Kill waits for the group to empty. runsc
// allows the same 5 s for a killed sandbox's cgroup; a sentry tearing down
// gigabytes of memory takes a while to exit.
const killTimeout = 5 * time.Second

// killPollInterval is how often Kill re-reads cgroup.procs (and
// re-signals what is left) while it waits.
const killPollInterval = 10 * time.Millisecond

// Kill sends SIGKILL to every process in the group and waits until none
// is left. On v2 it writes cgroup.kill (Linux 5.14+), which the kernel
// applies atomically, forks included; on v1 (and older v2 kernels) it
// signals every process in cgroup.procs until the group is empty, at most
// killTimeout. Killing a group that does not exist returns nil.
func (g *Group) Kill() error {
	if g.m.v2 {
		err := os.WriteFile(filepath.Join(g.dir(""), "cgroup.kill"), []byte("1"), 0)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("killing cgroup %s: %w", g.path, err)
		}
	}
	deadline := time.Now().Add(killTimeout)
	for {
		pids, err := g.procs()
		if err != nil {
			return fmt.Errorf("killing cgroup %s: %w", g.path, err)
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("killing cgroup %s: %d processes left after %v", g.path, len(pids), killTimeout)
		}
		for _, pid := range pids {
			if err := g.signalKill(pid); err != nil {
				return fmt.Errorf("killing cgroup %s: pid %d: %w", g.path, pid, err)
			}
		}
		time.Sleep(killPollInterval)
	}
}

// procs returns the pids in the group's cgroup.procs of every controller.
func (g *Group) procs() ([]int, error) {
	var pids []int
	for _, dir := range g.m.dirs(g.path) {
		data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, f := range strings.Fields(string(data)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("parsing %s/cgroup.procs: %w", dir, err)
			}
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return slices.Compact(pids), nil
}

// signalKill sends SIGKILL to pid if it is still in the group. The pid
// came from cgroup.procs and may have been reused since by a process
// outside the group: a pidfd pins the process, which is then checked to be
// a member before it is signalled.
func (g *Group) signalKill(pid int) error {
	pidfd, err := unix.PidfdOpen(pid, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		return nil
	case errors.Is(err, unix.ENOSYS):
		// Before Linux 5.3: no pidfds, signal by pid.
		return ignoreESRCH(unix.Kill(pid, unix.SIGKILL))
	case err != nil:
		return err
	}
	defer unix.Close(pidfd)
	in, err := g.hasMember(pid)
	if err != nil || !in {
		return err
	}
	// If pid was reused between PidfdOpen and hasMember, the pidfd's own
	// process has exited and this fails with ESRCH.
	return ignoreESRCH(unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0))
}

// hasMember reports whether /proc/<pid>/cgroup puts pid in the group (or
// below it) in any hierarchy.
func (g *Group) hasMember(pid int) (bool, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return inCgroup(data, g.path), nil
}

// inCgroup reports whether a /proc/<pid>/cgroup file, lines of
// "hierarchy-ID:controllers:path", names path or a path below it.
func inCgroup(procCgroup []byte, path string) bool {
	for _, line := range strings.Split(string(procCgroup), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) == 3 && (f[2] == path || strings.HasPrefix(f[2], path+"/")) {
			return true
		}
	}
	return false
}

func ignoreESRCH(err error) error {
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}
