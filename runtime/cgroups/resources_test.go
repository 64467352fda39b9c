package cgroups

import (
	"errors"
	"math"
	"testing"

	"github.com/sandboxd/sandboxd/runtime/errdefs"
)

// TestCPUQuota guarantees that cores become quota = cores × 100 ms period
// (0 = unlimited) and that values the kernel would refuse or that make no
// sense are rejected.
func TestCPUQuota(t *testing.T) {
	for _, tc := range []struct {
		cores float64
		quota int64
	}{
		{0, -1},
		{0.5, 50_000},
		{1, 100_000},
		{2, 200_000},
		{0.25, 25_000},
		{0.01, 1000},
	} {
		got, err := cpuQuota(tc.cores)
		if err != nil || got != tc.quota {
			t.Errorf("cpuQuota(%v) = %d, %v; want %d", tc.cores, got, err, tc.quota)
		}
	}
	for _, cores := range []float64{-1, 0.001, math.NaN(), math.Inf(1), maxCPU + 1} {
		if _, err := cpuQuota(cores); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("cpuQuota(%v) = %v, want ErrInvalidArgument", cores, err)
		}
	}
}

// TestLimits guarantees the defaults (Pids 0 = DefaultPids) and that
// negative limits are rejected rather than read as "unlimited".
func TestLimits(t *testing.T) {
	l, err := Resources{}.limits()
	if err != nil || l != (limits{quota: -1, pids: DefaultPids}) {
		t.Errorf("Resources{}.limits() = %+v, %v; want unlimited CPU and memory, %d pids", l, err, DefaultPids)
	}
	for _, r := range []Resources{{Memory: -1}, {Pids: -1}, {CPU: -0.5}} {
		if _, err := r.limits(); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%+v.limits() = %v, want ErrInvalidArgument", r, err)
		}
	}
}

// TestSwapCannotEscapeMemoryLimit guarantees that where the kernel
// accounts swap, a memory limit bounds memory and swap together: v1
// memory+swap equals memory, v2 allows no swap on top of memory.max.
func TestSwapCannotEscapeMemoryLimit(t *testing.T) {
	l := limits{quota: 50_000, memory: 64 << 20, pids: 100}

	v1 := l.v1(true)
	if *v1.Memory.Limit != 64<<20 || v1.Memory.Swap == nil || *v1.Memory.Swap != 64<<20 {
		t.Errorf("v1 memory = %+v, want limit and memory+swap 64 MiB", v1.Memory)
	}
	if *v1.CPU.Quota != 50_000 || *v1.CPU.Period != cpuPeriod || v1.Pids.Limit != 100 {
		t.Errorf("v1 cpu %+v pids %+v", v1.CPU, v1.Pids)
	}
	if v1 := l.v1(false); v1.Memory.Swap != nil {
		t.Errorf("v1 without swap accounting sets memory+swap %d", *v1.Memory.Swap)
	}

	v2 := l.v2(true)
	if *v2.Memory.Max != 64<<20 || v2.Memory.Swap == nil || *v2.Memory.Swap != 0 {
		t.Errorf("v2 memory = %+v, want max 64 MiB and swap 0", v2.Memory)
	}
	if v2.CPU.Max != "50000 100000" || v2.Pids.Max != 100 {
		t.Errorf("v2 cpu.max %q pids %d", v2.CPU.Max, v2.Pids.Max)
	}

	unlimited := limits{quota: -1, pids: DefaultPids}
	if v1 := unlimited.v1(true); v1.Memory != nil || *v1.CPU.Quota != -1 {
		t.Errorf("unlimited v1 = memory %+v quota %d", v1.Memory, *v1.CPU.Quota)
	}
	if v2 := unlimited.v2(true); v2.Memory.Max != nil || v2.Memory.Swap != nil || v2.CPU.Max != "max 100000" {
		t.Errorf("unlimited v2 = memory %+v cpu.max %q", v2.Memory, v2.CPU.Max)
	}
}
