package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestBashForkBombEndsAtTimeout guarantees that the classic bash fork bomb
// is held by RLIMIT_NPROC until its Exec times out, that the timeout kills
// the whole bomb (no process of it is left), and that the sandbox and the
// daemon keep working.
func TestBashForkBombEndsAtTimeout(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, resourcesPolicy)})
	id := d.create(t)
	const timeout = 5 * time.Second
	start := time.Now()
	r, err := d.tryRun(ctx(t), id, &sandboxv1.ExecRequest{Language: sandboxv1.Language_LANGUAGE_BASH, Code: ":(){ :|:& };:", Timeout: durationpb.New(timeout)})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("bash fork bomb: %v", err)
	}
	t.Logf("bash fork bomb: %v after %v, %d bytes of stderr", r.result, took, len(r.stderr))
	if r.result.Status != sandboxv1.ExecStatus_EXEC_STATUS_TIMEOUT {
		t.Errorf("bash fork bomb ended %v, want TIMEOUT", r.result)
	}
	if took > timeout+3*time.Second {
		t.Errorf("bash fork bomb with a %v timeout took %v", timeout, took)
	}
	live, zombies := waitNoCodeProcs(t, d, id, 5*time.Second)
	if len(live) > 0 {
		t.Errorf("%d processes of the fork bomb survived its timeout: %v", len(live), live)
	}
	if len(zombies) > 0 {
		t.Logf("zombies: %v", zombies)
	}
	wantSandboxWorks(t, d, id, "the bash fork bomb")
	wantDaemonServes(t, d)
}

// TestHangingCodeAndBackgroundChildrenEndAtTimeout guarantees that code
// that never ends, alone or with a background child holding its stdout
// (bash `&`, a subshell's `&`, setsid, Python subprocess.Popen), ends with
// TIMEOUT within a second of its 2 s deadline as the client sees it, and
// that no process it started is left running in the sandbox afterwards.
func TestHangingCodeAndBackgroundChildrenEndAtTimeout(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, resourcesPolicy)})
	id := d.create(t)
	const timeout = 2 * time.Second
	for _, c := range []struct {
		name string
		lang sandboxv1.Language
		code string
	}{
		{"bash sleep", sandboxv1.Language_LANGUAGE_BASH, "sleep 1e9"},
		{"bash background", sandboxv1.Language_LANGUAGE_BASH, "sleep 1e9 & sleep 1e9"},
		{"bash subshell background", sandboxv1.Language_LANGUAGE_BASH, "(sleep 1e9 &); sleep 1e9"},
		{"bash setsid background", sandboxv1.Language_LANGUAGE_BASH, "setsid sleep 1e9 & sleep 1e9"},
		{"python sleep", sandboxv1.Language_LANGUAGE_PYTHON, "import time\ntime.sleep(1e9)"},
		{"python Popen", sandboxv1.Language_LANGUAGE_PYTHON, "import subprocess, time\nsubprocess.Popen(['sleep', '1e9'])\ntime.sleep(1e9)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Cleanup(func() { d.run(t, id, sandboxv1.Language_LANGUAGE_BASH, "pkill -KILL -x sleep; true", 30*time.Second) })
			start := time.Now()
			r, err := d.tryRun(ctx(t), id, &sandboxv1.ExecRequest{Language: c.lang, Code: c.code, Timeout: durationpb.New(timeout)})
			took := time.Since(start)
			if err != nil {
				t.Fatalf("Exec: %v", err)
			}
			t.Logf("%v after %v", r.result.Status, took)
			if r.result.Status != sandboxv1.ExecStatus_EXEC_STATUS_TIMEOUT {
				t.Errorf("ended %v, want TIMEOUT", r.result)
			}
			if took > timeout+time.Second {
				t.Errorf("a %v timeout took %v as the client saw it", timeout, took)
			}
			live, zombies := waitNoCodeProcs(t, d, id, time.Second)
			if len(live) > 0 {
				t.Errorf("processes survived the timeout: %v", live)
			}
			if len(zombies) > 0 {
				t.Logf("unreaped zombies: %v", zombies)
			}
		})
	}
	wantSandboxWorks(t, d, id, "the timeouts")
	wantDaemonServes(t, d)
}

// fileSize returns the size of path in the sandbox, from a bash Exec (which
// runs beside a Python Exec, not after it).
func fileSize(t *testing.T, d *daemon, id, path string) int64 {
	t.Helper()
	r := d.run(t, id, sandboxv1.Language_LANGUAGE_BASH, "stat -c %s "+path, 30*time.Second)
	n, err := strconv.ParseInt(strings.TrimSpace(r.stdout), 10, 64)
	if err != nil {
		t.Fatalf("size of %s: %q %q %v", path, r.stdout, r.stderr, r.result)
	}
	return n
}

// TestClientCancelStopsCode guarantees that when a client cancels an Exec
// of an endless loop (bash and Python, each appending to a file), the code
// stops: a second later the file no longer grows and no process of it is
// left, and the sandbox keeps working.
func TestClientCancelStopsCode(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, resourcesPolicy)})
	id := d.create(t)
	for _, c := range []struct {
		name string
		lang sandboxv1.Language
		code string
	}{
		{"bash", sandboxv1.Language_LANGUAGE_BASH, "while :; do echo x >> /workspace/grow; done"},
		{"python", sandboxv1.Language_LANGUAGE_PYTHON, "f = open('/workspace/grow', 'a')\nwhile True:\n    f.write('x\\n')\n    f.flush()"},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantOK(t, sh(t, d, id, "rm -f /workspace/grow"))
			cctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := d.tryRun(cctx, id, &sandboxv1.ExecRequest{Language: c.lang, Code: c.code, Timeout: durationpb.New(time.Minute)})
				done <- err
			}()
			// Cancel once the loop runs, about a second in.
			deadline := time.Now().Add(20 * time.Second)
			for {
				time.Sleep(time.Second)
				r := d.run(t, id, sandboxv1.Language_LANGUAGE_BASH, "stat -c %s /workspace/grow", 30*time.Second)
				if n, _ := strconv.Atoi(strings.TrimSpace(r.stdout)); n > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the loop never wrote the file")
				}
			}
			cancel()
			select {
			case err := <-done:
				if status.Code(err) != codes.Canceled {
					t.Errorf("cancelled Exec returned %v, want Canceled", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the cancelled Exec's stream did not end")
			}
			time.Sleep(time.Second)
			n1 := fileSize(t, d, id, "/workspace/grow")
			time.Sleep(time.Second)
			n2 := fileSize(t, d, id, "/workspace/grow")
			t.Logf("file size %d one second after the cancel, %d a second later", n1, n2)
			if n2 != n1 {
				t.Errorf("the file grew from %d to %d bytes after the cancel: the code still runs", n1, n2)
			}
			if live, _ := codeProcs(t, d, id); len(live) > 0 {
				t.Errorf("processes survived the cancel: %v", live)
			}
		})
	}
	wantSandboxWorks(t, d, id, "the cancelled Execs")
	wantDaemonServes(t, d)
}
