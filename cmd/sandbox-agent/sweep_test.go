package main

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestProcStateTellsExitedFromRunning guarantees that the sweep sees
// processes that already exited as such (it would otherwise count them as
// killed on every pass until its deadline), running ones as running and
// reaped ones as gone.
func TestProcStateTellsExitedFromRunning(t *testing.T) {
	zombie := func(pid int) bool { st := procState(pid); return st == 0 || st == 'Z' || st == 'X' }
	if zombie(os.Getpid()) {
		t.Fatal("the test process counts as a zombie")
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for !zombie(cmd.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatal("an exited, unreaped child is not seen as a zombie")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(cmd.Process.Pid, &ws, syscall.WNOHANG, nil); err != nil {
		t.Fatal(err)
	}
	if !zombie(cmd.Process.Pid) {
		t.Fatal("a reaped process is not skipped")
	}
}
