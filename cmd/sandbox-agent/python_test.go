package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	agentv1 "github.com/sandboxd/sandboxd/proto/agent/v1"
	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

const (
	ok       = sandboxv1.ExecStatus_EXEC_STATUS_OK
	failed   = sandboxv1.ExecStatus_EXEC_STATUS_ERROR
	timedOut = sandboxv1.ExecStatus_EXEC_STATUS_TIMEOUT
	killed   = sandboxv1.ExecStatus_EXEC_STATUS_KILLED
)

// TestPythonPrintsSum guarantees the basic round trip: a print reaches
// stdout and a clean cell is OK with exit code 0.
func TestPythonPrintsSum(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	o := a.run(t, pyReq("print(sum(range(101)))"))
	wantResult(t, o, ok, 0, false)
	if o.stdout != "5050\n" || o.stderr != "" {
		t.Fatalf("stdout %q stderr %q", o.stdout, o.stderr)
	}
	if o.result.Duration.AsDuration() <= 0 {
		t.Fatal("no duration")
	}
}

// TestPythonFreeFds guarantees that the kernel keeps nothing open on the
// small fds a cell may use: only 0-2 are open below 1000.
func TestPythonFreeFds(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	o := a.run(t, pyReq(`import os
def is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
[fd for fd in range(1000) if is_open(fd)]`))
	if o.result.Value != "[0, 1, 2]" {
		t.Fatalf("open fds %s", o.result.Value)
	}
}

// TestPythonStatePersists guarantees that variables, functions and imports
// of one Exec are there in the next.
func TestPythonStatePersists(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	wantResult(t, a.run(t, pyReq("import math\nx = 41\ndef f():\n    return x + 1")), ok, 0, false)
	o := a.run(t, pyReq("print(f(), round(math.pi, 2))"))
	wantResult(t, o, ok, 0, false)
	if o.stdout != "42 3.14\n" {
		t.Fatalf("stdout %q", o.stdout)
	}
}

// TestPythonFinalExpressionValue guarantees notebook display: a final
// expression's repr is printed and returned as value, None shows nothing,
// and _ holds the last value.
func TestPythonFinalExpressionValue(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	o := a.run(t, pyReq("a = 6\na * 7"))
	wantResult(t, o, ok, 0, false)
	if o.result.Value != "42" || o.stdout != "42\n" {
		t.Fatalf("value %q stdout %q", o.result.Value, o.stdout)
	}
	o = a.run(t, pyReq("'x' + str(_ + 1)"))
	if o.result.Value != "'x43'" || o.stdout != "'x43'\n" {
		t.Fatalf("value %q stdout %q", o.result.Value, o.stdout)
	}
	o = a.run(t, pyReq("print('side effect')"))
	if o.result.Value != "" || o.stdout != "side effect\n" {
		t.Fatalf("None must not display: value %q stdout %q", o.result.Value, o.stdout)
	}
	o = a.run(t, pyReq("'y' * 100000"))
	if len(o.result.Value) != 64<<10 || len(o.stdout) != 100003 {
		t.Fatalf("long value: %d bytes returned, %d printed", len(o.result.Value), len(o.stdout))
	}
}

// TestPythonExceptionTraceback guarantees that an exception gives a clean
// traceback (the cell's frames and source lines, none of the kernel's),
// ERROR with exit code 1 and the class name, and that the interpreter lives.
func TestPythonExceptionTraceback(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	o := a.run(t, pyReq("def f():\n    raise ValueError('boom')\n\nf()"))
	wantResult(t, o, failed, 1, false)
	if o.result.ErrorName != "ValueError" {
		t.Fatalf("error_name %q", o.result.ErrorName)
	}
	for _, want := range []string{"Traceback (most recent call last):", `File "<cell 1>", line 4, in <module>`,
		`File "<cell 1>", line 2, in f`, "raise ValueError('boom')", "ValueError: boom"} {
		if !strings.Contains(o.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, o.stderr)
		}
	}
	if n := strings.Count(o.stderr, "File "); n != 2 {
		t.Errorf("want exactly the cell's 2 frames, got %d:\n%s", n, o.stderr)
	}
	o = a.run(t, pyReq("print('alive')"))
	wantResult(t, o, ok, 0, false)
	if o.stdout != "alive\n" {
		t.Fatalf("stdout %q", o.stdout)
	}
}

// TestPythonSyntaxError guarantees that a SyntaxError is reported like
// Python reports one for a script (no traceback frames), as an ERROR.
func TestPythonSyntaxError(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	o := a.run(t, pyReq("x = 1\ny = (\n"))
	wantResult(t, o, failed, 1, false)
	if o.result.ErrorName != "SyntaxError" || !strings.Contains(o.stderr, "SyntaxError") ||
		!strings.Contains(o.stderr, `File "<cell 1>", line 2`) || strings.Contains(o.stderr, "Traceback") {
		t.Fatalf("error_name %q stderr:\n%s", o.result.ErrorName, o.stderr)
	}
	wantResult(t, a.run(t, pyReq("print('x' in globals())")), ok, 0, false)
}

// TestPythonOutputOrder guarantees that print, sys.stdout, os.write(1) and
// a subprocess's output reach stdout in the order they happened, and stderr
// its own stream.
func TestPythonOutputOrder(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	o := a.run(t, pyReq(`import os, subprocess, sys
print("one")
os.write(1, b"two\n")
r = subprocess.run(["echo", "three"])
sys.stdout.write("four\n")
print("five", end="")
os.write(1, b"|six\n")
print("err", file=sys.stderr)
r = subprocess.run("echo err2 >&2", shell=True)`))
	wantResult(t, o, ok, 0, false)
	if o.stdout != "one\ntwo\nthree\nfour\nfive|six\n" || o.stderr != "err\nerr2\n" {
		t.Fatalf("stdout %q stderr %q", o.stdout, o.stderr)
	}
}

// TestPythonStdin guarantees that request stdin is the cell's stdin, for
// sys.stdin and subprocesses, and that a cell without stdin reads EOF.
func TestPythonStdin(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	req := pyReq("import sys\nprint(sys.stdin.read().upper(), end='')")
	req.Stdin = []byte("hello\nworld\n")
	o := a.run(t, req)
	wantResult(t, o, ok, 0, false)
	if o.stdout != "HELLO\nWORLD\n" {
		t.Fatalf("stdout %q", o.stdout)
	}
	req = pyReq("import subprocess\nr = subprocess.run(['cat'])")
	req.Stdin = []byte("to a child\n")
	if o := a.run(t, req); o.stdout != "to a child\n" {
		t.Fatalf("stdout %q", o.stdout)
	}
	o = a.run(t, pyReq("print(repr(sys.stdin.read()))"))
	if o.stdout != "''\n" {
		t.Fatalf("stdout %q", o.stdout)
	}
}

// TestPythonStreamsSurviveCells guarantees that the kernel's streams, made
// once, do not carry one cell's damage into the next: a cell that closes
// sys.stdout or sys.stderr, replaces them, or closes fd 0 leaves the next
// cell printing normally and reading an empty stdin, and a cell that did
// not read all of its stdin leaves nothing for the next.
func TestPythonStreamsSurviveCells(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	for _, code := range []string{
		"import sys\nsys.stdout.close()",
		"import sys\nsys.stderr.close()",
		"import io, sys\nsys.stdout = io.StringIO()\nsys.stderr = None",
		"import os\nos.close(0)",
	} {
		a.run(t, pyReq(code))
		o := a.run(t, pyReq("import sys\nprint('out')\nprint('err', file=sys.stderr)\nprint(repr(sys.stdin.read()))"))
		wantResult(t, o, ok, 0, false)
		if o.stdout != "out\n''\n" || o.stderr != "err\n" {
			t.Fatalf("after %q: stdout %q stderr %q", code, o.stdout, o.stderr)
		}
	}
	req := pyReq("import sys\nprint(sys.stdin.read(1))")
	req.Stdin = []byte("abc")
	if o := a.run(t, req); o.stdout != "a\n" {
		t.Fatalf("partial read: stdout %q", o.stdout)
	}
	if o := a.run(t, pyReq("print(repr(sys.stdin.read()))")); o.stdout != "''\n" {
		t.Fatalf("the unread stdin of the cell before reached the next: %q", o.stdout)
	}
}

// TestPythonEnv guarantees that request env is set for the cell (and its
// subprocesses) and that earlier values are restored afterwards.
func TestPythonEnv(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	req := pyReq("import os, subprocess\nr = subprocess.run('echo $FOO', shell=True)\nprint(os.environ['FOO'], os.environ['HOME'])")
	req.Env = map[string]string{"FOO": "bar", "HOME": "/elsewhere"}
	o := a.run(t, req)
	wantResult(t, o, ok, 0, false)
	if o.stdout != "bar\nbar /elsewhere\n" {
		t.Fatalf("stdout %q", o.stdout)
	}
	o = a.run(t, pyReq("print(os.environ.get('FOO'), os.environ['HOME'] != '/elsewhere')"))
	if o.stdout != "None True\n" {
		t.Fatalf("env not restored: stdout %q", o.stdout)
	}
}

// TestPythonWorkdir guarantees that a relative workdir is under the
// workspace for that Exec only, and that bad workdirs are refused.
func TestPythonWorkdir(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	wantResult(t, a.run(t, pyReq("import os\nos.mkdir('sub')")), ok, 0, false)
	req := pyReq("print(os.getcwd())")
	req.Workdir = "sub"
	if o := a.run(t, req); o.stdout != filepath.Join(a.workspace, "sub")+"\n" {
		t.Fatalf("stdout %q", o.stdout)
	}
	if o := a.run(t, pyReq("print(os.getcwd())")); o.stdout != a.workspace+"\n" {
		t.Fatalf("workdir not restored: %q", o.stdout)
	}
	for dir, code := range map[string]codes.Code{"../x": codes.InvalidArgument, "missing": codes.NotFound} {
		req := pyReq("1")
		req.Workdir = dir
		stream, err := a.Exec(context.Background(), req)
		if err == nil {
			_, err = stream.Recv()
		}
		wantCode(t, err, code)
	}
}

// TestPythonSystemExit guarantees that sys.exit ends only the cell: status
// by its code, interpreter and state kept.
func TestPythonSystemExit(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	wantResult(t, a.run(t, pyReq("import sys\nkeep = 1\nsys.exit(0)")), ok, 0, false)
	o := a.run(t, pyReq("sys.exit(4)"))
	wantResult(t, o, failed, 4, false)
	if o.result.ErrorName != "SystemExit" {
		t.Fatalf("error_name %q", o.result.ErrorName)
	}
	o = a.run(t, pyReq("sys.exit('bye')"))
	wantResult(t, o, failed, 1, false)
	if o.stderr != "bye\n" {
		t.Fatalf("stderr %q", o.stderr)
	}
	if o := a.run(t, pyReq("keep")); o.result.Value != "1" {
		t.Fatalf("state lost: %q", o.result.Value)
	}
}

// TestPythonBusyLoopTimeout guarantees that a timed-out cell is interrupted
// with KeyboardInterrupt in time and the interpreter keeps its state.
func TestPythonBusyLoopTimeout(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	wantResult(t, a.run(t, pyReq("x = 1")), ok, 0, false)
	o := a.run(t, withTimeout(pyReq("while True:\n    pass"), time.Second))
	wantResult(t, o, timedOut, -1, false)
	if o.elapsed > 2*time.Second || !strings.Contains(o.stderr, "KeyboardInterrupt") ||
		strings.Count(o.stderr, "File ") != 1 || strings.Contains(o.stderr, "kernel") {
		t.Fatalf("took %v, stderr %q", o.elapsed, o.stderr)
	}
	if o := a.run(t, pyReq("print(x)")); o.stdout != "1\n" {
		t.Fatalf("state lost: %q", o.stdout)
	}
}

// TestPythonForkLoopTimeoutKeepsState guarantees that a fork loop whose
// time goes into os.fork's at-fork hooks, which swallow the interrupts
// landing there, still ends with a timeout and keeps the interpreter: once
// interrupted, the cell's next fork raises KeyboardInterrupt.
func TestPythonForkLoopTimeoutKeepsState(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	wantResult(t, a.run(t, pyReq("x = 1")), ok, 0, false)
	o := a.run(t, withTimeout(pyReq(`import os, time
os.register_at_fork(before=lambda: time.sleep(0.2))
while True:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)`), time.Second))
	wantResult(t, o, timedOut, -1, false)
	if o := a.run(t, pyReq("print(x)")); o.stdout != "1\n" {
		t.Fatalf("state lost: %q", o.stdout)
	}
}

// TestPythonIgnoredInterrupt guarantees that a cell that ignores SIGINT is
// killed shortly after its timeout, reported as state_lost, and that the
// next Exec runs on a fresh interpreter.
func TestPythonIgnoredInterrupt(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	wantResult(t, a.run(t, pyReq("y = 2")), ok, 0, false)
	o := a.run(t, withTimeout(pyReq("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(30)"), time.Second))
	wantResult(t, o, timedOut, -1, true)
	if o.elapsed > time.Second+interruptGrace+time.Second {
		t.Fatalf("took %v", o.elapsed)
	}
	o = a.run(t, pyReq("print('y' in globals())"))
	wantResult(t, o, ok, 0, false)
	if o.stdout != "False\n" {
		t.Fatalf("stdout %q", o.stdout)
	}
}

// TestPythonOsExit guarantees that an interpreter that dies in a cell is
// reported (KILLED, its exit code, state_lost) and replaced on the next Exec.
func TestPythonOsExit(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	wantResult(t, a.run(t, pyReq("z = 1")), ok, 0, false)
	o := a.run(t, pyReq("import os\nprint('bye', flush=True)\nos._exit(3)"))
	wantResult(t, o, killed, 3, true)
	if o.stdout != "bye\n" {
		t.Fatalf("stdout %q", o.stdout)
	}
	if o := a.run(t, pyReq("'z' in globals()")); o.result.Value != "False" {
		t.Fatalf("value %q", o.result.Value)
	}
}

// TestPythonClosedSocket guarantees that a cell closing every fd (the
// kernel's socket too) cannot wedge the protocol: it is reported as a lost
// state and the next Exec works.
func TestPythonClosedSocket(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	o := a.run(t, pyReq("import os\nos.closerange(3, 65536)"))
	wantResult(t, o, killed, 70, true)
	if !strings.Contains(o.stderr, "control socket") {
		t.Fatalf("stderr %q", o.stderr)
	}
	wantResult(t, a.run(t, pyReq("1")), ok, 0, false)
}

// TestPythonFork guarantees that a child forked in a cell does not answer
// for the interpreter: the parent's result is the one reported.
func TestPythonFork(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	o := a.run(t, pyReq("import os\npid = os.fork()\nif pid == 0:\n    print('child')\nelse:\n    os.waitpid(pid, 0)\n    print('parent')"))
	wantResult(t, o, ok, 0, false)
	if o.stdout != "child\nparent\n" {
		t.Fatalf("stdout %q", o.stdout)
	}
	if o := a.run(t, pyReq("pid != 0")); o.result.Value != "True" {
		t.Fatalf("value %q", o.result.Value)
	}
}

// TestPythonQueue guarantees that Python Execs run one at a time in arrival
// order, and that time spent queued counts against a timeout.
func TestPythonQueue(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	wantResult(t, a.run(t, pyReq("import time\norder = []")), ok, 0, false)
	var wg sync.WaitGroup
	results := make([]outcome, 4)
	for i := range results {
		req := pyReq(fmt.Sprintf("order.append(%d)\ntime.sleep(0.3)", i))
		if i == 2 {
			req = withTimeout(pyReq("order.append(2)"), 200*time.Millisecond)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = a.run(t, req)
		}()
		time.Sleep(50 * time.Millisecond) // arrival order
	}
	wg.Wait()
	wantResult(t, results[2], timedOut, -1, false)
	if o := a.run(t, pyReq("order")); o.result.Value != "[0, 1, 3]" {
		t.Fatalf("order %s", o.result.Value)
	}
}

// TestPing guarantees that Ping answers with the agent's pid and can start
// the interpreter ahead of the first Exec.
func TestPing(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	resp, err := a.Ping(context.Background(), &agentv1.PingRequest{StartPython: true})
	if err != nil {
		t.Fatal(err)
	}
	if int(resp.Pid) == a.cmd.Process.Pid || !strings.Contains(readProc(t, int(resp.Pid), "cmdline"), "serve") {
		t.Fatalf("pid %d is not the server (the init is %d)", resp.Pid, a.cmd.Process.Pid)
	}
	if o := a.run(t, pyReq("1")); o.elapsed > time.Second {
		t.Fatalf("first Exec after Ping took %v", o.elapsed)
	}
}

// TestAgentStopsWorker guarantees that when the daemon's connection closes
// the agent (server and init) exits with 0 and takes the Python interpreter
// with it.
func TestAgentStopsWorker(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	o := a.run(t, pyReq("import os\nos.getpid()"))
	var pid int
	if _, err := fmt.Sscan(o.result.Value, &pid); err != nil {
		t.Fatal(err)
	}
	a.stop(t)
	if !processGone(pid, 5*time.Second) {
		t.Fatalf("interpreter %d outlived the agent", pid)
	}
}

// TestInitForwardsSIGTERM guarantees that SIGTERM to the init reaches the
// server, which stops the interpreter and exits, and that the init then
// exits with the server's status.
func TestInitForwardsSIGTERM(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	o := a.run(t, pyReq("import os\nos.getpid()"))
	var pid int
	if _, err := fmt.Sscan(o.result.Value, &pid); err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the agent ignored SIGTERM")
	}
	if !processGone(pid, 5*time.Second) || !processGone(a.pid, time.Second) {
		t.Fatal("the interpreter or the server outlived the init")
	}
}

// TestPythonDeathBetweenExecs guarantees that an interpreter killed while
// no Exec ran (from bash, by the OOM killer) is reported by the next Python
// Exec as a lost state, once.
func TestPythonDeathBetweenExecs(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	o := a.run(t, pyReq("import os\nkeep = 1\nos.getpid()"))
	wantResult(t, a.run(t, bashReq("kill -9 "+o.result.Value)), ok, 0, false)
	pid, err := strconv.Atoi(o.result.Value)
	if err != nil || !processGone(pid, 5*time.Second) {
		t.Fatalf("interpreter %q survived kill -9: %v", o.result.Value, err)
	}
	o = a.run(t, pyReq("print('keep' in globals())"))
	wantResult(t, o, ok, 0, true)
	if o.stdout != "False\n" || !strings.Contains(o.result.Message, "killed by signal 9") {
		t.Fatalf("stdout %q message %q", o.stdout, o.result.Message)
	}
	wantResult(t, a.run(t, pyReq("1")), ok, 0, false)
}

// TestAddressSpaceLimitTurnsMemoryBombIntoMemoryError guarantees that with
// Ping's python_address_space set, a cell allocating far more than the cap
// gets MemoryError, the interpreter and its variables survive, and the cap
// cannot be raised from a cell, also after a restart of the interpreter.
func TestAddressSpaceLimitTurnsMemoryBombIntoMemoryError(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	const limit = 512 << 20
	if _, err := a.Ping(context.Background(), &agentv1.PingRequest{StartPython: true, PythonAddressSpace: limit}); err != nil {
		t.Fatal(err)
	}
	wantResult(t, a.run(t, pyReq("kept = 42")), ok, 0, false)
	o := a.run(t, pyReq("chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))"))
	wantResult(t, o, failed, 1, false)
	if o.result.ErrorName != "MemoryError" {
		t.Fatalf("memory bomb raised %q, want MemoryError: %s", o.result.ErrorName, o.stderr)
	}
	o = a.run(t, pyReq(`del chunks
import resource
try:
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    raised = True
except ValueError:
    raised = False
(kept, raised, resource.getrlimit(resource.RLIMIT_AS))`))
	if want := fmt.Sprintf("(42, False, (%d, %d))", limit, limit); o.result.Value != want {
		t.Fatalf("after the bomb: %q (%s), want %s", o.result.Value, o.stderr, want)
	}
	a.run(t, pyReq("import os\nos._exit(3)"))
	o = a.run(t, pyReq("import resource\nresource.getrlimit(resource.RLIMIT_AS)[0]"))
	if o.result.Value != strconv.Itoa(limit) {
		t.Fatalf("restarted interpreter has RLIMIT_AS %s, want %d", o.result.Value, limit)
	}
}

// TestKernelEnvPicksAgg guarantees that the interpreter renders figures
// without a display (MPLBACKEND=Agg), unless the template's env chose a
// backend itself.
func TestKernelEnvPicksAgg(t *testing.T) {
	if got := kernelEnv([]string{"PATH=/bin"}); !slices.Equal(got, []string{"PATH=/bin", "MPLBACKEND=Agg"}) {
		t.Errorf("kernelEnv without a backend = %q", got)
	}
	if got := kernelEnv([]string{"MPLBACKEND=svg", "PATH=/bin"}); !slices.Equal(got, []string{"MPLBACKEND=svg", "PATH=/bin"}) {
		t.Errorf("kernelEnv with the template's backend = %q", got)
	}
}
