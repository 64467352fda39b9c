package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// TestBadIDsAreInvalidArgument guarantees that malformed sandbox IDs are
// rejected before they reach a path or an argv, on every RPC.
func TestBadIDsAreInvalidArgument(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	c := ctx(t)
	for _, id := range []string{"", "../../etc", "--root=/", "A B", strings.Repeat("a", 65)} {
		_, err := d.client.GetSandbox(c, &sandboxv1.GetSandboxRequest{SandboxId: id})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("GetSandbox(%q): %v", id, err)
		}
		_, err = d.client.DestroySandbox(c, &sandboxv1.DestroySandboxRequest{SandboxId: id})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("DestroySandbox(%q): %v", id, err)
		}
		_, err = d.tryRun(c, id, &sandboxv1.ExecRequest{Language: sandboxv1.Language_LANGUAGE_BASH, Code: "true"})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("Exec(%q): %v", id, err)
		}
		_, _, err = d.download(t, id, "x")
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("Download(%q): %v", id, err)
		}
	}
	_, err := d.client.GetSandbox(c, &sandboxv1.GetSandboxRequest{SandboxId: "sb-doesnotexist"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("unknown ID: %v, want NotFound", err)
	}
	_, err = d.client.CreateSandbox(c, &sandboxv1.CreateSandboxRequest{Template: "no-such-template"})
	if status.Code(err) != codes.NotFound || !strings.Contains(status.Convert(err).Message(), "python") {
		t.Errorf("unknown template: %v, want NotFound listing the known templates", err)
	}
	_, err = d.client.CreateSandbox(c, &sandboxv1.CreateSandboxRequest{Labels: map[string]string{"bad key": "x"}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad label: %v, want InvalidArgument", err)
	}
}

// TestBadExecRequestsAreInvalidArgument guarantees clear errors for an
// unset language, a timeout over the template maximum and bad env names.
func TestBadExecRequestsAreInvalidArgument(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)
	c := ctx(t)
	bad := []*sandboxv1.ExecRequest{
		{Code: "print(1)"},
		{Language: sandboxv1.Language_LANGUAGE_PYTHON, Code: "1", Timeout: durationpb.New(24 * time.Hour)},
		{Language: sandboxv1.Language_LANGUAGE_PYTHON, Code: "1", Timeout: durationpb.New(-time.Second)},
		{Language: sandboxv1.Language_LANGUAGE_BASH, Code: "true", Env: map[string]string{"1BAD": "x"}},
		{Language: sandboxv1.Language_LANGUAGE_BASH, Code: "true", Workdir: "../.."},
	}
	for _, req := range bad {
		if _, err := d.tryRun(c, id, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%v: got %v, want InvalidArgument", req, err)
		}
	}
}

// TestDestroyedSandboxIsGone guarantees that Exec on a destroyed sandbox is
// NotFound, that destroy is idempotent, and that List and Get agree.
func TestDestroyedSandboxIsGone(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	c := ctx(t)
	sb, err := d.client.CreateSandbox(c, &sandboxv1.CreateSandboxRequest{Labels: map[string]string{"suite": "e2e"}})
	if err != nil {
		t.Fatal(err)
	}
	if sb.Template != "python" || sb.State != sandboxv1.SandboxState_SANDBOX_STATE_RUNNING || !sb.ExpiresAt.AsTime().After(sb.CreatedAt.AsTime()) {
		t.Fatalf("created %v", sb)
	}
	list, err := d.client.ListSandboxes(c, &sandboxv1.ListSandboxesRequest{LabelSelector: map[string]string{"suite": "e2e"}})
	if err != nil || len(list.Sandboxes) != 1 || list.Sandboxes[0].SandboxId != sb.SandboxId {
		t.Fatalf("list %v %v", list, err)
	}
	for range 2 {
		if _, err := d.client.DestroySandbox(c, &sandboxv1.DestroySandboxRequest{SandboxId: sb.SandboxId}); err != nil {
			t.Fatalf("destroy: %v", err)
		}
	}
	_, err = d.tryRun(c, sb.SandboxId, &sandboxv1.ExecRequest{Language: sandboxv1.Language_LANGUAGE_PYTHON, Code: "1"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("Exec after destroy: %v, want NotFound", err)
	}
	if got := strayProcesses(d.runscRoot(), sb.SandboxId); len(got) != 0 {
		t.Fatalf("runsc processes left after destroy: %v", got)
	}
}

// TestSandboxesDoNotSeeEachOther guarantees that files written in one
// sandbox (workspace, /tmp, elsewhere in the root) are invisible in another,
// and that the shared host rootfs is never written.
func TestSandboxesDoNotSeeEachOther(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	a, b := d.create(t), d.create(t)
	wantOK(t, sh(t, d, a, "echo secret > /workspace/a.txt && echo secret > /tmp/a.txt && echo x > /var/tmp/a-was-here"))
	r := sh(t, d, b, "ls /workspace /tmp; cat /var/tmp/a-was-here 2>/dev/null; echo done")
	if strings.Contains(r.stdout, "a.txt") || strings.Contains(r.stdout, "x\n") {
		t.Fatalf("sandbox b sees a's files: %q", r.stdout)
	}
	if _, err := os.Stat(os.Getenv("SANDBOXD_ROOTFS") + "/var/tmp/a-was-here"); !os.IsNotExist(err) {
		t.Fatalf("a write inside the sandbox reached the host rootfs: %v", err)
	}
}

// TestOutboundTCPFails guarantees that sandboxed code cannot open a TCP
// connection to an outside address (--network=none).
func TestOutboundTCPFails(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)
	r := py(t, d, id, `
import socket
for host in ["1.1.1.1", "10.0.0.1", "169.254.169.254"]:
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((host, 80))
        print("CONNECTED", host)
    except OSError as e:
        print("refused", host, e.errno)
`)
	wantOK(t, r)
	if strings.Contains(r.stdout, "CONNECTED") || strings.Count(r.stdout, "refused") != 3 {
		t.Fatalf("outbound connect: %q", r.stdout)
	}
}

// TestSandboxedCodeHasNoPrivilegeOrHostState guarantees that code runs as
// the unprivileged sandbox user with no capabilities, and that neither the
// daemon's environment nor host paths show inside.
func TestSandboxedCodeHasNoPrivilegeOrHostState(t *testing.T) {
	d := startDaemon(t, daemonOpts{env: []string{"SANDBOXD_TEST_SECRET=hunter2"}})
	id := d.create(t)
	r := sh(t, d, id, "id -u; grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status; grep NoNewPrivs /proc/self/status; cat /proc/1/environ /proc/self/environ | tr '\\0' '\\n'; cat /proc/self/mountinfo; hostname")
	wantOK(t, r)
	out := r.stdout
	if !strings.HasPrefix(out, "1000\n") {
		t.Fatalf("not running as uid 1000: %q", out)
	}
	for _, capLine := range []string{"CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1"} {
		if !strings.Contains(out, capLine) {
			t.Errorf("missing %q in %q", capLine, out)
		}
	}
	for _, leak := range []string{"hunter2", d.stateDir, os.Getenv("SANDBOXD_ROOTFS"), bins.dir} {
		if strings.Contains(out, leak) {
			t.Errorf("sandbox sees host state %q:\n%s", leak, out)
		}
	}
}

// TestRestartAfterSIGKILLLeavesNoStrays guarantees that a daemon killed with
// SIGKILL leaves nothing behind but its clients' sandboxes once it starts
// again on the same state directory: the pool's idle sandboxes (never
// handed out, so not adopted) leave no runsc state, process or holder,
// while the clients' sandboxes are adopted.
func TestRestartAfterSIGKILLLeavesNoStrays(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	created := []string{d.create(t), d.create(t)}
	for _, id := range created {
		if len(strayProcesses(d.runscRoot(), id)) == 0 {
			t.Fatalf("no runsc processes found for sandbox %s: the check is blind", id)
		}
	}
	d.waitPool(t, "python", "refilled", func(p *sandboxv1.Pool) bool { return p.GetIdle() >= 1 })
	d.kill()
	var pooled []string
	for _, id := range runscList(t, d.runscRoot()) {
		if !slices.Contains(created, id) {
			pooled = append(pooled, id)
		}
	}
	if len(pooled) == 0 {
		t.Fatal("runsc state lists no pool sandbox after the kill: the check is blind")
	}
	d2 := startDaemon(t, daemonOpts{stateDir: d.stateDir})
	now := strings.Join(runscList(t, d2.runscRoot()), " ")
	for _, id := range pooled {
		if got := strayProcesses(d2.runscRoot(), id); len(got) != 0 {
			t.Fatalf("runsc processes of pool sandbox %s left after restart: %v", id, got)
		}
		if strings.Contains(now, id) {
			t.Fatalf("runsc still lists pool sandbox %s after restart", id)
		}
		if _, err := os.Stat(filepath.Join(d.stateDir, "holders", id+".sock")); !os.IsNotExist(err) {
			t.Fatalf("holder socket of pool sandbox %s left after restart: %v", id, err)
		}
	}
	list, err := d2.client.ListSandboxes(context.Background(), &sandboxv1.ListSandboxesRequest{})
	if err != nil || len(list.Sandboxes) != len(created) {
		t.Fatalf("restarted daemon lists %v %v, want the %d created", list, err, len(created))
	}
	// And it works.
	wantOK(t, py(t, d2, d2.create(t), "1"))
}

// TestShutdownDestroysSandboxes guarantees that SIGTERM destroys every
// sandbox and leaves no process or mount behind.
func TestShutdownDestroysSandboxes(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	d.create(t)
	d.stop()
	if got := strayProcesses(d.runscRoot()); len(got) != 0 {
		t.Fatalf("runsc processes left after SIGTERM: %v", got)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mounts), d.stateDir) {
		t.Fatalf("mounts left under the state directory after SIGTERM:\n%s", mounts)
	}
}

// runscList returns the IDs runsc knows in root.
func runscList(t *testing.T, root string) []string {
	t.Helper()
	out, err := exec.Command(os.Getenv("SANDBOXD_RUNSC"), "--root="+root, "list", "-quiet").CombinedOutput()
	if err != nil {
		t.Fatalf("runsc list: %v: %s", err, out)
	}
	return strings.Fields(string(out))
}
