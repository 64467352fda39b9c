package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// daemonPid is the daemon's pid in the fake trees: pid 1, as in a
// container where the daemon is the entrypoint.
const daemonPid = 1

// testTarget is the sandboxes' parent the fake trees enable controllers
// for, as newManagerV2 passes it.
const testTarget = "/sandboxd-0123456789"

// fakeCgroup makes directory dir of a fake cgroup v2 tree: cgroup.procs
// with pids and, unless hostRoot, cgroup.type (only the host's root
// cgroup lacks it).
func fakeCgroup(t *testing.T, dir string, hostRoot bool, pids ...int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeProcs(t, dir, pids)
	if !hostRoot {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.type"), []byte("domain\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func writeProcs(t *testing.T, dir string, pids []int) {
	t.Helper()
	var b strings.Builder
	for _, p := range pids {
		fmt.Fprintln(&b, p)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func procsOf(t *testing.T, dir string) []int {
	t.Helper()
	pids, err := readProcs(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

// kernel plays the kernel for a fake tree whose cgroup self the daemon
// runs in: it applies the moves written to the leaf's cgroup.procs (the
// pids leave self's), and an enable fails with EBUSY while self, being
// an ancestor of the target and not the host's root, still has
// processes, as cgroup v2's "no internal processes" rule says. join
// lists pids that enter self before each enable (an exec probe racing
// the move).
type kernel struct {
	t        *testing.T
	mount    string
	self     string
	hostRoot bool
	join     [][]int
	enables  int
}

func (k *kernel) enable() error {
	k.t.Helper()
	dir := filepath.Join(k.mount, k.self)
	moved := procsOf(k.t, filepath.Join(dir, daemonLeaf))
	left := slices.DeleteFunc(procsOf(k.t, dir), func(p int) bool { return slices.Contains(moved, p) })
	if k.enables < len(k.join) {
		left = append(left, k.join[k.enables]...)
	}
	writeProcs(k.t, dir, left)
	k.enables++
	file := filepath.Join(k.mount, "cgroup.subtree_control")
	onPath := k.self == "/" || strings.HasPrefix(testTarget, k.self+"/")
	if onPath && !k.hostRoot && len(left) > 0 {
		return fmt.Errorf("enabling controllers: %w", &fs.PathError{Op: "write", Path: file, Err: syscall.EBUSY})
	}
	if err := os.WriteFile(file, []byte("+cpu +memory +pids"), 0o644); err != nil {
		return err
	}
	return os.MkdirAll(filepath.Join(k.mount, testTarget), 0o755)
}

// TestEnableInLeafVacatesNamespaceRoot guarantees the fix for cgroup v2's
// "no internal processes" rule in a privileged pod: when the daemon runs
// in the root of its cgroup namespace (a non-root cgroup with processes),
// every process there, the daemon first, moves into the leaf
// sandboxd-daemon before the controllers are enabled, and enabling then
// succeeds at the first try.
func TestEnableInLeafVacatesNamespaceRoot(t *testing.T) {
	mount := t.TempDir()
	fakeCgroup(t, mount, false, daemonPid, 17, 42)
	k := &kernel{t: t, mount: mount, self: "/"}
	if err := enableInLeafAs(mount, "/", testTarget, daemonPid, k.enable); err != nil {
		t.Fatal(err)
	}
	if got := procsOf(t, filepath.Join(mount, daemonLeaf)); !slices.Equal(got, []int{daemonPid, 17, 42}) {
		t.Errorf("%s/cgroup.procs = %v, want every process of the namespace root, [1 17 42]", daemonLeaf, got)
	}
	if got := procsOf(t, mount); len(got) != 0 {
		t.Errorf("the namespace root still has processes %v", got)
	}
	if k.enables != 1 {
		t.Errorf("enable ran %d times, want 1", k.enables)
	}
	data, err := os.ReadFile(filepath.Join(mount, "cgroup.subtree_control"))
	if err != nil || string(data) != "+cpu +memory +pids" {
		t.Errorf("cgroup.subtree_control = %q, %v; want the controllers enabled", data, err)
	}
}

// TestEnableInLeafRetriesRace guarantees that a process joining the
// vacated cgroup between the move and the enable (EBUSY) is moved too and
// the enable retried, and that a cgroup that keeps filling up ends in the
// EBUSY error after maxEnableTries rather than a loop.
func TestEnableInLeafRetriesRace(t *testing.T) {
	mount := t.TempDir()
	fakeCgroup(t, mount, false, daemonPid)
	k := &kernel{t: t, mount: mount, self: "/", join: [][]int{{99}}}
	if err := enableInLeafAs(mount, "/", testTarget, daemonPid, k.enable); err != nil {
		t.Fatal(err)
	}
	if k.enables != 2 {
		t.Errorf("enable ran %d times, want 2 (EBUSY, then success)", k.enables)
	}
	if got := procsOf(t, filepath.Join(mount, daemonLeaf)); !slices.Equal(got, []int{daemonPid, 99}) {
		t.Errorf("%s/cgroup.procs = %v, want [1 99]", daemonLeaf, got)
	}

	mount = t.TempDir()
	fakeCgroup(t, mount, false, daemonPid)
	var join [][]int
	for i := range maxEnableTries {
		join = append(join, []int{100 + i})
	}
	k = &kernel{t: t, mount: mount, self: "/", join: join}
	err := enableInLeafAs(mount, "/", testTarget, daemonPid, k.enable)
	if !errors.Is(err, syscall.EBUSY) {
		t.Errorf("enableInLeafAs with a cgroup that keeps filling = %v, want EBUSY", err)
	}
	if k.enables != maxEnableTries {
		t.Errorf("enable ran %d times, want maxEnableTries (%d)", k.enables, maxEnableTries)
	}
}

// TestEnableInLeafLeavesOthersAlone guarantees that nothing moves where the
// rule does not bite or where moving would be wrong: in the host's root
// cgroup (a daemon on a host: its processes are the whole host's), in a
// cgroup off the target's path (the daemon in a systemd unit), and where
// the mount does not hold the daemon where /proc/self/cgroup says (the
// host's /sys/fs/cgroup mounted into a private cgroup namespace), which is
// an error naming the cause.
func TestEnableInLeafLeavesOthersAlone(t *testing.T) {
	t.Run("host root", func(t *testing.T) {
		mount := t.TempDir()
		fakeCgroup(t, mount, true, daemonPid, 2, 3)
		k := &kernel{t: t, mount: mount, self: "/", hostRoot: true}
		if err := enableInLeafAs(mount, "/", testTarget, daemonPid, k.enable); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(mount, daemonLeaf)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s created in the host's root cgroup (stat: %v)", daemonLeaf, err)
		}
		if got := procsOf(t, mount); !slices.Equal(got, []int{daemonPid, 2, 3}) {
			t.Errorf("host root processes = %v, want them untouched", got)
		}
	})
	t.Run("off the target's path", func(t *testing.T) {
		mount := t.TempDir()
		fakeCgroup(t, mount, true, 2)
		unit := "/system.slice/sandboxd.service"
		fakeCgroup(t, filepath.Join(mount, unit), false, daemonPid)
		k := &kernel{t: t, mount: mount, self: unit}
		if err := enableInLeafAs(mount, unit, testTarget, daemonPid, k.enable); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(mount, unit, daemonLeaf)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s created beside a daemon off the target's path (stat: %v)", daemonLeaf, err)
		}
	})
	t.Run("mount of another namespace", func(t *testing.T) {
		mount := t.TempDir()
		fakeCgroup(t, mount, false, 2, 3) // the daemon's pid is not here
		k := &kernel{t: t, mount: mount, self: "/"}
		err := enableInLeafAs(mount, "/", testTarget, daemonPid, k.enable)
		if err == nil || !strings.Contains(err.Error(), "does not hold the daemon") {
			t.Fatalf("enableInLeafAs = %v, want an error saying the mount does not hold the daemon", err)
		}
		if k.enables != 0 {
			t.Error("enable ran despite the inconsistent mount")
		}
		if _, err := os.Stat(filepath.Join(mount, daemonLeaf)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s created although nothing may move (stat: %v)", daemonLeaf, err)
		}
	})
}

// TestMoveToLeafTarget guarantees that the daemon's own cgroup counts as
// on the target's path when it is the target itself or an ancestor, by
// path elements ("/sandboxd" is not an ancestor of "/sandboxd-1").
func TestMoveToLeafTarget(t *testing.T) {
	for _, c := range []struct {
		self, target string
		move         bool
	}{
		{"/", "/sandboxd-1", true},
		{"/pod", "/pod/sandboxd-1", true},
		{"/pod/sandboxd-1", "/pod/sandboxd-1", true},
		{"/sandboxd", "/sandboxd-1", false},
		{"/other", "/pod/sandboxd-1", false},
	} {
		mount := t.TempDir()
		fakeCgroup(t, filepath.Join(mount, c.self), false, daemonPid)
		moved, err := moveToLeaf(mount, c.self, c.target, daemonPid)
		if err != nil {
			t.Fatalf("moveToLeaf(%q, %q): %v", c.self, c.target, err)
		}
		if got := len(moved) > 0; got != c.move {
			t.Errorf("moveToLeaf(%q, %q) moved %v, want a move: %v", c.self, c.target, moved, c.move)
		}
	}
}

// TestParseSelfCgroupV2 guarantees that the daemon's v2 cgroup is read
// from the "0::PATH" line on unified and hybrid hosts, and that a v1-only
// file is an error rather than a guess.
func TestParseSelfCgroupV2(t *testing.T) {
	for _, c := range []struct {
		data, want string
	}{
		{"0::/\n", "/"},
		{"0::/kubepods.slice/pod1/cri-containerd-2.scope\n", "/kubepods.slice/pod1/cri-containerd-2.scope"},
		{"12:memory:/x\n9:name=systemd:/y\n0::/user.slice\n", "/user.slice"},
	} {
		got, err := parseSelfCgroupV2([]byte(c.data))
		if err != nil || got != c.want {
			t.Errorf("parseSelfCgroupV2(%q) = %q, %v; want %q", c.data, got, err, c.want)
		}
	}
	if got, err := parseSelfCgroupV2([]byte("12:memory:/x\n4:pids:/x\n")); err == nil {
		t.Errorf("parseSelfCgroupV2 of a v1-only file = %q, want an error", got)
	}
}

// TestReadProcsRejectsGarbage guarantees that a cgroup.procs that is not a
// list of pids is an error, not a partial list.
func TestReadProcsRejectsGarbage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte("1\nx\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if pids, err := readProcs(dir); err == nil {
		t.Errorf("readProcs = %v, want an error", pids)
	}
}
