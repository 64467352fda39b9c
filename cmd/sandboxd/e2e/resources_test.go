package e2e

// Resource-exhaustion attacks on threads and processes, and the helpers of
// the other resource tests (timeouts_test.go: hanging code, background
// children, cancelled clients; daemon_memory_test.go: endless or unread
// output; transfers_test.go: oversized uploads and downloads). Each test
// runs the attack in a real sandbox through the daemon, then checks that the
// same daemon still serves a normal Exec.

import (
	"bytes"
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

// spareBootstrap is the command line of the agent's spare bash
// (cmd/sandbox-agent/bashspare.go).
const spareBootstrap = "read -r -n 1 -u 4 _ || exit 0; . /dev/fd/3"

// codeProcs lists what sandboxed code left running: every process but the
// agent (init and server), its Python kernel, its spare bash and the shell
// that lists them.
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
	spare := false
	for _, p := range all {
		switch {
		case p.pid == self || p.ppid == self: // the listing shell and ps
		case p.comm == "python3" && agents[p.ppid] && p.ppid != 1: // the kernel, a child of the agent server
		case !spare && p.comm == "bash" && agents[p.ppid] && p.ppid != 1 && strings.Contains(p.args, spareBootstrap):
			// The agent's spare bash, waiting for the next bash Exec: one at
			// most; a second would be a bash Exec that survived.
			spare = true
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
