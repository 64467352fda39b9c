package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/policy"
)

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
	first, err := policy.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	applied := make(chan *policy.Policy, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &reloader{path: path, log: slog.New(slog.NewTextHandler(io.Discard, nil)), current: first, apply: func(p *policy.Policy) { applied <- p }}
	go r.run(ctx)
	time.Sleep(100 * time.Millisecond) // the watch is set up
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
