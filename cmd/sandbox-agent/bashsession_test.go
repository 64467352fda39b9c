package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	agentv1 "github.com/sandboxd/sandboxd/proto/agent/v1"
	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// sessionReq is a LANGUAGE_BASH_SESSION Exec of code.
func sessionReq(code string) *sandboxv1.ExecRequest {
	return &sandboxv1.ExecRequest{Language: sandboxv1.Language_LANGUAGE_BASH_SESSION, Code: code}
}

// wantStdout runs req, expecting OK and stdout out.
func (a *agent) wantStdout(t *testing.T, req *sandboxv1.ExecRequest, out string) outcome {
	t.Helper()
	o := a.run(t, req)
	wantResult(t, o, ok, 0, false)
	if o.stdout != out {
		t.Fatalf("%q: stdout %q, want %q (stderr %q)", req.Code, o.stdout, out, o.stderr)
	}
	return o
}

// sessionPid is the pid of the session's bash.
func (a *agent) sessionPid(t *testing.T) int {
	t.Helper()
	o := a.run(t, sessionReq("echo $$"))
	pid, err := strconv.Atoi(strings.TrimSpace(o.stdout))
	if err != nil {
		t.Fatalf("session pid %q: %v", o.stdout, err)
	}
	return pid
}

// alive reports whether pid runs and is not a zombie.
func alive(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && syscall.Kill(pid, 0) == nil && !strings.Contains(string(st), ") Z ")
}

// pids parses one pid per line.
func pids(t *testing.T, s string) []int {
	t.Helper()
	var ps []int
	for _, f := range strings.Fields(s) {
		p, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("pid %q in %q", f, s)
		}
		ps = append(ps, p)
	}
	return ps
}

// TestSessionKeepsDirectoryAndExports guarantees the session's point: a cd
// and an export persist into the next Exec, which starts in the workspace.
func TestSessionKeepsDirectoryAndExports(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	a.wantStdout(t, sessionReq("pwd"), a.workspace+"\n")
	a.wantStdout(t, sessionReq("cd /tmp; export A=1"), "")
	a.wantStdout(t, sessionReq("pwd; echo $A; bash -c 'echo $A'"), "/tmp\n1\n1\n")
}

// TestSessionKeepsFunctionsAliasesAndDeclarations guarantees that
// functions, aliases (also on the next line of the same Exec), shell
// options and declare'd arrays, which a function scope would make local,
// persist.
func TestSessionKeepsFunctionsAliasesAndDeclarations(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	a.wantStdout(t, sessionReq("greet() { echo \"hello $1\"; }\nalias hi='echo hi'\nhi\ndeclare -A m=([k]=v)\nshopt -s extglob"), "hi\n")
	a.wantStdout(t, sessionReq("greet you; hi; echo ${m[k]}; shopt -q extglob && echo extglob"), "hello you\nhi\nv\nextglob\n")
}

// TestSessionEnvAndWorkdirArePerExec guarantees that request env and
// workdir apply to their Exec only: variables get back their value and
// export attribute or are unset again, even if the code changed them, and
// the session returns to its directory.
func TestSessionEnvAndWorkdirArePerExec(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	if err := os.Mkdir(filepath.Join(a.workspace, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	a.wantStdout(t, sessionReq("export KEEP=old; LOCAL=shell; cd /tmp"), "")
	req := sessionReq("echo \"$KEEP|$NEW|$LOCAL|$(pwd)\"; bash -c 'echo \"$LOCAL\"'; export NEW=changed KEEP=changed; cd /")
	req.Env = map[string]string{"KEEP": "new", "NEW": "a\nb", "LOCAL": "exported"}
	req.Workdir = "sub"
	a.wantStdout(t, req, "new|a\nb|exported|"+a.workspace+"/sub\nexported\n")
	a.wantStdout(t, sessionReq("echo \"$KEEP|${NEW-unset}|$LOCAL|$(pwd)\"; bash -c 'echo \"$KEEP|${LOCAL-unexported}\"'"), "old|unset|shell|/tmp\nold|unexported\n")

	req = sessionReq("true")
	req.Env = map[string]string{"NOT-A-NAME": "x"}
	stream, err := a.Exec(context.Background(), req)
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.InvalidArgument)
}

// TestSessionRestartForgetsState guarantees that restart_session starts a
// fresh session, in the workspace, and says state_lost, but not when there
// was no session to lose.
func TestSessionRestartForgetsState(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	req := sessionReq("export A=1; cd /tmp")
	req.RestartSession = true
	wantResult(t, a.run(t, req), ok, 0, false)
	req = sessionReq("echo ${A-gone}; pwd")
	req.RestartSession = true
	o := a.run(t, req)
	wantResult(t, o, ok, 0, true)
	if o.stdout != "gone\n"+a.workspace+"\n" || !strings.Contains(o.result.Message, "restart_session") {
		t.Fatalf("stdout %q message %q", o.stdout, o.result.Message)
	}
}

// TestSessionTimeoutKeepsState guarantees that a timed-out command, a
// program or a busy loop of builtins in a function, is stopped within a
// second or so, with the rest of the code skipped, and that the session
// keeps its state.
func TestSessionTimeoutKeepsState(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	a.wantStdout(t, sessionReq("export K=kept; cd /tmp"), "")
	for _, code := range []string{"sleep 100; echo after", "spin() { while :; do :; done; }\nspin\necho after", "x=$(sleep 100) && echo after"} {
		o := a.run(t, withTimeout(sessionReq(code), time.Second))
		wantResult(t, o, timedOut, -1, false)
		if o.elapsed > 3*time.Second || strings.Contains(o.stdout, "after") {
			t.Fatalf("%q: stdout %q after %v", code, o.stdout, o.elapsed)
		}
		a.wantStdout(t, sessionReq("echo $K; pwd"), "kept\n/tmp\n")
	}
}

// TestSessionStopKillsOnlyWhatTheExecStarted guarantees that a stopped
// Exec's processes die, also one that left the process group, while
// background jobs and subshells of earlier Execs keep running.
func TestSessionStopKillsOnlyWhatTheExecStarted(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	o := a.run(t, sessionReq("sleep 300 & echo $!\n(while :; do sleep 1; done) & echo $!"))
	wantResult(t, o, ok, 0, false)
	kept := pids(t, o.stdout)
	o = a.run(t, withTimeout(sessionReq("setsid sleep 300 >/dev/null 2>&1 </dev/null & echo $!\nsleep 300 & echo $!\n(sleep 300) & echo $!\nsleep 300"), 2*time.Second))
	wantResult(t, o, timedOut, -1, false)
	stopped := pids(t, o.stdout)
	time.Sleep(200 * time.Millisecond) // reaping
	for _, p := range stopped {
		if alive(p) {
			t.Errorf("process %d of the stopped Exec survived", p)
		}
	}
	for _, p := range kept {
		if !alive(p) {
			t.Errorf("background process %d of an earlier Exec was killed", p)
		}
		syscall.Kill(p, syscall.SIGKILL)
	}
}

// TestSessionCancelKeepsState guarantees that a cancelled Exec kills its
// command and the next Exec finds the session's state.
func TestSessionCancelKeepsState(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	a.wantStdout(t, sessionReq("C=kept"), "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := a.Exec(ctx, sessionReq("sleep 30 & echo $!; wait"))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	pid := pids(t, string(ev.GetStdout()))
	cancel()
	if _, err := stream.Recv(); err == nil || err == io.EOF {
		t.Fatalf("stream after cancel: %v", err)
	}
	a.wantStdout(t, sessionReq("echo $C"), "kept\n")
	if !processGone(pid[0], 5*time.Second) {
		t.Fatalf("background child %d survived the cancellation", pid[0])
	}
}

// TestSessionOutputCapKeepsSession guarantees that when the daemon cuts an
// Exec at its output limit (it cancels the stream) the command stops and
// the session, with its state, is ready for the next Exec, whose output
// holds nothing of the cut one.
func TestSessionOutputCapKeepsSession(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	a.wantStdout(t, sessionReq("V=kept"), "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := a.Exec(ctx, sessionReq("yes"))
	if err != nil {
		t.Fatal(err)
	}
	for got := 0; got < 1<<20; {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got += len(ev.GetStdout())
	}
	cancel()
	a.wantStdout(t, sessionReq("echo $V"), "kept\n")
}

// TestSessionExitIsReportedOnce guarantees that a session that ends (exit,
// a signal) is reported with its exit code and state_lost by the Exec that
// ended it, and that the next Exec runs in a fresh session without
// reporting the loss again.
func TestSessionExitIsReportedOnce(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	a.wantStdout(t, sessionReq("A=1"), "")
	o := a.run(t, sessionReq("echo bye; exit 3"))
	wantResult(t, o, failed, 3, true)
	if o.stdout != "bye\n" || !strings.Contains(o.result.Message, "exited with code 3") {
		t.Fatalf("stdout %q message %q", o.stdout, o.result.Message)
	}
	a.wantStdout(t, sessionReq("echo ${A-gone}"), "gone\n")
	o = a.run(t, sessionReq("kill -9 $$"))
	wantResult(t, o, sandboxv1.ExecStatus_EXEC_STATUS_KILLED, -1, true)
	a.wantStdout(t, sessionReq("echo fresh"), "fresh\n")
}

// TestSessionDeathBetweenExecsIsReported guarantees that a session killed
// while no session Exec ran is reported by the next one, which runs in a
// fresh session.
func TestSessionDeathBetweenExecsIsReported(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	pid := a.sessionPid(t)
	wantResult(t, a.run(t, bashReq(fmt.Sprintf("kill -9 %d", pid))), ok, 0, false)
	if !processGone(pid, 5*time.Second) {
		t.Fatal("the session survived kill -9")
	}
	o := a.run(t, sessionReq("echo again"))
	wantResult(t, o, ok, 0, true)
	if o.stdout != "again\n" || !strings.Contains(o.result.Message, "killed by signal 9") {
		t.Fatalf("stdout %q message %q", o.stdout, o.result.Message)
	}
}

// TestSessionErrorsKeepSession guarantees that an expansion error or a
// syntax error ends the command with a non-zero status but not the
// session, and that the exit status of the last command is the Exec's.
func TestSessionErrorsKeepSession(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	a.wantStdout(t, sessionReq("S=kept"), "")
	for _, code := range []string{"echo ${missing:?is unset}; echo after", "if true; then echo unterminated", "false"} {
		o := a.run(t, sessionReq(code))
		if o.result.Status != failed || o.result.StateLost || strings.Contains(o.stdout, "after") {
			t.Fatalf("%q: %v stdout %q stderr %q", code, o.result, o.stdout, o.stderr)
		}
	}
	a.wantStdout(t, sessionReq("echo $S"), "kept\n")
}

// TestSessionHonoursShellOptions guarantees that the code's set -ux and
// set -e leave the session's own machinery working: env is still undone,
// tracing shows the code's commands, line numbers are the code's, and a
// failure under set -e ends the session as it would end a terminal's
// shell, which is reported.
func TestSessionHonoursShellOptions(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	a.wantStdout(t, sessionReq("set -ux"), "")
	req := sessionReq("echo \"$X\"")
	req.Env = map[string]string{"X": "set"}
	o := a.wantStdout(t, req, "set\n")
	if !strings.Contains(o.stderr, "+ echo set\n") {
		t.Fatalf("stderr %q has no trace of the code", o.stderr)
	}
	a.wantStdout(t, sessionReq("set +x; echo ${X-unset}"), "unset\n")
	a.wantStdout(t, sessionReq("echo $LINENO\necho $LINENO"), "1\n2\n")
	o = a.run(t, sessionReq("set -e; false; echo after"))
	wantResult(t, o, failed, 1, true)
	a.wantStdout(t, sessionReq("false; echo after"), "after\n")
}

// TestSessionStreamsOutput guarantees that output streams while the
// command runs, each stream complete and in order, and byte-exact (no
// newline added).
func TestSessionStreamsOutput(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	stream, err := a.Exec(context.Background(), sessionReq("echo one; echo err1 >&2; sleep 1; echo two; echo err2 >&2; printf end"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var stdout, stderr strings.Builder
	var first time.Duration
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if first == 0 {
			first = time.Since(start)
		}
		stdout.Write(ev.GetStdout())
		stderr.Write(ev.GetStderr())
		if r := ev.GetResult(); r != nil {
			if r.Status != ok {
				t.Fatalf("result %v", r)
			}
			break
		}
	}
	if first > 700*time.Millisecond || stdout.String() != "one\ntwo\nend" || stderr.String() != "err1\nerr2\n" {
		t.Fatalf("first output after %v; stdout %q stderr %q", first, stdout.String(), stderr.String())
	}
	o := a.run(t, sessionReq("head -c 10000000 /dev/zero | tr '\\0' x"))
	if len(o.stdout) != 10_000_000 || strings.Count(o.stdout, "x") != len(o.stdout) {
		t.Fatalf("got %d bytes of large output", len(o.stdout))
	}
}

// TestSessionForgedEndRecordIsOutput guarantees that output that looks
// like an end record, whole or cut off, does not end the Exec and reaches
// the client unchanged.
func TestSessionForgedEndRecordIsOutput(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	forged := recordPrefix + strings.Repeat("0", 2*tokenBytes) + " 0 \n"
	code := "printf %s " + ansiQuote(forged) + "; printf %s " + ansiQuote(forged) + " >&2; printf '\\036sandboxd-'; sleep 0.3; echo after"
	o := a.run(t, sessionReq(code))
	wantResult(t, o, ok, 0, false)
	if o.stdout != forged+"\x1esandboxd-after\n" || o.stderr != forged {
		t.Fatalf("stdout %q stderr %q", o.stdout, o.stderr)
	}
}

// TestSessionStdin guarantees that request stdin is the code's stdin, that
// without it the code reads EOF at once, that bash's own stdin (its
// command pipe) stays out of the code's reach, and that the code's own fds
// persist.
func TestSessionStdin(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	req := sessionReq("tr a-z A-Z")
	req.Stdin = []byte("abc\n")
	a.wantStdout(t, req, "ABC\n")
	a.wantStdout(t, withTimeout(sessionReq("cat; echo done"), 5*time.Second), "done\n")
	a.wantStdout(t, sessionReq("exec 0</dev/null; read -r line; echo \"[$line]\""), "[]\n")
	a.wantStdout(t, sessionReq("exec 3>fd3.txt"), "")
	a.wantStdout(t, sessionReq("echo kept >&3; cat fd3.txt"), "kept\n")
}

// TestSessionLongCode guarantees that code beyond the 128 KiB argv limit
// and a pipe's buffer runs whole.
func TestSessionLongCode(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	code := strings.Repeat(": "+strings.Repeat("x", 98)+"\n", 5000) + "echo end"
	a.wantStdout(t, sessionReq(code), "end\n")
}

// TestSessionRunsUnderTheProcessLimit guarantees that the session, like
// a bash Exec, runs under the code's process limit, hard and soft.
func TestSessionRunsUnderTheProcessLimit(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	if _, err := a.Ping(context.Background(), &agentv1.PingRequest{CodeProcesses: 321}); err != nil {
		t.Fatal(err)
	}
	a.wantStdout(t, sessionReq("ulimit -Su; ulimit -Hu"), "321\n321\n")
}

// TestSessionEndsWithTheAgent guarantees that the session's bash does not
// outlive the agent.
func TestSessionEndsWithTheAgent(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	pid := a.sessionPid(t)
	a.cc.Close()
	<-a.exited
	if !processGone(pid, 5*time.Second) {
		t.Fatalf("the session's bash %d outlived the agent", pid)
	}
}

// TestSessionRecordScan guarantees how output and end records are told apart: a
// record is cut out only with the Exec's token and whole, a possible start
// of one is held back, and anything else passes.
func TestSessionRecordScan(t *testing.T) {
	tok := strings.Repeat("a", 2*tokenBytes)
	other := strings.Repeat("b", 2*tokenBytes)
	for _, c := range []struct {
		data, pass, held string
		fields           []string
	}{
		{"out" + recordPrefix + tok + " 0 12\nlater", "out", "", []string{tok, "0", "12"}},
		{"out" + recordPrefix + other + " 0 \nmore", "out" + recordPrefix + other + " 0 \nmore", "", nil},
		{"out" + recordPrefix + tok + " 1", "out", recordPrefix + tok + " 1", nil},
		{"out\x1esandbox", "out", "\x1esandbox", nil},
		{"out\x1e", "out", "\x1e", nil},
		{"out" + recordPrefix + strings.Repeat("x", maxRecord+1), "out" + recordPrefix + strings.Repeat("x", maxRecord+1), "", nil},
	} {
		pass, held, fields := scanRecord([]byte(c.data), tok)
		if string(pass) != c.pass || string(held) != c.held || strings.Join(fields, ",") != strings.Join(c.fields, ",") {
			t.Errorf("%q: pass %q held %q fields %q", c.data, pass, held, fields)
		}
	}
}
