package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// The bench verb's own behaviour is tested in package bench; these tests
// guarantee how sandboxctl wires it: flags, exit statuses, error lines.

// TestBenchWrongOutput guarantees that a run whose first Exec does not
// print "1\n" is a failure, even though the Exec itself succeeded: noted on
// its own line, then the final error line, and exit status 1.
func TestBenchWrongOutput(t *testing.T) {
	f := &fakeServer{} // Exec succeeds with no output
	sock := startFake(t, f)
	r := runOn(t, sock, "", "bench", "--scenarios", "cold", "-n", "1", "--warmup", "0")
	wantExit(t, r, 1)
	if !strings.Contains(r.stderr, `sandboxctl: bench: cold: run 1 failed: stdout "", want "1\n"`) ||
		!strings.HasSuffix(r.stderr, "sandboxctl: bench: no successful run of cold (see the errors above)\n") {
		t.Errorf("stderr = %s", r.stderr)
	}
	if !strings.Contains(r.stdout, "SCENARIO") {
		t.Errorf("no table on stdout: %s", r.stdout)
	}
}

// TestBenchUsage guarantees that bench's flag mistakes and extra arguments
// are usage errors: one line, exit status 2.
func TestBenchUsage(t *testing.T) {
	sock := filepath.Join(socketDir(t), "none.sock") // never reached
	for _, args := range [][]string{
		{"bench", "--scenarios", "warm,hot"},
		{"bench", "-n", "0"},
		{"bench", "extra"},
	} {
		r := runOn(t, sock, "", args...)
		if r.code != exitUsage || !strings.HasPrefix(r.stderr, "sandboxctl: bench: ") ||
			!strings.HasSuffix(r.stderr, " (see 'sandboxctl bench --help')\n") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want one usage line and exit 2", args, r.code, r.stderr)
		}
	}
}

// TestBenchDefaults guarantees that the runsc and rootfs the Makefile links
// into sandboxctl (-X main.defaultRunsc, main.defaultRootfs) are the
// defaults of bench --runsc and --rootfs.
func TestBenchDefaults(t *testing.T) {
	runsc, rootfs := defaultRunsc, defaultRootfs
	defaultRunsc, defaultRootfs = "/cache/runsc", "/cache/rootfs"
	t.Cleanup(func() { defaultRunsc, defaultRootfs = runsc, rootfs })
	r := runCLI(t, "", "bench", "--help")
	wantExit(t, r, 0)
	for _, s := range []string{"(default /cache/runsc)", "(default /cache/rootfs)"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("help lacks %q:\n%s", s, r.stdout)
		}
	}
}

// TestBenchUnreachable guarantees that an absent daemon fails bench at once
// with the usual one-line hint, not with a table of failed runs.
func TestBenchUnreachable(t *testing.T) {
	sock := filepath.Join(socketDir(t), "none.sock")
	r := runOn(t, sock, "", "bench")
	wantExit(t, r, 1)
	if want := "sandboxctl: bench: cannot reach sandboxd at " + sock + ": is the daemon running? (sudo make run)\n"; r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
}

// TestBenchInterrupted guarantees that Ctrl-C during bench ends it with the
// line "interrupted", no report and exit status 130, its sandbox
// destroyed.
func TestBenchInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := &fakeServer{exec: func(*sandboxv1.ExecRequest, execStream) error {
		cancel()
		return ctx.Err()
	}}
	sock := startFake(t, f)
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"--socket", sock, "bench", "--scenarios", "cold"}, strings.NewReader(""), &stdout, &stderr)
	if code != exitInterrupted || !strings.HasSuffix(stderr.String(), "\nsandboxctl: bench: interrupted\n") || stdout.Len() > 0 {
		t.Errorf("exit status %d, stdout %q, stderr %q; want 130, the line interrupted last and no report", code, stdout.String(), stderr.String())
	}
	f.locked(func() {
		if len(f.sandboxes) != 0 {
			t.Errorf("sandboxes left after Ctrl-C: %v", f.sandboxes)
		}
	})
}
