package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// poolOf returns the pool of template.
func (d *daemon) poolOf(t testing.TB, template string) *sandboxv1.Pool {
	t.Helper()
	resp, err := d.client.ListPools(ctx(t), &sandboxv1.ListPoolsRequest{})
	if err != nil {
		t.Fatalf("ListPools: %v", err)
	}
	for _, p := range resp.Pools {
		if p.Template == template {
			return p
		}
	}
	t.Fatalf("no pool for template %q in %v", template, resp.Pools)
	return nil
}

// waitPool polls ListPools until cond holds, for up to a minute.
func (d *daemon) waitPool(t testing.TB, template, what string, cond func(*sandboxv1.Pool) bool) *sandboxv1.Pool {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		p := d.poolOf(t, template)
		if cond(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool %s: %s not reached: %v", template, what, p)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *daemon) createFrom(t testing.TB, req *sandboxv1.CreateSandboxRequest) (*sandboxv1.Sandbox, error) {
	t.Helper()
	sb, err := d.client.CreateSandbox(ctx(t), req)
	if err == nil {
		t.Cleanup(func() {
			d.client.DestroySandbox(context.Background(), &sandboxv1.DestroySandboxRequest{SandboxId: sb.SandboxId})
		})
	}
	return sb, err
}

// copyPolicy puts a copy of a testdata policy in a temporary directory, so a
// test can rewrite it.
func copyPolicy(t testing.TB, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPoolHitsThenColdStart guarantees the pool contract end to end: with
// idle=2, two quick creates are pool hits, a third cold-starts and says so,
// and the pool refills back to 2.
func TestPoolHitsThenColdStart(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, "pool.yaml")})
	d.waitPool(t, "python", "2 idle", func(p *sandboxv1.Pool) bool { return p.Idle == 2 })
	var sbs []*sandboxv1.Sandbox
	for range 3 {
		sb, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{})
		if err != nil {
			t.Fatal(err)
		}
		sbs = append(sbs, sb)
	}
	for i, wantCold := range []bool{false, false, true} {
		if sbs[i].ColdStart != wantCold {
			t.Fatalf("create %d: cold_start %v, want %v", i, sbs[i].ColdStart, wantCold)
		}
		wantOK(t, py(t, d, sbs[i].SandboxId, "print('ok')"))
	}
	p := d.waitPool(t, "python", "refill to 2", func(p *sandboxv1.Pool) bool { return p.Idle == 2 })
	if p.Hits != 2 || p.Misses != 1 || p.InUse != 3 {
		t.Fatalf("pool %v, want 2 hits, 1 miss, 3 in use", p)
	}
}

// TestWarmImportsArePreloaded guarantees that a pooled sandbox's interpreter
// already holds the template's warm imports at the first Exec, and that
// per-request environment variables apply without a cold start.
func TestWarmImportsArePreloaded(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, "pool.yaml")})
	d.waitPool(t, "python", "2 idle", func(p *sandboxv1.Pool) bool { return p.Idle == 2 })
	sb, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{})
	if err != nil || sb.ColdStart {
		t.Fatalf("create: %v %v", sb, err)
	}
	r, err := d.tryRun(ctx(t), sb.SandboxId, &sandboxv1.ExecRequest{
		Language: sandboxv1.Language_LANGUAGE_PYTHON, Env: map[string]string{"GREETING": "hi"},
		Code: "import sys, os\nprint('numpy' in sys.modules, os.environ['GREETING'])",
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.stdout != "True hi\n" {
		t.Fatalf("stdout %q (stderr %q): numpy not preloaded or env not applied", r.stdout, r.stderr)
	}
}

// TestPolicyReloadGrowsPoolAndRejectsInvalid guarantees hot reload: a
// changed policy file grows the pool without a signal, SIGHUP with an
// invalid file keeps the old policy, and live sandboxes are not disturbed.
func TestPolicyReloadGrowsPoolAndRejectsInvalid(t *testing.T) {
	path := copyPolicy(t, "pool.yaml")
	d := startDaemon(t, daemonOpts{policy: path})
	d.waitPool(t, "python", "2 idle", func(p *sandboxv1.Pool) bool { return p.Idle == 2 })
	sb, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, py(t, d, sb.SandboxId, "kept = 1"))

	data, _ := os.ReadFile(path)
	grown := strings.Replace(string(data), "idle: 2", "idle: 3", 1)
	if err := os.WriteFile(path, []byte(grown), 0o644); err != nil {
		t.Fatal(err)
	}
	d.waitPool(t, "python", "target 3 and 3 idle", func(p *sandboxv1.Pool) bool { return p.TargetIdle == 3 && p.Idle == 3 })

	bad := strings.Replace(grown, "idle: 3", "idle: 9", 1) // idle > max_total
	os.WriteFile(path, []byte(bad), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.log.String(), "policy reload rejected") {
		if time.Now().After(deadline) {
			t.Fatalf("invalid policy not reported in the log:\n%s", d.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p := d.poolOf(t, "python"); p.TargetIdle != 3 {
		t.Fatalf("an invalid policy changed the pool: %v", p)
	}
	r := py(t, d, sb.SandboxId, "kept")
	if r.result.Value != "1" {
		t.Fatalf("a live sandbox lost its state across reloads: %v", r.result)
	}
}

// TestKilledIdleSandboxIsReplaced guarantees that an idle pooled sandbox
// killed from outside is never handed out and is replaced.
func TestKilledIdleSandboxIsReplaced(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, "pool.yaml")})
	// Until the snapshot is built, runsc also lists its template sandbox.
	d.waitSnapshot(t, "python", nil)
	d.waitPool(t, "python", "2 idle", func(p *sandboxv1.Pool) bool { return p.Idle == 2 })
	idle := runscList(t, d.runscRoot())
	if len(idle) != 2 {
		t.Fatalf("runsc lists %v, want the 2 idle sandboxes", idle)
	}
	victim := idle[0]
	out, err := exec.Command(os.Getenv("SANDBOXD_RUNSC"), "--root="+d.runscRoot(), "state", victim).Output()
	if err != nil {
		t.Fatal(err)
	}
	var state struct{ Pid int }
	if err := json.Unmarshal(out, &state); err != nil || state.Pid <= 0 {
		t.Fatalf("runsc state %s: %v", out, err)
	}
	pid := state.Pid
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing sandbox process %d: %v", pid, err)
	}
	d.waitPool(t, "python", "a failure and 2 idle", func(p *sandboxv1.Pool) bool { return p.Failures >= 1 && p.Idle == 2 })
	for range 2 {
		sb, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if sb.SandboxId == victim {
			t.Fatal("the killed sandbox was handed out")
		}
		wantOK(t, py(t, d, sb.SandboxId, "1"))
	}
}

// TestTemplateAndHostLimitsAreResourceExhausted guarantees that creates
// beyond pools[].max_total, and beyond host.max_sandboxes, fail with
// ResourceExhausted naming the limit, and that destroying one frees a place.
func TestTemplateAndHostLimitsAreResourceExhausted(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, "limits.yaml")})
	for range 4 {
		if _, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "max_total") {
		t.Fatalf("fifth python sandbox: %v, want ResourceExhausted naming max_total", err)
	}
	// 4 python + 2 plain = host.max_sandboxes 6.
	var plain []string
	for range 2 {
		sb, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{Template: "plain"})
		if err != nil {
			t.Fatal(err)
		}
		plain = append(plain, sb.SandboxId)
	}
	_, err = d.createFrom(t, &sandboxv1.CreateSandboxRequest{Template: "plain"})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "max_sandboxes") {
		t.Fatalf("seventh sandbox: %v, want ResourceExhausted naming max_sandboxes", err)
	}
	// The python pool is at max_total, so it cannot take the freed place.
	d.client.DestroySandbox(ctx(t), &sandboxv1.DestroySandboxRequest{SandboxId: plain[0]})
	if _, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{Template: "plain"}); err != nil {
		t.Fatalf("create after a destroy: %v", err)
	}
}
