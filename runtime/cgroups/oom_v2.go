package cgroups

import (
	"os"

	"github.com/containerd/cgroups/v3/cgroup2"
	"golang.org/x/sys/unix"
)

// oomWakerV2 returns an inotify instance watching the group's
// memory.events (and cgroup.events), which the kernel modifies after
// counting each OOM kill.
func (g *Group) oomWakerV2() (*os.File, error) {
	cg, err := cgroup2.Load(g.path, cgroup2.WithMountpoint(g.m.root))
	if err != nil {
		return nil, err
	}
	fd, _, err := cg.MemoryEventFD()
	if err != nil {
		return nil, err
	}
	// Non-blocking, so the os.File uses the poller and honours deadlines
	// and Close.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "memory.events inotify"), nil
}
