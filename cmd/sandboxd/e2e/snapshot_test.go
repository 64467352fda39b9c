package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// waitSnapshot waits until template's snapshot is READY and built after
// `after` (nil: any), and returns it.
func (d *daemon) waitSnapshot(t testing.TB, template string, after *timestamppb.Timestamp) *sandboxv1.Snapshot {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		s := d.poolOf(t, template).GetSnapshot()
		if s.GetState() == sandboxv1.SnapshotState_SNAPSHOT_STATE_READY && (after == nil || s.GetBuiltAt().AsTime().After(after.AsTime())) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot of %s not ready (after %v) within 2 minutes: %v", template, after, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// imageDirs lists the snapshot image directories in the daemon's state.
func (d *daemon) imageDirs(t testing.TB) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(d.stateDir, "snapshots", "*", "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range dirs {
		dirs[i] = filepath.Dir(dirs[i])
	}
	return dirs
}

// restored creates a sandbox of template with bypass_pool and requires it
// to have been restored from the snapshot.
func (d *daemon) restored(t testing.TB, template string) *sandboxv1.Sandbox {
	t.Helper()
	sb, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{Template: template, BypassPool: true})
	if err != nil {
		t.Fatal(err)
	}
	if sb.Start != sandboxv1.StartKind_START_KIND_RESTORE || !sb.ColdStart {
		t.Fatalf("create of %s with a ready snapshot: start %v cold_start %v, want RESTORE and true", template, sb.Start, sb.ColdStart)
	}
	return sb
}

// TestRestoredSandboxes guarantees what a client gets from a snapshot
// restore: the warm imports are loaded at the first Exec, it says
// START_KIND_RESTORE, clones share no random state and see the real time,
// egress stays denied, bypass_snapshot and snapshot: false boot in full,
// the image is root-only, and a destroyed clone leaves no process, cgroup
// or bundle.
func TestRestoredSandboxes(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, "snapshot.yaml")})
	snap := d.waitSnapshot(t, "python", nil)
	if snap.ImageBytes < 1<<20 || snap.BuiltAt == nil {
		t.Fatalf("ready snapshot %v: want an image size and a build time", snap)
	}
	for _, dir := range d.imageDirs(t) {
		st, err := os.Stat(dir)
		if err != nil || st.Mode().Perm() != 0o700 {
			t.Fatalf("image directory %s: %v %v, want mode 0700", dir, st.Mode(), err)
		}
	}

	sb := d.restored(t, "python")
	r := py(t, d, sb.SandboxId, "import sys\nprint(all(m in sys.modules for m in ('numpy', 'pandas')))")
	wantOK(t, r)
	if r.stdout != "True\n" {
		t.Fatalf("warm imports after restore: %q (stderr %q)", r.stdout, r.stderr)
	}
	got, err := d.client.GetSandbox(ctx(t), &sandboxv1.GetSandboxRequest{SandboxId: sb.SandboxId})
	if err != nil || got.Start != sandboxv1.StartKind_START_KIND_RESTORE {
		t.Fatalf("GetSandbox: %v %v, want start RESTORE", got, err)
	}

	t.Run("clones get fresh entropy and the real time", func(t *testing.T) {
		const code = `import random, numpy as np, uuid, secrets, os, tempfile, time
print(random.random(), np.random.rand(), np.random.default_rng().random(), uuid.uuid4(),
      secrets.token_hex(8), os.urandom(8).hex(), next(tempfile._get_candidate_names()), time.time())`
		seen := make([]map[string]bool, 7)
		for i := range seen {
			seen[i] = map[string]bool{}
		}
		for clone := range 5 {
			sb := d.restored(t, "python")
			r := py(t, d, sb.SandboxId, code)
			wantOK(t, r)
			f := strings.Fields(r.stdout)
			if len(f) != 8 {
				t.Fatalf("clone %d printed %q", clone, r.stdout)
			}
			for i := range 7 {
				if seen[i][f[i]] {
					t.Errorf("clone %d repeats value %d (%s) of an earlier clone: %q", clone, i, f[i], r.stdout)
				}
				seen[i][f[i]] = true
			}
			var clock float64
			if _, err := fmt.Sscan(f[7], &clock); err != nil || time.Since(time.Unix(int64(clock), 0)).Abs() > 30*time.Second {
				t.Errorf("clone %d: time.time() = %s, host time %d", clone, f[7], time.Now().Unix())
			}
		}
	})

	t.Run("egress is denied", func(t *testing.T) {
		r := py(t, d, sb.SandboxId, `import socket
s = socket.socket(); s.settimeout(5)
try:
    s.connect(("1.1.1.1", 80)); print("connected")
except OSError as e:
    print("refused", e.errno)`)
		if !strings.HasPrefix(r.stdout, "refused") {
			t.Fatalf("outbound TCP from a restored sandbox: %q %q", r.stdout, r.stderr)
		}
	})

	t.Run("bypass_snapshot and snapshot false boot", func(t *testing.T) {
		sb, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{BypassSnapshot: true})
		if err != nil || sb.Start != sandboxv1.StartKind_START_KIND_BOOT {
			t.Fatalf("bypass_snapshot create: %v %v, want START_KIND_BOOT", sb, err)
		}
		if s := d.poolOf(t, "nosnap").GetSnapshot(); s.GetState() != sandboxv1.SnapshotState_SNAPSHOT_STATE_DISABLED {
			t.Fatalf("snapshot of a snapshot: false template: %v, want DISABLED", s)
		}
		sb, err = d.createFrom(t, &sandboxv1.CreateSandboxRequest{Template: "nosnap"})
		if err != nil || sb.Start != sandboxv1.StartKind_START_KIND_BOOT {
			t.Fatalf("create of a snapshot: false template: %v %v, want START_KIND_BOOT", sb, err)
		}
		wantOK(t, py(t, d, sb.SandboxId, "import json"))
	})

	t.Run("a pool hit says POOL", func(t *testing.T) {
		d.waitPool(t, "python", "1 idle", func(p *sandboxv1.Pool) bool { return p.Idle == 1 })
		sb, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{})
		if err != nil || sb.Start != sandboxv1.StartKind_START_KIND_POOL || sb.ColdStart {
			t.Fatalf("pool hit: %v %v, want START_KIND_POOL and no cold start", sb, err)
		}
	})

	t.Run("a destroyed clone leaves nothing", func(t *testing.T) {
		sb := d.restored(t, "python")
		id := sb.SandboxId
		if len(strayProcesses(d.runscRoot(), id)) == 0 {
			t.Fatalf("no runsc process names the restored sandbox %s", id)
		}
		if _, err := d.client.DestroySandbox(ctx(t), &sandboxv1.DestroySandboxRequest{SandboxId: id}); err != nil {
			t.Fatal(err)
		}
		if got := strayProcesses(d.runscRoot(), id); len(got) != 0 {
			t.Fatalf("runsc processes left after destroy: %v", got)
		}
		if left, _ := filepath.Glob("/sys/fs/cgroup/*/sandboxd-*/" + id); len(left) != 0 {
			t.Fatalf("cgroups left after destroy: %v", left)
		}
		if _, err := os.Stat(filepath.Join(d.stateDir, "bundles", id)); !os.IsNotExist(err) {
			t.Fatalf("bundle left after destroy: %v", err)
		}
		if _, err := os.Stat(filepath.Join(d.runscRoot(), id)); err == nil {
			t.Fatalf("runsc state left after destroy")
		}
	})
}

// TestOOMInRestoredSandboxIsTyped guarantees that memory exhaustion in a
// restored clone is typed as in a booted sandbox: OOM_KILLED (the agent's
// guard first, or the host's kill) or MemoryError, never a silent death,
// and the daemon keeps serving.
func TestOOMInRestoredSandboxIsTyped(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, "snapshot.yaml")})
	d.waitSnapshot(t, "small", nil)
	sb, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{Template: "small"})
	if err != nil || sb.Start != sandboxv1.StartKind_START_KIND_RESTORE {
		t.Fatalf("create: %v %v, want START_KIND_RESTORE", sb, err)
	}
	r := d.run(t, sb.SandboxId, sandboxv1.Language_LANGUAGE_PYTHON, "b = bytearray(2 << 30)\nb[::4096] = b'x' * len(b[::4096])", time.Minute)
	switch {
	case r.result.Status == sandboxv1.ExecStatus_EXEC_STATUS_OOM_KILLED:
	case r.result.Status == sandboxv1.ExecStatus_EXEC_STATUS_ERROR && r.result.ErrorName == "MemoryError":
	default:
		t.Fatalf("memory bomb in a restored sandbox: %v (%q), want OOM_KILLED or MemoryError", r.result, r.stderr)
	}
	wantOK(t, py(t, d, d.create(t), "print('still serving')"))
}

// TestSnapshotRebuilds guarantees the image's life cycle: a policy change
// that alters the key rebuilds it, deletes the old image and clones carry
// the change; a damaged image (pages.img truncated) is detected before any
// restore, deleted and rebuilt, and no sandbox is restored from it.
func TestSnapshotRebuilds(t *testing.T) {
	path := copyPolicy(t, "snapshot.yaml")
	d := startDaemon(t, daemonOpts{policy: path})
	first := d.waitSnapshot(t, "python", nil)
	d.waitSnapshot(t, "small", nil)
	before := d.imageDirs(t)

	t.Run("a key change rebuilds", func(t *testing.T) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		changed := strings.Replace(string(data), `SNAPSHOT_VERSION: "1"`, `SNAPSHOT_VERSION: "2"`, 1)
		if err := os.WriteFile(path, []byte(changed), 0o644); err != nil {
			t.Fatal(err)
		}
		second := d.waitSnapshot(t, "python", first.BuiltAt)
		sb := d.restored(t, "python")
		if r := py(t, d, sb.SandboxId, "import os; print(os.environ['SNAPSHOT_VERSION'])"); r.stdout != "2\n" {
			t.Fatalf("a clone after the change sees SNAPSHOT_VERSION=%q (stderr %q), want 2", r.stdout, r.stderr)
		}
		after := d.imageDirs(t)
		if len(after) != len(before) {
			t.Fatalf("image directories before %v, after %v: the old image was not deleted", before, after)
		}
		if slices.Equal(before, after) {
			t.Fatalf("image directories unchanged after a key change: %v", after)
		}
		if second.ImageBytes == 0 {
			t.Fatalf("rebuilt snapshot %v has no size", second)
		}
	})

	t.Run("a damaged image is rebuilt, never restored", func(t *testing.T) {
		ready := d.waitSnapshot(t, "python", nil)
		for _, dir := range d.imageDirs(t) {
			if err := os.Truncate(filepath.Join(dir, "pages.img"), 4096); err != nil {
				t.Fatal(err)
			}
		}
		sb, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{BypassPool: true})
		if err != nil {
			t.Fatal(err)
		}
		if sb.Start != sandboxv1.StartKind_START_KIND_BOOT {
			t.Fatalf("create with a damaged image: start %v, want START_KIND_BOOT", sb.Start)
		}
		wantOK(t, py(t, d, sb.SandboxId, "import numpy"))
		rebuilt := d.waitSnapshot(t, "python", ready.BuiltAt)
		if !strings.Contains(d.log.String(), "altered or damaged") {
			t.Errorf("the daemon did not log the damaged image")
		}
		sb = d.restored(t, "python")
		wantOK(t, py(t, d, sb.SandboxId, "import numpy"))
		t.Logf("rebuilt image: %v", rebuilt)
	})
}

// TestRestartReusesSnapshot guarantees that a daemon restarted on the same
// state directory reuses a verified image instead of building it again.
func TestRestartReusesSnapshot(t *testing.T) {
	policy := copyPolicy(t, "snapshot.yaml")
	state := filepath.Join(t.TempDir(), "state")
	d := startDaemon(t, daemonOpts{policy: policy, stateDir: state})
	built := d.waitSnapshot(t, "python", nil)
	d.stop()
	d = startDaemon(t, daemonOpts{policy: policy, stateDir: state})
	again := d.waitSnapshot(t, "python", nil)
	if !again.BuiltAt.AsTime().Equal(built.BuiltAt.AsTime()) {
		t.Fatalf("built at %v before the restart, %v after: the image was rebuilt", built.BuiltAt.AsTime(), again.BuiltAt.AsTime())
	}
	if !strings.Contains(d.log.String(), "verified and reused") {
		t.Errorf("the restarted daemon did not log the reuse")
	}
	d.restored(t, "python")
}

// TestReplacedAgentRebuildsSnapshot guarantees that replacing the agent
// binary under a running daemon (an upgrade in place) never restores the
// old agent's image: the next sandbox boots with the new binary, and the
// daemon builds a new image that later sandboxes are restored from.
func TestReplacedAgentRebuildsSnapshot(t *testing.T) {
	requireE2E(t) // builds the agent
	agent := filepath.Join(t.TempDir(), "sandbox-agent")
	data, err := os.ReadFile(bins.agent)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(agent, data, 0o755); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, "pool.yaml"), args: []string{"--agent", agent}})
	first := d.waitSnapshot(t, "python", nil)
	// Bytes after the end of an ELF file change its digest, not its code.
	f, err := os.OpenFile(agent, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("upgraded")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sb, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{BypassPool: true})
	if err != nil || sb.Start != sandboxv1.StartKind_START_KIND_BOOT {
		t.Fatalf("create after the agent changed: %v %v, want START_KIND_BOOT", sb, err)
	}
	d.waitSnapshot(t, "python", first.BuiltAt)
	d.restored(t, "python")
}
