package e2e

import (
	"strings"
	"testing"
	"time"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// TestMemoryBombIsOOMKilled guarantees that code allocating far over the
// template's memory limit (256Mi here) is stopped: either the host kills the
// sandbox through its cgroup, reported as OOM_KILLED on the Exec and on
// GetSandbox, or Python raises MemoryError. The daemon keeps serving and a
// new sandbox works.
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
		if err != nil || got.State != sandboxv1.SandboxState_SANDBOX_STATE_DEAD || !got.OomKilled {
			t.Fatalf("GetSandbox after the OOM kill: %v %v", got, err)
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
