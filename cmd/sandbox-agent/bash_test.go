package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// TestBashExitCode guarantees that bash's exit code and both streams come
// back, that a non-zero exit is an ERROR, that the script's line numbers
// are its own and that the script pipe does not leak into it.
func TestBashExitCode(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	o := a.run(t, bashReq("echo out\necho err >&2\nnosuchcommand\nexit 3"))
	wantResult(t, o, failed, 3, false)
	if o.stdout != "out\n" || !strings.HasPrefix(o.stderr, "err\n") || !strings.Contains(o.stderr, "line 3: nosuchcommand: command not found") {
		t.Fatalf("stdout %q stderr %q", o.stdout, o.stderr)
	}
	o = a.run(t, bashReq("if [ -e /proc/$$/fd/3 ]; then echo leaked; else echo clean; fi; pwd"))
	wantResult(t, o, ok, 0, false)
	if o.stdout != "clean\n"+a.workspace+"\n" {
		t.Fatalf("stdout %q", o.stdout)
	}
}

// TestBashStdin guarantees that request stdin is bash's stdin and that
// without it bash reads EOF at once (/dev/null) instead of hanging.
func TestBashStdin(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	req := bashReq("tr a-z A-Z")
	req.Stdin = []byte("abc\n")
	if o := a.run(t, req); o.stdout != "ABC\n" {
		t.Fatalf("stdout %q", o.stdout)
	}
	o := a.run(t, withTimeout(bashReq("cat; echo done"), 5*time.Second))
	wantResult(t, o, ok, 0, false)
	if o.stdout != "done\n" {
		t.Fatalf("stdout %q", o.stdout)
	}
}

// TestBashEnvAndWorkdir guarantees that request env reaches the script and
// a relative workdir is under the workspace.
func TestBashEnvAndWorkdir(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	wantResult(t, a.run(t, bashReq("mkdir -p sub/dir")), ok, 0, false)
	req := bashReq("echo \"$GREETING\" \"$(pwd)\"")
	req.Env = map[string]string{"GREETING": "hi there"}
	req.Workdir = "sub/dir"
	if o := a.run(t, req); o.stdout != "hi there "+a.workspace+"/sub/dir\n" {
		t.Fatalf("stdout %q", o.stdout)
	}
}

// TestBashLongScript guarantees that scripts beyond the 128 KiB argv limit
// run (the script travels on a pipe).
func TestBashLongScript(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	code := strings.Repeat(": "+strings.Repeat("x", 98)+"\n", 5000) + "echo end"
	o := a.run(t, bashReq(code))
	wantResult(t, o, ok, 0, false)
	if o.stdout != "end\n" {
		t.Fatalf("stdout %q", o.stdout)
	}
}

// TestBashBackgroundChildTimeout guarantees that a background child holding
// stdout keeps the Exec open until the timeout, which then kills it and
// answers TIMEOUT within a second.
func TestBashBackgroundChildTimeout(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	o := a.run(t, withTimeout(bashReq("sleep 30 &\necho started"), time.Second))
	wantResult(t, o, timedOut, -1, false)
	if o.stdout != "started\n" || o.elapsed < time.Second || o.elapsed > 2*time.Second {
		t.Fatalf("stdout %q after %v", o.stdout, o.elapsed)
	}
}

// TestBashCancelKills guarantees that a client cancelling an Exec kills
// bash's whole process group.
func TestBashCancelKills(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := a.Exec(ctx, bashReq("sleep 30 &\necho $!\nwait"))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(ev.GetStdout())))
	if err != nil {
		t.Fatalf("first event %v: %v", ev, err)
	}
	cancel()
	if _, err := stream.Recv(); err == nil || err == io.EOF {
		t.Fatalf("stream after cancel: %v", err)
	}
	if !processGone(pid, 5*time.Second) {
		t.Fatalf("background child %d survived the cancellation", pid)
	}
}

// TestBashLargeOutput guarantees that 50 MB of output arrives complete and
// in order through the back-pressured stream.
func TestBashLargeOutput(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	const size = 50_000_000
	o := a.run(t, bashReq("yes | head -c "+strconv.Itoa(size)))
	wantResult(t, o, ok, 0, false)
	if len(o.stdout) != size || strings.Count(o.stdout, "y\n") != size/2 {
		t.Fatalf("got %d bytes", len(o.stdout))
	}
}

// TestExecValidation guarantees that malformed Execs are refused with
// InvalidArgument before anything runs.
func TestExecValidation(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	big := strings.Repeat("x", maxCode+1)
	for name, req := range map[string]*sandboxv1.ExecRequest{
		"no language": {Code: "true"},
		"code size":   bashReq(big),
		"stdin size":  {Language: sandboxv1.Language_LANGUAGE_BASH, Code: "true", Stdin: []byte(big)},
		"env name":    {Language: sandboxv1.Language_LANGUAGE_BASH, Code: "true", Env: map[string]string{"A=B": "c"}},
		"timeout":     {Language: sandboxv1.Language_LANGUAGE_PYTHON, Code: "1", Timeout: durationpb.New(-time.Second)},
	} {
		stream, err := a.Exec(context.Background(), req)
		if err == nil {
			_, err = stream.Recv()
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		wantCode(t, err, codes.InvalidArgument)
	}
}

// TestTimeoutKillsEscapedChildren guarantees that a stopped Exec leaves no
// process behind: not one that left bash's process group with setsid, not
// a subprocess of a Python cell, while a process started by an Exec that
// ended normally keeps running.
func TestTimeoutKillsEscapedChildren(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	alive := func(pid string) bool {
		n, err := strconv.Atoi(strings.TrimSpace(pid))
		if err != nil {
			t.Fatalf("pid %q: %v", pid, err)
		}
		if syscall.Kill(n, 0) != nil {
			return false
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n))
		return err == nil && !strings.Contains(string(st), ") Z ")
	}
	o := a.run(t, bashReq("setsid sleep 300 >/dev/null 2>&1 < /dev/null & echo $!"))
	kept := o.stdout
	// Timeouts of 5 s: under -race with parallel tests a Python cell can
	// take seconds to reach its print.
	o = a.run(t, withTimeout(bashReq("setsid sleep 300 >/dev/null 2>&1 < /dev/null & echo $!; sleep 300"), 5*time.Second))
	wantResult(t, o, timedOut, -1, false)
	escaped := o.stdout
	o = a.run(t, withTimeout(pyReq("import subprocess, time\nprint(subprocess.Popen(['setsid', 'sleep', '300']).pid, flush=True)\ntime.sleep(300)"), 5*time.Second))
	wantResult(t, o, timedOut, -1, false)
	popened := o.stdout
	time.Sleep(200 * time.Millisecond) // reaping
	if alive(escaped) || alive(popened) {
		t.Fatalf("after the timeouts: setsid child alive %v, Popen child alive %v", alive(escaped), alive(popened))
	}
	if !alive(kept) {
		t.Fatal("a background process of an Exec that ended normally was killed")
	}
	if n, err := strconv.Atoi(strings.TrimSpace(kept)); err == nil {
		syscall.Kill(n, syscall.SIGKILL)
	}
}
