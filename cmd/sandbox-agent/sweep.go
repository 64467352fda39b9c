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
	"syscall"
)

// markerVar names the environment variable that tags an Exec's processes.
const markerVar = "SANDBOXD_EXEC"

// sweepRounds bounds the passes over /proc: a process may fork while a pass
// runs, so a few passes catch children started meanwhile.
const sweepRounds = 3

// newMarker returns a fresh marker value.
func newMarker() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
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

// killWhere SIGKILLs every process but the agent for which match holds, in
// up to sweepRounds passes over /proc, and returns how many it killed.
func killWhere(match func(pid int) bool) int {
	killed := 0
	for range sweepRounds {
		found := 0
		entries, err := os.ReadDir("/proc")
		if err != nil {
			return killed
		}
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() || !match(pid) {
				continue
			}
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				found++
			}
		}
		killed += found
		if found == 0 {
			break
		}
	}
	return killed
}
