package cgroups

import (
	"fmt"
	"math"

	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sandboxd/sandboxd/runtime/errdefs"
)

// DefaultPids is the host pids limit of a sandbox whose Resources.Pids is
// 0. It is only a generous backstop against a runaway sentry or gofer: an
// idle sandbox already uses about 20 host pids (sentry threads, systrap
// stubs), 32 guest processes about 85, and a host pids.max of 64 made the
// sentry panic. Guest process counts are limited with RLIMIT_NPROC inside
// the sandbox instead.
const DefaultPids = 4096

// cpuPeriod is the CFS period in microseconds: the kernel's default and
// what runc and containerd use. A sandbox gets CPU×cpuPeriod of CPU time
// per period, so a 0.5-core sandbox stalls at most 50 ms at a time.
const cpuPeriod = 100_000

// minCPUQuota is the smallest CFS quota the kernel accepts (1 ms, in
// microseconds); a smaller CPU limit is refused rather than rounded up.
const minCPUQuota = 1000

// maxCPU bounds Resources.CPU in cores: far above any host's core count
// (a larger limit throttles nothing anyway) and keeps quota arithmetic
// well inside int64.
const maxCPU = 1 << 16

// Resources are the limits of one sandbox cgroup.
type Resources struct {
	// CPU is the CPU bandwidth in cores (0.5 = half of one core per CFS
	// period); 0 means unlimited.
	CPU float64
	// Memory is the memory limit in bytes, swap included where the
	// kernel accounts swap; 0 means unlimited. Over it the host OOM-kills
	// the sandbox.
	Memory int64
	// Pids is the host pids limit; 0 means DefaultPids.
	Pids int64
}

// cpuQuota converts cores to a CFS quota in microseconds per cpuPeriod;
// -1 means unlimited (CPU 0).
func cpuQuota(cores float64) (int64, error) {
	switch {
	case cores == 0:
		return -1, nil
	case math.IsNaN(cores) || cores < 0 || cores > maxCPU:
		return 0, fmt.Errorf("CPU %v cores is not in [0, %d]: %w", cores, maxCPU, errdefs.ErrInvalidArgument)
	}
	quota := int64(math.Round(cores * cpuPeriod))
	if quota < minCPUQuota {
		return 0, fmt.Errorf("CPU %v cores is below the kernel's minimum of %v: %w",
			cores, float64(minCPUQuota)/cpuPeriod, errdefs.ErrInvalidArgument)
	}
	return quota, nil
}

// limits are validated Resources in cgroup units: a quota of -1 and a
// memory of 0 mean unlimited.
type limits struct {
	quota  int64
	memory int64
	pids   int64
}

func (r Resources) limits() (limits, error) {
	quota, err := cpuQuota(r.CPU)
	if err != nil {
		return limits{}, err
	}
	if r.Memory < 0 {
		return limits{}, fmt.Errorf("memory %d bytes is negative: %w", r.Memory, errdefs.ErrInvalidArgument)
	}
	if r.Pids < 0 {
		return limits{}, fmt.Errorf("pids %d is negative: %w", r.Pids, errdefs.ErrInvalidArgument)
	}
	l := limits{quota: quota, memory: r.Memory, pids: r.Pids}
	if l.pids == 0 {
		l.pids = DefaultPids
	}
	return l, nil
}

// v1 returns the limits as OCI resources for cgroup v1. swap says the
// kernel accounts swap (memory.memsw.*): then memory+swap gets the same
// limit as memory, so a sandbox cannot grow past it into swap.
func (l limits) v1(swap bool) *specs.LinuxResources {
	period := uint64(cpuPeriod)
	res := &specs.LinuxResources{
		CPU:  &specs.LinuxCPU{Quota: &l.quota, Period: &period},
		Pids: &specs.LinuxPids{Limit: l.pids},
	}
	if l.memory > 0 {
		res.Memory = &specs.LinuxMemory{Limit: &l.memory}
		if swap {
			res.Memory.Swap = &l.memory
		}
	}
	return res
}

// v2 returns the limits for cgroup v2. swap says memory.swap.max exists:
// then it is 0, so memory.max bounds memory and swap together.
func (l limits) v2(swap bool) *cgroup2.Resources {
	period := uint64(cpuPeriod)
	var quota *int64
	if l.quota > 0 {
		quota = &l.quota
	}
	res := &cgroup2.Resources{
		CPU:    &cgroup2.CPU{Max: cgroup2.NewCPUMax(quota, &period)},
		Memory: &cgroup2.Memory{},
		Pids:   &cgroup2.Pids{Max: l.pids},
	}
	if l.memory > 0 {
		res.Memory.Max = &l.memory
		if swap {
			var none int64
			res.Memory.Swap = &none
		}
	}
	return res
}
