package cgroups

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestKillSparesProcessesOutsideGroup guarantees that a pid read from
// cgroup.procs and reused by a process outside the group before Kill
// signals it (pid reuse) is not killed: membership is checked through a
// pidfd that pins the process.
func TestKillSparesProcessesOutsideGroup(t *testing.T) {
	m := &Manager{parent: "p", v2: true, root: t.TempDir()}
	g := m.group("sb-1")
	outsider := exec.Command("sleep", "60")
	if err := outsider.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		outsider.Process.Kill()
		outsider.Wait()
	})
	if err := g.signalKill(outsider.Process.Pid); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := outsider.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("process outside the group was killed: %v", err)
	}
}
