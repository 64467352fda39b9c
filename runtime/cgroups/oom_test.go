package cgroups

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// eventTimeout bounds every wait for an OOM event or a channel close in
// tests: far above the kernel's ~155 ms to kill a sandbox and
// deletedPollInterval, low enough to fail fast.
const eventTimeout = 10 * time.Second

// fakeV2Group returns a group of a v2 Manager rooted in a temporary
// directory whose files stand in for cgroupfs: it exercises the inotify
// plumbing and the counting of OOMEvents without root or a v2 host.
func fakeV2Group(t *testing.T, oomKills string) *Group {
	t.Helper()
	m := &Manager{parent: "p", v2: true, root: t.TempDir()}
	g := m.group("sb-1")
	if err := os.MkdirAll(g.dir(""), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(g.dir(""), "cgroup.events"), "populated 1\nfrozen 0\n")
	setOOMKills(t, g, oomKills)
	return g
}

// setOOMKills rewrites memory.events in place with one write, as the
// kernel does: truncating first would let the watcher read an empty file.
// n is one digit, so the length never changes.
func setOOMKills(t *testing.T, g *Group, n string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(g.dir(""), "memory.events"), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("low 0\nhigh 0\nmax 9\noom 9\noom_kill " + n + "\n"); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// receive waits for one event on ch and fails if ch closes or none comes.
func receive(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatal("OOM channel closed, want an event")
		}
	case <-time.After(eventTimeout):
		t.Fatal("no OOM event")
	}
}

// noEvent fails if ch delivers an event within a short while.
func noEvent(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("unexpected OOM event")
		}
		t.Fatal("OOM channel closed early")
	case <-time.After(200 * time.Millisecond):
	}
}

// waitClosed fails unless ch is closed (after any pending events) in
// time.
func waitClosed(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	deadline := time.After(eventTimeout)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("OOM channel not closed")
		}
	}
}

// noGoroutineLeak fails unless the goroutine count drops back to before,
// i.e. the watcher and its context callback have exited.
func noGoroutineLeak(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(eventTimeout)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before the watcher", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOOMEventsV2CountsKillsAndClosesOnDelete guarantees the v2 watcher
// sends exactly one event per oom_kill increment of memory.events (none
// for kills from before the call) and closes its channel once the group
// directory is gone, though removal wakes no inotify watch.
func TestOOMEventsV2CountsKillsAndClosesOnDelete(t *testing.T) {
	g := fakeV2Group(t, "2")
	ch, err := g.OOMEvents(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	noEvent(t, ch)
	setOOMKills(t, g, "3")
	receive(t, ch)
	noEvent(t, ch)
	setOOMKills(t, g, "5")
	receive(t, ch)
	receive(t, ch)
	noEvent(t, ch)
	if killed, err := g.OOMKilled(); err != nil || !killed {
		t.Errorf("OOMKilled() = %v, %v; want true", killed, err)
	}
	if err := os.RemoveAll(g.dir("")); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, ch)
}

// TestOOMEventsV2ClosesOnCancel guarantees the v2 watcher closes its
// channel when its context ends and leaves no goroutine behind.
func TestOOMEventsV2ClosesOnCancel(t *testing.T) {
	g := fakeV2Group(t, "0")
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := g.OOMEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	waitClosed(t, ch)
	noGoroutineLeak(t, before)
}
