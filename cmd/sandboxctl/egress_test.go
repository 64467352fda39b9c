package main

import (
	"context"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// UpdateSandboxEgress sets the sandbox's list, refusing entries that name
// "wider" as the daemon refuses a list wider than the template's.
func (f *fakeServer) UpdateSandboxEgress(_ context.Context, req *sandboxv1.UpdateSandboxEgressRequest) (*sandboxv1.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, ok := f.sandboxes[req.GetSandboxId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "sandbox %q not found", req.GetSandboxId())
	}
	for _, e := range req.GetAllow() {
		if strings.Contains(e, "wider") {
			return nil, status.Errorf(codes.InvalidArgument, "egress entry %q is not within the template's allowlist", e)
		}
	}
	sb.EgressAllow = req.GetAllow()
	return sb, nil
}

// TestCreateAllowAndGetEgress guarantees that create sends each --allow
// entry in order and that get shows the sandbox's egress allowlist, and
// shows no Egress row for a sandbox without one.
func TestCreateAllowAndGetEgress(t *testing.T) {
	f := &fakeServer{}
	sock := startFake(t, f)
	wantExit(t, runOn(t, sock, "", "create", "--template", "web", "--allow", "127.0.0.2/32:443", "--allow", "egress-ok.sandboxd.test:443"), 0)
	f.locked(func() {
		if got := f.created.GetEgressAllow(); !slices.Equal(got, []string{"127.0.0.2/32:443", "egress-ok.sandboxd.test:443"}) {
			t.Errorf("egress_allow sent %q", got)
		}
		f.sandboxes["sb-1"].EgressAllow = f.created.GetEgressAllow()
	})
	r := runOn(t, sock, "", "get", "sb-1")
	wantExit(t, r, 0)
	if !strings.Contains(r.stdout, "Egress:") || !strings.Contains(r.stdout, "127.0.0.2/32:443, egress-ok.sandboxd.test:443") {
		t.Errorf("get does not show the egress allowlist:\n%s", r.stdout)
	}
	wantExit(t, runOn(t, sock, "", "create"), 0)
	if r := runOn(t, sock, "", "get", "sb-2"); strings.Contains(r.stdout, "Egress:") {
		t.Errorf("get shows Egress for a sandbox without egress:\n%s", r.stdout)
	}
}

// TestEgressVerb guarantees "sandboxctl egress": entries replace the list
// and the list in force is printed one entry a line; --none sends an empty
// list; no entries only prints the list; a refused list is an error line
// and exit 1; --none with entries is a usage error that reaches no daemon.
func TestEgressVerb(t *testing.T) {
	f := &fakeServer{}
	sock := startFake(t, f)
	wantExit(t, runOn(t, sock, "", "create", "--template", "web"), 0)

	r := runOn(t, sock, "", "egress", "sb-1", "127.0.0.2/32:443", "*.sandboxd.test:443")
	wantExit(t, r, 0)
	if r.stdout != "127.0.0.2/32:443\n*.sandboxd.test:443\n" {
		t.Errorf("egress printed %q, want the list one entry a line", r.stdout)
	}
	r = runOn(t, sock, "", "egress", "sb-1")
	wantExit(t, r, 0)
	if r.stdout != "127.0.0.2/32:443\n*.sandboxd.test:443\n" {
		t.Errorf("egress without entries printed %q, want the list in force", r.stdout)
	}
	r = runOn(t, sock, "", "egress", "sb-1", "wider.example")
	wantExit(t, r, 1)
	if !strings.Contains(r.stderr, "not within the template's allowlist (invalid argument)") {
		t.Errorf("stderr %q, want the daemon's refusal", r.stderr)
	}
	r = runOn(t, sock, "", "egress", "--none", "sb-1")
	wantExit(t, r, 0)
	if r.stdout != "" {
		t.Errorf("egress --none printed %q, want nothing (an empty list)", r.stdout)
	}
	f.locked(func() {
		if got := f.sandboxes["sb-1"].GetEgressAllow(); len(got) != 0 {
			t.Errorf("--none left the list %q", got)
		}
	})
	r = runOn(t, sock, "", "egress", "--none", "sb-1", "example.com")
	wantExit(t, r, exitUsage)
}
