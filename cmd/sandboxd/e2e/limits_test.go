package e2e

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// TestMemoryBombIsOOMKilled guarantees that code allocating far over the
// template's memory limit (256Mi here) is stopped: either the host kills the
// sandbox through its cgroup, reported as OOM_KILLED on the Exec and DEAD
// with oom_killed on GetSandbox; or the agent's memory guard stops the code
// first, reported as OOM_KILLED on the Exec with the sandbox still RUNNING;
// or Python raises MemoryError. The daemon keeps serving and a new sandbox
// works.
func TestMemoryBombIsOOMKilled(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, "limits.yaml")})
	sb, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{Template: "plain"})
	if err != nil {
		t.Fatal(err)
	}
	r := d.run(t, sb.SandboxId, sandboxv1.Language_LANGUAGE_PYTHON, "b = bytearray(2 << 30)\nb[::4096] = b'x' * len(b[::4096])", time.Minute)
	t.Logf("memory bomb: %v", r.result)
	switch r.result.Status {
	case sandboxv1.ExecStatus_EXEC_STATUS_OOM_KILLED:
		got, err := d.client.GetSandbox(ctx(t), &sandboxv1.GetSandboxRequest{SandboxId: sb.SandboxId})
		switch {
		case err != nil:
			t.Fatal(err)
		case got.State == sandboxv1.SandboxState_SANDBOX_STATE_RUNNING && strings.Contains(r.result.Message, "about to run out of memory"):
			wantOK(t, py(t, d, sb.SandboxId, "print('guarded')"))
		case got.State != sandboxv1.SandboxState_SANDBOX_STATE_DEAD || !got.OomKilled:
			t.Fatalf("GetSandbox after the OOM kill: %v", got)
		default:
			_, err := d.tryRun(ctx(t), sb.SandboxId, &sandboxv1.ExecRequest{Language: sandboxv1.Language_LANGUAGE_PYTHON, Code: "1"})
			if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "memory") {
				t.Fatalf("Exec on the OOM-killed sandbox: %v, want FailedPrecondition saying why", err)
			}
		}
	case sandboxv1.ExecStatus_EXEC_STATUS_ERROR:
		if r.result.ErrorName != "MemoryError" {
			t.Fatalf("ERROR but not MemoryError: %v %q", r.result, r.stderr)
		}
	default:
		t.Fatalf("memory bomb ended with %v (%q), want OOM_KILLED or MemoryError", r.result, r.stderr)
	}
	wantOK(t, py(t, d, d.create(t), "print('still serving')"))
}

// TestEndlessOutputIsTruncated guarantees that `yes` forever ends with
// OUTPUT_TRUNCATED after at most limits.output bytes, and that the sandbox
// keeps working.
func TestEndlessOutputIsTruncated(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, "limits.yaml")})
	id := d.create(t)
	r := d.run(t, id, sandboxv1.Language_LANGUAGE_BASH, "yes", time.Minute)
	if r.result.Status != sandboxv1.ExecStatus_EXEC_STATUS_OUTPUT_TRUNCATED {
		t.Fatalf("status %v", r.result)
	}
	const limit = 16 << 20 // policy default limits.output
	if n := len(r.stdout) + len(r.stderr); n > limit || n < limit/2 {
		t.Fatalf("got %d bytes of output, want close to and at most %d", n, limit)
	}
	if !strings.Contains(r.result.Message, "limits.output") {
		t.Fatalf("message %q does not name the limit", r.result.Message)
	}
	wantOK(t, sh(t, d, id, "true"))
}

// TestMemoryBombUnderPythonCapRaisesMemoryError guarantees that with
// limits.python_address_space a Python memory bomb raises MemoryError: the
// sandbox stays RUNNING, earlier variables survive, and the result reports
// the Exec's peak memory below the memory limit.
func TestMemoryBombUnderPythonCapRaisesMemoryError(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, "limits.yaml")})
	sb, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{Template: "capped"})
	if err != nil {
		t.Fatal(err)
	}
	id := sb.SandboxId
	wantOK(t, py(t, d, id, "kept = 42"))
	r := py(t, d, id, "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))")
	t.Logf("memory bomb: %v", r.result)
	if r.result.Status != sandboxv1.ExecStatus_EXEC_STATUS_ERROR || r.result.ErrorName != "MemoryError" {
		t.Fatalf("memory bomb under the cap: %v %q, want ERROR MemoryError", r.result, r.stderr)
	}
	if peak := r.result.PeakMemoryBytes; peak != 0 && (peak < 200<<20 || peak >= 512<<20) {
		t.Errorf("peak memory %d MiB, want between 200 MiB and the 512 MiB limit", peak>>20)
	}
	r = py(t, d, id, "del chunks\nkept")
	if r.result.Value != "42" || r.result.StateLost {
		t.Fatalf("after MemoryError: %v", r.result)
	}
	got, err := d.client.GetSandbox(ctx(t), &sandboxv1.GetSandboxRequest{SandboxId: id})
	if err != nil || got.State != sandboxv1.SandboxState_SANDBOX_STATE_RUNNING || got.OomKilled {
		t.Fatalf("GetSandbox after MemoryError: %v %v", got, err)
	}
}

// TestCPUSpinIsThrottledToQuota guarantees that a busy loop in a sandbox
// with limits.cpu 0.5 gets about half a core: the Exec's CPU time, measured
// from the sandbox's host cgroup, is about half its duration.
func TestCPUSpinIsThrottledToQuota(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, "limits.yaml")})
	sb, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{Template: "capped"})
	if err != nil {
		t.Fatal(err)
	}
	r := py(t, d, sb.SandboxId, "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 4:\n    pass")
	wantOK(t, r)
	cpu, wall := r.result.CpuTime.AsDuration(), r.result.Duration.AsDuration()
	ratio := cpu.Seconds() / wall.Seconds()
	t.Logf("spin: cpu %v over %v = %.2f cores", cpu, wall, ratio)
	if ratio < 0.35 || ratio > 0.65 {
		t.Fatalf("a busy loop under cpu 0.5 used %.2f cores (cpu %v, wall %v)", ratio, cpu, wall)
	}
	wantOK(t, py(t, d, sb.SandboxId, "print('fine')"))
}

// TestRequestLimitsLowerTemplateLimits guarantees that CreateSandbox limits
// only lower the template's: a lower memory limit boots a sandbox for the
// request (not from the pool) whose GetSandbox shows the limits and live
// usage and whose memory really is capped there (a 400 MiB allocation that
// the template would allow is OOM-killed); a lower exec timeout maximum is
// enforced on a pooled sandbox; a raise is InvalidArgument.
func TestRequestLimitsLowerTemplateLimits(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, "limits.yaml")})
	_, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{Limits: &sandboxv1.Limits{MemoryBytes: 4 << 30}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "limits.memory_bytes") {
		t.Fatalf("raising memory: %v, want InvalidArgument naming limits.memory_bytes", err)
	}

	d.waitPool(t, "python", "1 idle", func(p *sandboxv1.Pool) bool { return p.Idle == 1 })
	sb, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{Limits: &sandboxv1.Limits{ExecTimeoutMax: durationpb.New(2 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	if sb.ColdStart || sb.Limits.GetExecTimeoutMax().AsDuration() != 2*time.Second {
		t.Fatalf("a runtime-only override should come from the pool with the lower maximum: %v", sb)
	}
	_, err = d.tryRun(ctx(t), sb.SandboxId, &sandboxv1.ExecRequest{SandboxId: sb.SandboxId, Language: sandboxv1.Language_LANGUAGE_BASH, Code: "true", Timeout: durationpb.New(time.Minute)})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("an Exec over the lowered maximum: %v, want InvalidArgument", err)
	}

	sb, err = d.createFrom(t, &sandboxv1.CreateSandboxRequest{Limits: &sandboxv1.Limits{MemoryBytes: 256 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	if !sb.ColdStart || sb.Limits.GetMemoryBytes() != 256<<20 {
		t.Fatalf("a lower memory limit must boot a sandbox with it: %v", sb)
	}
	got, err := d.client.GetSandbox(ctx(t), &sandboxv1.GetSandboxRequest{SandboxId: sb.SandboxId})
	if err != nil || got.Usage.GetMemoryBytes() <= 0 || got.Usage.GetCpuTime().AsDuration() <= 0 {
		t.Fatalf("GetSandbox usage: %v %v", got.GetUsage(), err)
	}
	r := py(t, d, sb.SandboxId, "b = bytearray(400 << 20)\nb[::4096] = b'x' * len(b[::4096])")
	if r.result.Status != sandboxv1.ExecStatus_EXEC_STATUS_OOM_KILLED {
		t.Fatalf("400 MiB under a requested 256 MiB limit: %v", r.result)
	}
	wantOK(t, py(t, d, d.create(t), "print('still serving')"))
}

// TestIdleAndLifetimeEndSandboxes guarantees that a sandbox left idle past
// its idle timeout, and one kept busy past its lifetime, are destroyed by
// the daemon: GetSandbox says DEAD and why, an Exec is FailedPrecondition
// naming the reason, and no runsc sandbox is left.
func TestIdleAndLifetimeEndSandboxes(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, "limits.yaml")})
	idle, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{Limits: &sandboxv1.Limits{IdleTimeout: durationpb.New(2 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	short, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{Limits: &sandboxv1.Limits{Lifetime: durationpb.New(4 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	// Keep the short-lived one busy: an Exec that outlives its lifetime.
	busy := make(chan execResult, 1)
	go func() {
		r, _ := d.tryRun(ctx(t), short.SandboxId, &sandboxv1.ExecRequest{Language: sandboxv1.Language_LANGUAGE_BASH, Code: "sleep 30", Timeout: durationpb.New(time.Minute)})
		busy <- r
	}()
	for _, tc := range []struct{ id, reason string }{{idle.SandboxId, "idle for more than 2s"}, {short.SandboxId, "lifetime of 4s reached"}} {
		var got *sandboxv1.Sandbox
		deadline := time.Now().Add(20 * time.Second)
		for got.GetState() != sandboxv1.SandboxState_SANDBOX_STATE_DEAD && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			if got, err = d.client.GetSandbox(ctx(t), &sandboxv1.GetSandboxRequest{SandboxId: tc.id}); err != nil {
				t.Fatal(err)
			}
		}
		if got.GetState() != sandboxv1.SandboxState_SANDBOX_STATE_DEAD || got.StateReason != tc.reason {
			t.Fatalf("sandbox %s: %v, want DEAD with reason %q", tc.id, got, tc.reason)
		}
		_, err := d.tryRun(ctx(t), tc.id, &sandboxv1.ExecRequest{Language: sandboxv1.Language_LANGUAGE_BASH, Code: "true"})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), tc.reason) {
			t.Fatalf("Exec on the ended sandbox: %v, want FailedPrecondition saying %q", err, tc.reason)
		}
		// DEAD is set first, then the sandbox is torn down.
		strays := strayProcesses(d.runscRoot(), tc.id)
		for deadline := time.Now().Add(10 * time.Second); len(strays) > 0 && time.Now().Before(deadline); {
			time.Sleep(200 * time.Millisecond)
			strays = strayProcesses(d.runscRoot(), tc.id)
		}
		if len(strays) != 0 {
			t.Fatalf("runsc processes left 10s after the sandbox ended: %v", strays)
		}
	}
	if r := <-busy; r.result.GetStatus() != sandboxv1.ExecStatus_EXEC_STATUS_KILLED {
		t.Fatalf("the Exec running when the lifetime ended: %v, want KILLED", r.result)
	}
	wantOK(t, py(t, d, d.create(t), "print('still serving')"))
}
