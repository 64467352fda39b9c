package e2e

// Resource-exhaustion attacks: threads, processes, hanging code and its
// background children, cancelled clients, endless or unread output, and
// oversized uploads. Each test runs the attack in a real sandbox through the
// daemon, then checks that the same daemon still serves a normal Exec.

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// resourcesPolicy is the policy of most tests here: templates without warm
// imports or pools, so that sandboxes boot in about a second.
const resourcesPolicy = "resources.yaml"

// createTemplate makes a sandbox of template and destroys it at cleanup.
func (d *daemon) createTemplate(t testing.TB, template string) string {
	t.Helper()
	sb, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{Template: template})
	if err != nil {
		t.Fatalf("CreateSandbox %q: %v", template, err)
	}
	return sb.SandboxId
}

// wantDaemonServes fails the test unless the daemon still creates a sandbox
// and runs a normal Exec in it correctly.
func wantDaemonServes(t *testing.T, d *daemon) {
	t.Helper()
	sb, err := d.createFrom(t, &sandboxv1.CreateSandboxRequest{})
	if err != nil {
		t.Fatalf("the daemon creates no sandbox after the attack: %v", err)
	}
	r, err := d.tryRun(ctx(t), sb.SandboxId, &sandboxv1.ExecRequest{Language: sandboxv1.Language_LANGUAGE_PYTHON, Code: "print(6 * 7)"})
	if err != nil || r.result.GetStatus() != sandboxv1.ExecStatus_EXEC_STATUS_OK || r.stdout != "42\n" {
		t.Fatalf("the daemon does not serve a normal Exec after the attack: %v %v stdout %q stderr %q", r.result, err, r.stdout, r.stderr)
	}
}

// wantSandboxWorks checks with Errorf that a Python and a bash Exec in the
// sandbox both work, and returns whether they did.
func wantSandboxWorks(t *testing.T, d *daemon, id, after string) bool {
	t.Helper()
	ok := true
	for _, c := range []struct {
		lang       sandboxv1.Language
		code, want string
	}{
		{sandboxv1.Language_LANGUAGE_PYTHON, "print('py', 6 * 7)", "py 42\n"},
		{sandboxv1.Language_LANGUAGE_BASH, "echo bash $((6 * 7))", "bash 42\n"},
	} {
		r, err := d.tryRun(ctx(t), id, &sandboxv1.ExecRequest{Language: c.lang, Code: c.code, Timeout: durationpb.New(30 * time.Second)})
		if err != nil || r.result.GetStatus() != sandboxv1.ExecStatus_EXEC_STATUS_OK || r.stdout != c.want {
			t.Errorf("%v Exec in the same sandbox after %s: %v (%v), stdout %q, stderr %q", c.lang, after, r.result, err, r.stdout, r.stderr)
			ok = false
		}
	}
	return ok
}

// proc is one process in a sandbox, as ps lists it.
type proc struct {
	pid, ppid  int
	stat, comm string
	args       string
}

func (p proc) String() string { return fmt.Sprintf("%d(ppid %d %s %s)", p.pid, p.ppid, p.stat, p.args) }

// codeProcs lists what sandboxed code left running: every process but the
// agent (init and server), its Python kernel and the shell that lists them.
// Zombies are returned apart: they run nothing but hold a process slot
// until their parent reaps them.
func codeProcs(t *testing.T, d *daemon, id string) (live, zombies []proc) {
	t.Helper()
	r := d.run(t, id, sandboxv1.Language_LANGUAGE_BASH, "echo $$; ps -eo pid=,ppid=,stat=,comm=,args=", 30*time.Second)
	if r.result.GetStatus() != sandboxv1.ExecStatus_EXEC_STATUS_OK {
		t.Fatalf("listing the sandbox's processes: %v %q", r.result, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	self, _ := strconv.Atoi(strings.TrimSpace(lines[0]))
	var all []proc
	agents := map[int]bool{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		var p proc
		p.pid, _ = strconv.Atoi(f[0])
		p.ppid, _ = strconv.Atoi(f[1])
		p.stat, p.comm, p.args = f[2], f[3], strings.Join(f[4:], " ")
		if strings.HasPrefix(p.args, "/.sandboxd/agent") {
			agents[p.pid] = true
			continue
		}
		all = append(all, p)
	}
	for _, p := range all {
		switch {
		case p.pid == self || p.ppid == self: // the listing shell and ps
		case p.comm == "python3" && agents[p.ppid] && p.ppid != 1: // the kernel, a child of the agent server
		case strings.HasPrefix(p.stat, "Z"):
			zombies = append(zombies, p)
		default:
			live = append(live, p)
		}
	}
	return live, zombies
}

// waitNoCodeProcs polls codeProcs until no live process is left, for up to
// wait, and returns what is left then.
func waitNoCodeProcs(t *testing.T, d *daemon, id string, wait time.Duration) (live, zombies []proc) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		live, zombies = codeProcs(t, d, id)
		if len(live) == 0 || time.Now().After(deadline) {
			return live, zombies
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestThreadBombHitsProcessLimit guarantees that code starting threads
// without end gets an error inside the sandbox from RLIMIT_NPROC
// (limits.processes, 256, which counts threads): EAGAIN from pthread_create
// in C, RuntimeError "can't start new thread" in Python. It also guarantees
// that the sandbox survives while the Python kernel keeps every thread it
// started: the agent, which runs as the same user and so shares that limit,
// still runs Python and bash Execs and a burst of concurrent file transfers
// in the same sandbox, and the daemon serves a normal Exec.
func TestThreadBombHitsProcessLimit(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, resourcesPolicy)})
	id := d.create(t)
	blob := make([]byte, 8<<20)
	rand.Read(blob)
	if _, err := d.upload(t, id, "blob.bin", blob); err != nil {
		t.Fatal(err)
	}

	// C: threads that sleep forever, until pthread_create fails; they end
	// with the process.
	start := time.Now()
	r := d.run(t, id, sandboxv1.Language_LANGUAGE_BASH, `cat > bomb.c <<'EOF'
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static void *sleeper(void *arg) { for (;;) pause(); return arg; }
int main(void) {
	int n = 0, err;
	pthread_t th;
	while ((err = pthread_create(&th, NULL, sleeper, NULL)) == 0 && n < 100000)
		n++;
	printf("stopped %s %d\n", err == EAGAIN ? "EAGAIN" : strerror(err), n);
	return 0;
}
EOF
gcc -O1 -pthread -o bomb bomb.c && ./bomb`, 2*time.Minute)
	t.Logf("C thread bomb (%v): %q %v", time.Since(start), r.stdout, r.result)
	wantOK(t, r)
	var threads int
	if _, err := fmt.Sscanf(r.stdout, "stopped EAGAIN %d", &threads); err != nil {
		t.Fatalf("C thread bomb: stdout %q, stderr %q, want EAGAIN", r.stdout, r.stderr)
	}
	// RLIMIT_NPROC counts the threads of every process of the user: the
	// agent's take a few of the 256.
	if threads < 128 || threads >= 256 {
		t.Errorf("C thread bomb stopped after %d threads, want RLIMIT_NPROC (256, less the agent's threads)", threads)
	}

	// Python: daemon threads that sleep for an hour, kept by the kernel
	// after the cell fails.
	start = time.Now()
	r = d.run(t, id, sandboxv1.Language_LANGUAGE_PYTHON, `
import threading, time
started = 0
while True:
    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
    started += 1
`, time.Minute)
	t.Logf("Python thread bomb (%v): %v", time.Since(start), r.result)
	if r.result.Status != sandboxv1.ExecStatus_EXEC_STATUS_ERROR || r.result.ErrorName != "RuntimeError" || !strings.Contains(r.stderr, "can't start new thread") {
		t.Fatalf("Python thread bomb: %v, stderr %q; want RuntimeError: can't start new thread", r.result, r.stderr)
	}
	r = py(t, d, id, "print(started, threading.active_count())")
	wantOK(t, r)
	t.Logf("Python threads started before the error, and alive: %s", strings.TrimSpace(r.stdout))

	// The agent must still work with every process slot taken by the code.
	wantSandboxWorks(t, d, id, "the Python thread bomb")
	var wg sync.WaitGroup
	var failed atomic.Int32
	const transfers = 12
	for i := range transfers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			got, _, err := d.download(t, id, "blob.bin")
			if err != nil || !bytes.Equal(got, blob) {
				failed.Add(1)
				t.Errorf("download %d with the threads still there: %d bytes, %v", i, len(got), err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := d.upload(t, id, fmt.Sprintf("up%d.bin", i), blob); err != nil {
				failed.Add(1)
				t.Errorf("upload %d with the threads still there: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		sb, err := d.client.GetSandbox(ctx(t), &sandboxv1.GetSandboxRequest{SandboxId: id})
		t.Errorf("%d of %d concurrent transfers failed; the sandbox is now %v (%q) %v", failed.Load(), 2*transfers, sb.GetState(), sb.GetStateReason(), err)
		if strings.Contains(d.log.String(), "failed to create new OS thread") {
			t.Errorf("the agent died: its Go runtime could not create an OS thread (RLIMIT_NPROC is shared with the sandboxed code)")
		}
	}
	wantSandboxWorks(t, d, id, "the thread bomb and the transfers")
	wantDaemonServes(t, d)
}

// cgroupMemory returns the host memory cgroup usage of sandbox id in bytes
// (cgroup v1 or v2), or -1 if it cannot be found. It is only used to
// explain a failure.
func cgroupMemory(id string) int64 {
	for _, pattern := range []string{"/sys/fs/cgroup/memory/*/" + id + "/memory.usage_in_bytes", "/sys/fs/cgroup/*/" + id + "/memory.current"} {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
				return n
			}
		}
	}
	return -1
}

// TestPythonForkBombIsStoppedAndSandboxSurvives guarantees that a fork bomb
// run from the Python kernel of the default template (numpy, pandas and
// matplotlib preloaded) is stopped inside the sandbox, never by the host
// killing it: gVisor copies 2 MiB per touched copy-on-write page, so each
// forked interpreter costs ~36 MiB and memory runs out before RLIMIT_NPROC
// (limits.processes); the agent's memory guard then interrupts the cell and
// kills its forks (OOM_KILLED on the Exec, sandbox RUNNING, variables
// kept). EAGAIN from RLIMIT_NPROC is accepted too. Afterwards no fork is
// left and the sandbox and the daemon keep working.
func TestPythonForkBombIsStoppedAndSandboxSurvives(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)
	wantOK(t, py(t, d, id, "kept = 42"))
	r := py(t, d, id, "import sys\nprint(all(m in sys.modules for m in ('numpy', 'pandas', 'matplotlib.pyplot')))")
	if r.stdout != "True\n" {
		t.Fatalf("the default template's kernel has not preloaded numpy, pandas and matplotlib: %q %q", r.stdout, r.stderr)
	}
	before := cgroupMemory(id)
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if m := cgroupMemory(id); m > peak.Load() {
				peak.Store(m)
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	// Each fork prints its count, so the count reaches the client even if
	// the sandbox is killed.
	r = d.run(t, id, sandboxv1.Language_LANGUAGE_PYTHON, `
import os, time, errno, signal
kids = []
try:
    while len(kids) < 5000:
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        kids.append(pid)
        print("forked", len(kids), flush=True)
    print("no limit")
except OSError as e:
    print("stopped", errno.errorcode[e.errno], len(kids), flush=True)
for pid in kids:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
print("reaped", len(kids))
`, 2*time.Minute)
	took := time.Since(start)
	close(stop)
	<-sampled
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	forks := 0
	for _, l := range lines {
		if n, err := strconv.Atoi(strings.TrimPrefix(l, "forked ")); err == nil {
			forks = n
		}
	}
	perFork := "?"
	if before > 0 && forks > 0 {
		perFork = fmt.Sprintf("%.1f MiB", float64(peak.Load()-before)/float64(forks)/(1<<20))
	}
	t.Logf("Python fork bomb: %d forks in %v (%v per fork), ended %v %q; sandbox memory %d MiB before, peak %d MiB: %s per forked child",
		forks, took, took/time.Duration(max(forks, 1)), r.result.GetStatus(), r.result.GetMessage(), before>>20, peak.Load()>>20, perFork)
	last := lines[len(lines)-1]
	switch st := r.result.GetStatus(); {
	case st == sandboxv1.ExecStatus_EXEC_STATUS_OK && strings.HasPrefix(last, "reaped ") && strings.Contains(r.stdout, "stopped EAGAIN "):
	case st == sandboxv1.ExecStatus_EXEC_STATUS_OOM_KILLED && !r.result.StateLost:
	default:
		t.Fatalf("the fork bomb was not stopped inside the sandbox: after %d forks it ended %v, last line %q, stderr %q",
			forks, r.result, last, r.stderr)
	}
	got, err := d.client.GetSandbox(ctx(t), &sandboxv1.GetSandboxRequest{SandboxId: id})
	if err != nil || got.State != sandboxv1.SandboxState_SANDBOX_STATE_RUNNING {
		t.Fatalf("sandbox after the fork bomb: %v %v", got, err)
	}
	if r := py(t, d, id, "kept"); r.result.Value != "42" {
		t.Fatalf("the interpreter's variables are gone after the fork bomb: %v", r.result)
	}
	// Forks killed by the guard stay zombies until the interpreter reaps
	// them; none may still run.
	r = sh(t, d, id, "ps -eo stat=,args= | grep -v '^Z' | grep -c '[s]andboxd-kernel'")
	if strings.TrimSpace(r.stdout) != "1" {
		t.Fatalf("forks of the interpreter still run after the fork bomb: %q", r.stdout)
	}
	wantSandboxWorks(t, d, id, "the Python fork bomb")
	wantDaemonServes(t, d)
}

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

// vmRSS returns the resident memory of process pid in bytes.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// TestEndlessOutputKeepsDaemonMemoryBounded guarantees that `yes` forever,
// read by the client to the end of the template's 128Mi output cap, grows
// the daemon's resident memory by far less than the output (under 64 MiB),
// and that the sandbox keeps working.
func TestEndlessOutputKeepsDaemonMemoryBounded(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, resourcesPolicy)})
	id := d.createTemplate(t, "bigout")
	// Warm up the daemon's Exec path (gRPC buffers, the race detector's
	// shadow memory) with a few MiB, so that only growth is measured.
	wantOK(t, sh(t, d, id, "head -c 4M /dev/zero"))
	pid := d.cmd.Process.Pid
	before := vmRSS(t, pid)
	stream, err := d.client.Exec(ctx(t), &sandboxv1.ExecRequest{SandboxId: id, Language: sandboxv1.Language_LANGUAGE_BASH, Code: "yes", Timeout: durationpb.New(2 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var got, next int64
	peak := before
	var res *sandboxv1.ExecResult
	for res == nil {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
		got += int64(len(ev.GetStdout()) + len(ev.GetStderr()))
		if got >= next {
			next += 8 << 20
			peak = max(peak, vmRSS(t, pid))
		}
		res = ev.GetResult()
	}
	const limit = 128 << 20 // templates.bigout.limits.output
	const maxGrowth = 64 << 20
	t.Logf("yes: %v, %d MiB in %v; daemon RSS %d MiB before, peak %d MiB (+%d MiB)",
		res.Status, got>>20, time.Since(start), before>>20, peak>>20, (peak-before)>>20)
	if res.Status != sandboxv1.ExecStatus_EXEC_STATUS_OUTPUT_TRUNCATED || got != limit {
		t.Errorf("yes ended %v after %d bytes, want OUTPUT_TRUNCATED after %d", res, got, limit)
	}
	if peak-before > maxGrowth {
		t.Errorf("the daemon's RSS grew by %d MiB while streaming %d MiB, want under %d MiB", (peak-before)>>20, got>>20, maxGrowth>>20)
	}
	wantSandboxWorks(t, d, id, "the endless output")
	wantDaemonServes(t, d)
}

// TestStalledClientKeepsDaemonMemoryFlat guarantees that a client that
// opens the Exec stream of code printing 1 MiB lines without end and then
// stops reading makes the daemon buffer almost nothing (its resident memory
// grows by under 32 MiB over 8 s): back-pressure reaches the code through
// the agent. After the client cancels, the sandbox keeps working.
func TestStalledClientKeepsDaemonMemoryFlat(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, resourcesPolicy)})
	id := d.createTemplate(t, "bigout")
	wantOK(t, sh(t, d, id, "head -c 4M /dev/zero"))
	pid := d.cmd.Process.Pid
	before := vmRSS(t, pid)
	cctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := d.client.Exec(cctx, &sandboxv1.ExecRequest{SandboxId: id, Language: sandboxv1.Language_LANGUAGE_PYTHON, Timeout: durationpb.New(time.Minute),
		Code: "line = 'x' * (1 << 20)\nwhile True:\n    print(line)"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	const maxGrowth = 32 << 20
	peak := before
	var samples []string
	for range 8 {
		time.Sleep(time.Second)
		rss := vmRSS(t, pid)
		peak = max(peak, rss)
		samples = append(samples, strconv.FormatInt(rss>>20, 10))
	}
	t.Logf("daemon RSS %d MiB before, then each second without reading: %s MiB", before>>20, strings.Join(samples, " "))
	if peak-before > maxGrowth {
		t.Errorf("the daemon's RSS grew by %d MiB while the client did not read, want under %d MiB", (peak-before)>>20, maxGrowth>>20)
	}
	cancel()
	wantSandboxWorks(t, d, id, "the stalled client")
	wantDaemonServes(t, d)
}

// uploadErr uploads data and returns only the error.
func uploadErr(t *testing.T, d *daemon, id, path string, data []byte) error {
	t.Helper()
	_, err := d.upload(t, id, path, data)
	return err
}

// TestOversizedUploadsAreResourceExhausted guarantees the upload caps of a
// template (upload_file 1Mi, upload_total 3Mi here): a file over
// upload_file fails with ResourceExhausted naming the policy key and leaves
// the file it would have replaced unchanged; uploads adding up past
// upload_total fail the same way, also when sent all at once; a gRPC
// message over the daemon's 8 MiB maximum fails with ResourceExhausted.
// The daemon keeps serving.
func TestOversizedUploadsAreResourceExhausted(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, resourcesPolicy)})
	id := d.createTemplate(t, "uploads")
	const mib = 1 << 20
	data := make([]byte, 4*mib)
	rand.Read(data)

	original := []byte("original contents\n")
	if err := uploadErr(t, d, id, "keep.txt", original); err != nil {
		t.Fatal(err)
	}
	err := uploadErr(t, d, id, "keep.txt", data[:mib+1])
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "limits.upload_file") {
		t.Errorf("upload of 1 MiB + 1 byte: %v, want ResourceExhausted naming limits.upload_file", err)
	}
	if got, _, err := d.download(t, id, "keep.txt"); err != nil || !bytes.Equal(got, original) {
		t.Errorf("after the rejected upload keep.txt holds %q (%v), want %q", got, err, original)
	}
	// Exactly upload_file is allowed; two of them and keep.txt make
	// 2 MiB + 18 bytes of the 3 MiB.
	for _, name := range []string{"a.bin", "b.bin"} {
		if err := uploadErr(t, d, id, name, data[:mib]); err != nil {
			t.Fatalf("upload of exactly upload_file: %v", err)
		}
	}
	err = uploadErr(t, d, id, "c.bin", data[:mib])
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "limits.upload_total") {
		t.Errorf("upload past 3 MiB in total: %v, want ResourceExhausted naming limits.upload_total", err)
	}
	r := sh(t, d, id, "ls -A /workspace")
	if got := strings.Fields(r.stdout); strings.Join(got, " ") != "a.bin b.bin keep.txt" {
		t.Errorf("workspace after the rejected uploads: %q, want a.bin b.bin keep.txt", r.stdout)
	}

	// Uploads sent at the same time must not each see the whole budget.
	fresh := d.createTemplate(t, "uploads")
	var wg sync.WaitGroup
	var okCount atomic.Int32
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := uploadErr(t, d, fresh, fmt.Sprintf("p%d.bin", i), data[:mib])
			switch {
			case err == nil:
				okCount.Add(1)
			case status.Code(err) != codes.ResourceExhausted:
				t.Errorf("concurrent upload %d: %v, want success or ResourceExhausted", i, err)
			}
		}()
	}
	wg.Wait()
	r = sh(t, d, fresh, "cat /workspace/*.bin | wc -c")
	t.Logf("6 concurrent 1 MiB uploads under a 3 MiB upload_total: %d succeeded, %s bytes in the workspace", okCount.Load(), strings.TrimSpace(r.stdout))
	if okCount.Load() > 3 {
		t.Errorf("%d concurrent 1 MiB uploads succeeded under upload_total 3 MiB, want at most 3", okCount.Load())
	}

	// One message over the daemon's maximum (maxMessage, 8 MiB), into a
	// template whose caps would allow the file.
	big := d.create(t)
	stream, err := d.client.Upload(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Header{Header: &sandboxv1.FileHeader{SandboxId: big, Path: "huge.bin"}}})
	stream.Send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Chunk{Chunk: make([]byte, 9*mib)}})
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a 9 MiB upload chunk: %v, want ResourceExhausted", err)
	}
	_, err = d.tryRun(ctx(t), big, &sandboxv1.ExecRequest{Language: sandboxv1.Language_LANGUAGE_BASH, Code: strings.Repeat("#", 9*mib)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a 9 MiB Exec request: %v, want ResourceExhausted", err)
	}
	if _, _, err := d.download(t, big, "huge.bin"); status.Code(err) != codes.NotFound {
		t.Errorf("the rejected huge.bin: %v, want NotFound", err)
	}
	wantSandboxWorks(t, d, big, "the oversized messages")
	wantSandboxWorks(t, d, id, "the oversized uploads")
	wantDaemonServes(t, d)
}

// TestOversizedDownloadsAreResourceExhausted guarantees the download caps
// of a template (download_file 1Mi, download_total 3Mi here): a file over
// download_file fails with ResourceExhausted naming the policy key before
// any of it is sent; downloads adding up past download_total fail the same
// way. The sandbox and the daemon keep serving.
func TestOversizedDownloadsAreResourceExhausted(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, resourcesPolicy)})
	id := d.createTemplate(t, "downloads")
	wantOK(t, sh(t, d, id, "head -c 1048577 /dev/urandom > big.bin && head -c 1048576 /dev/urandom > ok.bin"))
	got, _, err := d.download(t, id, "big.bin")
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "limits.download_file") || len(got) != 0 {
		t.Errorf("download of 1 MiB + 1 byte: %d bytes, %v; want nothing and ResourceExhausted naming limits.download_file", len(got), err)
	}
	for i := range 3 {
		got, _, err := d.download(t, id, "ok.bin")
		if err != nil {
			t.Fatalf("download %d of 1 MiB under a 3 MiB download_total: %v", i+1, err)
		}
		if len(got) != 1<<20 {
			t.Fatalf("download %d: %d bytes", i+1, len(got))
		}
	}
	_, _, err = d.download(t, id, "ok.bin")
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "limits.download_total") {
		t.Errorf("a fourth 1 MiB download under a 3 MiB download_total: %v, want ResourceExhausted naming limits.download_total", err)
	}
	wantSandboxWorks(t, d, id, "the oversized downloads")
	wantDaemonServes(t, d)
}
