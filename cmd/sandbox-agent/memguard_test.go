package main

import (
	"testing"
	"time"
)

// TestMemLowThreshold guarantees the guard's trigger: gVisor's meminfo
// format parses, and the guard fires below 10% available, not above.
func TestMemLowThreshold(t *testing.T) {
	total, avail, err := parseMeminfo([]byte("MemTotal:        1048576 kB\nMemFree:          882304 kB\nMemAvailable:     882304 kB\nBuffers:               0 kB\n"))
	if err != nil || total != 1048576 || avail != 882304 {
		t.Fatalf("parseMeminfo = %d, %d, %v", total, avail, err)
	}
	if _, _, err := parseMeminfo([]byte("MemFree: 1 kB\n")); err == nil {
		t.Fatal("meminfo without MemTotal parsed")
	}
	for _, tc := range []struct {
		avail uint64
		low   bool
	}{{882304, false}, {104858, false}, {104857, true}, {0, true}} {
		if got := memLow(1048576, tc.avail); got != tc.low {
			t.Errorf("memLow(1Gi, %d KiB) = %v, want %v", tc.avail, got, tc.low)
		}
	}
}

// TestMemGuardFiresOnce guarantees that a firing reaches the Execs that
// were waiting and not those that start afterwards.
func TestMemGuardFiresOnce(t *testing.T) {
	g := newMemGuard()
	before := g.fired()
	g.fire()
	select {
	case <-before:
	case <-time.After(time.Second):
		t.Fatal("a waiting Exec did not see the firing")
	}
	select {
	case <-g.fired():
		t.Fatal("an Exec started after the firing sees it")
	default:
	}
}

// TestMemGuardSleepsWithoutExecs guarantees that the guard's poll loop
// waits while no Exec runs and wakes for the first one.
func TestMemGuardSleepsWithoutExecs(t *testing.T) {
	g := newMemGuard()
	if !g.idle() {
		t.Fatal("a new guard is not idle")
	}
	done := g.watching()
	select {
	case <-g.wake:
	default:
		t.Fatal("the first Exec did not wake the guard")
	}
	if g.idle() {
		t.Fatal("idle while an Exec runs")
	}
	done()
	if !g.idle() {
		t.Fatal("not idle after the Exec ended")
	}
}

// TestMeminfoRereads guarantees that the guard's one open /proc/meminfo
// gives fresh, parseable figures on every read.
func TestMeminfoRereads(t *testing.T) {
	mi, err := openMeminfo()
	if err != nil {
		t.Fatal(err)
	}
	defer mi.close()
	for range 3 {
		total, avail, err := mi.read()
		if err != nil || total == 0 || avail > total {
			t.Fatalf("read = %d, %d, %v", total, avail, err)
		}
	}
}

// TestMarkersAreUnique guarantees that no two Execs share a sweep marker.
func TestMarkersAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		m := newMarker()
		if seen[m] {
			t.Fatalf("marker %q twice", m)
		}
		seen[m] = true
	}
}
