package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/policy"
)

// startReloader runs a reloader of the policy file at path until the test
// ends, once it watches; each policy it applies arrives on the channel.
func startReloader(t *testing.T, path string) <-chan *policy.Policy {
	t.Helper()
	first, err := policy.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	applied := make(chan *policy.Policy, 4)
	r := &reloader{path: path, log: slog.New(slog.NewTextHandler(io.Discard, nil)), current: first, apply: func(p *policy.Policy) { applied <- p }}
	go r.run(t.Context())
	time.Sleep(100 * time.Millisecond) // the watch is set up
	return applied
}

// TestReloadFollowsAKubernetesConfigMapUpdate guarantees that a policy
// mounted from a ConfigMap is reloaded when Kubernetes updates it: the
// kubelet writes a new timestamped directory and renames a new ..data
// symlink over the old one, so the policy file's own name sees no event.
func TestReloadFollowsAKubernetesConfigMapUpdate(t *testing.T) {
	dir := t.TempDir()
	write := func(version, body string) {
		t.Helper()
		d := filepath.Join(dir, "..2026_11_30_"+version)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "policy.yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(d), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, kubeDataLink)); err != nil {
			t.Fatal(err)
		}
	}
	write("1", "templates: {python: {}}\n")
	path := filepath.Join(dir, "policy.yaml")
	if err := os.Symlink(filepath.Join(kubeDataLink, "policy.yaml"), path); err != nil {
		t.Fatal(err)
	}
	applied := startReloader(t, path)
	write("2", "templates: {python: {}}\nhost:\n  max_sandboxes: 7\n")
	select {
	case p := <-applied:
		if p.Host.MaxSandboxes != 7 {
			t.Fatalf("reloaded policy has max_sandboxes %d, want 7", p.Host.MaxSandboxes)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the ConfigMap update was not reloaded")
	}
}

// TestReloadFollowsTheTenantsFile guarantees that a change to the policy's
// tenants_file (in another directory, as a Kubernetes Secret is mounted)
// reloads the policy: a tenant added there can authenticate without a
// restart or a SIGHUP.
func TestReloadFollowsTheTenantsFile(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"config", "secret"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	replace := func(path, body string) {
		t.Helper()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	tenants := filepath.Join(dir, "secret", "tenants.yaml")
	hash := func(c string) string { return "sha256:" + strings.Repeat(c, 64) }
	replace(tenants, "tenants:\n  team-a:\n    tokens: ["+hash("a")+"]\n")
	path := filepath.Join(dir, "config", "policy.yaml")
	replace(path, "templates: {python: {}}\ntenants_file: ../secret/tenants.yaml\n")
	applied := startReloader(t, path)
	replace(tenants, "tenants:\n  team-a:\n    tokens: ["+hash("a")+"]\n  team-b:\n    tokens: ["+hash("b")+"]\n")
	select {
	case p := <-applied:
		if p.Tenants["team-b"] == nil {
			t.Fatalf("reloaded tenants %v, want team-b added", p.Tenants)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the tenants file changed, but the policy was not reloaded")
	}
}
