package main

// This file is the agent's memory guard. gVisor has no OOM killer of its
// own: when a sandbox goes over its cgroup's memory limit the host kills
// the whole sandbox. The guard watches the free memory gVisor reports (its
// /proc/meminfo is sized from the cgroup limit) and, when it runs low,
// tells the running Execs to stop their code, so a runaway Exec (a fork
// bomb of Python interpreters, whose copy-on-write pages gVisor copies 2 MiB
// at a time) ends OOM_KILLED while the sandbox and its interpreter survive.
// The host's kill stays the backstop for allocations faster than the poll.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// memPoll is how often the guard reads /proc/meminfo: a fork bomb grows
	// about 150 MiB/s in gVisor, so 50 ms lets it take ~8 MiB between reads;
	// a read costs tens of microseconds.
	memPoll = 50 * time.Millisecond
	// memLowPercent: the guard fires when less than this share of the
	// sandbox's memory is available, leaving room for gVisor's own
	// overhead, which the host counts but /proc/meminfo does not show.
	memLowPercent = 10
	// memCooldown is how long the guard waits after firing, so the Execs it
	// stopped can free their memory before it looks again.
	memCooldown = time.Second
	// memLowGrace is how long a cell stopped for memory may take to unwind
	// before its interpreter is killed: longer than a timeout's grace, as
	// the forks the guard killed are still being freed and the interpreter
	// may be in the middle of a slow fork; killing it would lose its state.
	memLowGrace = 3 * time.Second
)

// memLowMessage starts the message of an Exec the guard stopped.
const memLowMessage = "the sandbox was about to run out of memory (limits.memory): "

// memGuard broadcasts "memory is low" to the Execs running at that moment.
// It polls only while an Exec runs: it only ever stops Execs, and an idle
// sandbox (a pool holds many) then costs no CPU.
type memGuard struct {
	mu      sync.Mutex
	ch      chan struct{} // closed at the next firing, then replaced
	running int           // Execs in progress
	wake    chan struct{} // signalled when running leaves 0
}

func newMemGuard() *memGuard {
	return &memGuard{ch: make(chan struct{}), wake: make(chan struct{}, 1)}
}

// watching marks an Exec as running until the returned func is called.
func (g *memGuard) watching() func() {
	g.mu.Lock()
	g.running++
	if g.running == 1 {
		select {
		case g.wake <- struct{}{}:
		default:
		}
	}
	g.mu.Unlock()
	return func() {
		g.mu.Lock()
		g.running--
		g.mu.Unlock()
	}
}

func (g *memGuard) idle() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running == 0
}

// fired returns a channel closed the next time memory runs low.
func (g *memGuard) fired() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ch
}

func (g *memGuard) fire() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.ch)
	g.ch = make(chan struct{})
}

// run polls until ctx ends. It does nothing where /proc/meminfo cannot be
// read.
func (g *memGuard) run(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(memPoll)
	defer t.Stop()
	mi, err := openMeminfo()
	if err != nil {
		log.Warn("memory guard stopped", "err", err)
		return
	}
	defer mi.close()
	for {
		if g.idle() {
			select {
			case <-ctx.Done():
				return
			case <-g.wake:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		total, avail, err := mi.read()
		if err != nil {
			log.Warn("memory guard stopped", "err", err)
			return
		}
		if !memLow(total, avail) {
			continue
		}
		log.Warn("memory low: stopping the running Execs", "total_kib", total, "available_kib", avail)
		g.fire()
		select {
		case <-ctx.Done():
			return
		case <-time.After(memCooldown):
		}
	}
}

// memLow reports whether avail is under memLowPercent of total.
func memLow(total, avail uint64) bool {
	return total > 0 && avail*100 < total*memLowPercent
}

// meminfoBuffer fits /proc/meminfo whole (about 1.5 KiB in gVisor, 1.5-2
// KiB on Linux), so one pread reads it.
const meminfoBuffer = 8 << 10

// meminfo is /proc/meminfo, opened once and read with one pread at offset
// 0 per poll, which makes the kernel generate it afresh: os.ReadFile would
// cost about ten syscalls (open, fcntl, epoll_ctl, fstat, reads, close),
// each a trip through gVisor's sentry, on every Exec's path.
type meminfo struct {
	fd  int
	buf []byte
}

func openMeminfo() (*meminfo, error) {
	fd, err := unix.Open("/proc/meminfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /proc/meminfo: %w", err)
	}
	return &meminfo{fd: fd, buf: make([]byte, meminfoBuffer)}, nil
}

// read returns MemTotal and MemAvailable in KiB.
func (m *meminfo) read() (total, avail uint64, err error) {
	n, err := unix.Pread(m.fd, m.buf, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("reading /proc/meminfo: %w", err)
	}
	if n == len(m.buf) {
		return 0, 0, fmt.Errorf("reading /proc/meminfo: larger than %d bytes", len(m.buf))
	}
	return parseMeminfo(m.buf[:n])
}

func (m *meminfo) close() { unix.Close(m.fd) }

func parseMeminfo(data []byte) (total, avail uint64, err error) {
	var haveTotal, haveAvail bool
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := bytes.Fields(sc.Bytes())
		if len(fields) < 2 {
			continue
		}
		var dst *uint64
		switch string(fields[0]) {
		case "MemTotal:":
			dst, haveTotal = &total, true
		case "MemAvailable:":
			dst, haveAvail = &avail, true
		default:
			continue
		}
		if *dst, err = strconv.ParseUint(string(fields[1]), 10, 64); err != nil {
			return 0, 0, fmt.Errorf("parsing /proc/meminfo: %w", err)
		}
	}
	if !haveTotal || !haveAvail {
		return 0, 0, fmt.Errorf("parsing /proc/meminfo: no MemTotal or MemAvailable")
	}
	return total, avail, nil
}
