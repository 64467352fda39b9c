package main

// This file finds and kills what an Exec left running after it was stopped
// (timeout, cancellation): processes that left bash's process group
// (setsid, daemonized) or that a Python cell started (subprocess.Popen).
// Every Exec's processes inherit a marker variable in their environment;
// the sweep kills each process whose initial environment carries it.

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// markerVar names the environment variable that tags an Exec's processes.
const markerVar = "SANDBOXD_EXEC"

// killDeadline bounds one kill: a process may fork while a kill goes out,
// so kills repeat until nothing is left. A fork bomb at its process limit
// is gone after a few rounds; 2 s stops a runaway loop and leaves the
// Exec's answer well within the daemon's margin.
const killDeadline = 2 * time.Second

// groupKillWindow is how long killGroup repeats its kill: a fork in flight
// finishes within milliseconds, and a member that is only a zombie keeps
// the group alive until its parent reaps it, so the kills cannot simply go
// on until the group is empty.
const groupKillWindow = 250 * time.Millisecond

// killGroup SIGKILLs process group pgid again and again until it has no
// member left (ESRCH) or groupKillWindow: a member that was forking when a
// kill went out can leave a child behind (gVisor, unlike Linux, lets a fork
// in flight finish), so one kill is not enough against a fork bomb. It
// reads nothing from /proc; survivors that carry the Exec's marker are left
// to the sweep.
func killGroup(pgid int) {
	deadline := time.Now().Add(groupKillWindow)
	for syscall.Kill(-pgid, syscall.SIGKILL) == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

// within runs f and waits for it at most killDeadline. Reading /proc of
// tasks that are exiting can stall for a long time in gVisor; the Exec's
// answer must not wait for that, so f finishes in the background then.
func within(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	t := time.NewTimer(killDeadline)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// markerPrefix is random per agent; a counter makes each Exec's marker
// unique without a getrandom syscall per Exec. Markers only tell Execs
// apart: the code of an Exec can read its own anyway.
var (
	markerPrefix = func() string {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b)
	}()
	markerCount atomic.Uint64
)

// newMarker returns a fresh marker value.
func newMarker() string {
	return markerPrefix + "-" + strconv.FormatUint(markerCount.Add(1), 10)
}

// sweep SIGKILLs every process whose initial environment holds
// markerVar=marker and returns how many it killed. /proc/PID/environ shows
// the environment a process was started with, so the Python kernel, which
// only sets the marker for a cell's duration, is never matched.
func sweep(marker string) int {
	entry := []byte("\x00" + markerVar + "=" + marker + "\x00")
	return killWhere(func(pid int) bool {
		env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		return err == nil && bytes.Contains(append([]byte{0}, env...), entry)
	})
}

// killGroupMembers SIGKILLs every process of process group pgid except its
// leader: the forked copies of the Python interpreter, which share its
// initial environment and so carry no marker.
func killGroupMembers(pgid int) int {
	return killWhere(func(pid int) bool {
		g, err := syscall.Getpgid(pid)
		return pid != pgid && err == nil && g == pgid
	})
}

// killCellProcesses kills what a Python cell started, within killDeadline:
// the interpreter's forks (members of its process group) and the cell's
// subprocesses (its marker).
func killCellProcesses(interpreter int, marker string) {
	within(func() {
		killGroupMembers(interpreter)
		sweep(marker)
	})
}

// killWhere SIGKILLs every live process but the agent for which match
// holds and returns how many it killed. It first stops them all with
// SIGSTOP, pass after pass until none runs: a stopped process cannot fork,
// so a fork bomb cannot refill what the kills remove (gVisor, unlike Linux,
// lets a fork in flight finish after its parent was signalled). Each phase
// passes over /proc until a pass finds nothing or killDeadline.
func killWhere(match func(pid int) bool) int {
	deadline := time.Now().Add(killDeadline)
	running := func(state byte) bool { return state != 'T' && state != 't' }
	signalAll(match, syscall.SIGSTOP, running, deadline)
	return signalAll(match, syscall.SIGKILL, func(byte) bool { return true }, deadline)
}

// signalAll sends sig to every live process but the agent whose state
// passes want and for which match holds, until a pass over /proc finds
// none or the deadline, and returns how many signals it sent.
func signalAll(match func(pid int) bool, sig syscall.Signal, want func(state byte) bool, deadline time.Time) int {
	sent := 0
	for {
		found := 0
		entries, err := os.ReadDir("/proc")
		if err != nil {
			return sent
		}
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			st := procState(pid)
			if st == 0 || st == 'Z' || st == 'X' || !want(st) || !match(pid) {
				continue
			}
			if syscall.Kill(pid, sig) == nil {
				found++
			}
		}
		sent += found
		if found == 0 || time.Now().After(deadline) {
			return sent
		}
	}
}

// procState is the state letter of pid from /proc/PID/stat (R, S, T, Z...),
// 0 if the process is gone.
func procState(pid int) byte {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The state follows the command name, which is in parentheses and may
	// itself contain spaces or parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return 0
	}
	return stat[i+2]
}
