package cgroups

import (
	"errors"
	"os"

	"github.com/containerd/cgroups/v3/cgroup1"
	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/runtime/errdefs"
)

// oomWakerV1 registers an eventfd on the group's memory.oom_control
// (through cgroup.event_control). It becomes readable on each OOM in the
// group and when the group is removed.
func (g *Group) oomWakerV1() (*os.File, error) {
	cg, err := cgroup1.Load(cgroup1.StaticPath(g.path))
	if errors.Is(err, cgroup1.ErrCgroupDeleted) {
		return nil, errdefs.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	efd, err := cg.OOMEventFD()
	if err != nil {
		return nil, err
	}
	// Non-blocking, so the os.File uses the poller and honours deadlines
	// and Close.
	if err := unix.SetNonblock(int(efd), true); err != nil {
		unix.Close(int(efd))
		return nil, err
	}
	return os.NewFile(efd, "memory.oom_control eventfd"), nil
}
