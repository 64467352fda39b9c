package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Stats is a group's resource usage.
type Stats struct {
	// CPUUsage is the CPU time used by the group's processes.
	CPUUsage time.Duration
	// MemoryPeak is the highest memory usage in bytes: on v1 since the
	// last StartWindow reset it (else since creation), on v2 since creation;
	// 0 on v2 kernels before 5.19, which have no memory.peak.
	MemoryPeak int64
	// MemoryCurrent is the memory usage in bytes now.
	MemoryCurrent int64
	// Pids is the number of host tasks (threads included) in the group.
	Pids int64
}

// Stats reads the group's usage: on v1 from cpuacct.usage,
// memory.max_usage_in_bytes, memory.usage_in_bytes and pids.current; on
// v2 from cpu.stat usage_usec, memory.peak, memory.current and
// pids.current.
func (g *Group) Stats() (Stats, error) {
	var (
		st  Stats
		err error
	)
	if g.m.v2 {
		st, err = g.statsV2()
	} else {
		st, err = g.statsV1()
	}
	if err != nil {
		return Stats{}, fmt.Errorf("reading stats of %s: %w", g.path, err)
	}
	return st, nil
}

func (g *Group) statsV1() (Stats, error) {
	var r fileReader
	memory := g.dir("memory")
	st := Stats{
		CPUUsage:      time.Duration(r.uint(filepath.Join(g.dir("cpuacct"), "cpuacct.usage"))),
		MemoryPeak:    int64(r.uint(filepath.Join(memory, "memory.max_usage_in_bytes"))),
		MemoryCurrent: int64(r.uint(filepath.Join(memory, "memory.usage_in_bytes"))),
		Pids:          int64(r.uint(filepath.Join(g.dir("pids"), "pids.current"))),
	}
	return st, r.err
}

func (g *Group) statsV2() (Stats, error) {
	var r fileReader
	dir := g.dir("")
	st := Stats{
		CPUUsage:      time.Duration(r.key(filepath.Join(dir, "cpu.stat"), "usage_usec")) * time.Microsecond,
		MemoryCurrent: int64(r.uint(filepath.Join(dir, "memory.current"))),
		Pids:          int64(r.uint(filepath.Join(dir, "pids.current"))),
	}
	if peak := filepath.Join(dir, "memory.peak"); exists(peak) {
		st.MemoryPeak = int64(r.uint(peak))
	}
	return st, r.err
}

// fileReader reads numbers from cgroup files and keeps the first error.
type fileReader struct{ err error }

// uint reads a single-value file such as memory.current.
func (r *fileReader) uint(path string) uint64 {
	return r.read(path, parseUint)
}

// key reads key from a flat-keyed file such as cpu.stat.
func (r *fileReader) key(path, key string) uint64 {
	return r.read(path, func(data []byte) (uint64, error) { return parseKey(data, key) })
}

func (r *fileReader) read(path string, parse func([]byte) (uint64, error)) uint64 {
	if r.err != nil {
		return 0
	}
	data, err := os.ReadFile(path)
	if err != nil {
		r.err = err
		return 0
	}
	v, err := parse(data)
	if err != nil {
		r.err = fmt.Errorf("parsing %s: %w", path, err)
	}
	return v
}

// parseUint parses a single-value cgroup file ("12345\n").
func parseUint(data []byte) (uint64, error) {
	return strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
}

// parseKey returns the value of key in a flat-keyed cgroup file: lines of
// "key value" (cpu.stat, memory.events, memory.oom_control).
func parseKey(data []byte, key string) (uint64, error) {
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no key %q", key)
}
