package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Window measures a group's CPU time and peak memory over a span of time,
// such as one Exec. The peak covers the whole group: windows that overlap
// on one group reset each other's peak on cgroup v1, so a peak is then a
// lower bound.
type Window struct {
	g        *Group
	startCPU time.Duration
	// peak is memory.peak opened and reset for this window (v2); nil on v1,
	// where memory.max_usage_in_bytes was reset instead.
	peak *os.File
	// noPeak: the peak cannot be reset here (v2 kernels before 6.12).
	noPeak bool
}

// Usage is what a group used during a Window.
type Usage struct {
	// CPU is the CPU time used.
	CPU time.Duration
	// MemoryPeak is the highest memory usage in bytes; 0 when the kernel
	// cannot measure it per window.
	MemoryPeak int64
}

// StartWindow starts measuring. End must be called to release it.
func (g *Group) StartWindow() (*Window, error) {
	cpu, err := g.cpuUsage()
	if err != nil {
		return nil, err
	}
	w := &Window{g: g, startCPU: cpu}
	if g.m.v2 {
		// Since Linux 6.12 any write to memory.peak resets the peak seen
		// through that open file only.
		f, err := os.OpenFile(filepath.Join(g.dir(""), "memory.peak"), os.O_RDWR, 0)
		if err == nil {
			if _, err = f.WriteString("reset\n"); err != nil {
				f.Close()
			}
		}
		if err != nil {
			w.noPeak = true
			return w, nil
		}
		w.peak = f
		return w, nil
	}
	// Writing 0 sets memory.max_usage_in_bytes to the current usage.
	if err := os.WriteFile(filepath.Join(g.dir("memory"), "memory.max_usage_in_bytes"), []byte("0"), 0); err != nil {
		return nil, fmt.Errorf("resetting the memory peak of %s: %w", g.path, err)
	}
	return w, nil
}

// End returns the usage since StartWindow and releases the window.
func (w *Window) End() (Usage, error) {
	if w.peak != nil {
		defer w.peak.Close()
	}
	cpu, err := w.g.cpuUsage()
	if err != nil {
		return Usage{}, err
	}
	u := Usage{CPU: cpu - w.startCPU}
	switch {
	case w.noPeak:
	case w.peak != nil:
		buf := make([]byte, 32)
		n, err := w.peak.ReadAt(buf, 0)
		if n == 0 && err != nil {
			return Usage{}, fmt.Errorf("reading the memory peak of %s: %w", w.g.path, err)
		}
		v, err := parseUint(buf[:n])
		if err != nil {
			return Usage{}, fmt.Errorf("parsing the memory peak of %s: %w", w.g.path, err)
		}
		u.MemoryPeak = int64(v)
	default:
		var r fileReader
		u.MemoryPeak = int64(r.uint(filepath.Join(w.g.dir("memory"), "memory.max_usage_in_bytes")))
		if r.err != nil {
			return Usage{}, fmt.Errorf("reading the memory peak of %s: %w", w.g.path, r.err)
		}
	}
	return u, nil
}

// cpuUsage reads only the group's CPU time: a window reads no more than it
// reports, as every Exec pays for it (BenchmarkWindow).
func (g *Group) cpuUsage() (time.Duration, error) {
	var r fileReader
	var cpu time.Duration
	if g.m.v2 {
		cpu = time.Duration(r.key(filepath.Join(g.dir(""), "cpu.stat"), "usage_usec")) * time.Microsecond
	} else {
		cpu = time.Duration(r.uint(filepath.Join(g.dir("cpuacct"), "cpuacct.usage")))
	}
	if r.err != nil {
		return 0, fmt.Errorf("reading the CPU time of %s: %w", g.path, r.err)
	}
	return cpu, nil
}
