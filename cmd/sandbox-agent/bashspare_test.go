package main

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// TestAnsiQuoteRoundTrips guarantees that the spare's prologue gives the
// script exactly the Exec's variable values, however odd, on one line.
func TestAnsiQuoteRoundTrips(t *testing.T) {
	for _, v := range []string{"", "plain", "it's", `back\slash`, "two\nlines", "tab\there", `$HOME $(id) ; rm -rf /`, "ünïcödé ✓", "\x01\x7f", `\x41`} {
		q := ansiQuote(v)
		if strings.ContainsAny(q, "\n") {
			t.Errorf("quoted %q spans lines: %s", v, q)
		}
		out, err := exec.Command(bashPath, "-c", "x="+q+"; printf %s \"$x\"").Output()
		if err != nil {
			t.Fatalf("bash on %s: %v", q, err)
		}
		if string(out) != v {
			t.Errorf("%q quoted as %s came back as %q", v, q, out)
		}
	}
}

// TestSpareBashRunsScripts guarantees that bash Execs that the spare can
// run go through it with the same semantics as a bash of their own: the
// workspace as working directory, the Exec's variables, the process
// limit, no extra open descriptors, exit codes and line numbers; that
// Execs it cannot run (another directory, stdin) still work; and that a
// spare killed by earlier code is replaced.
// spareAttempts and spareWait bound how long TestSpareBashRunsScripts
// waits for the agent's spare bash: it is started 50 ms after the agent is
// idle and takes a few milliseconds, so five tries 200 ms apart ride out a
// loaded host.
const (
	spareAttempts = 5
	spareWait     = 200 * time.Millisecond
)

// usedSpare reports whether a traced Exec ran in the spare bash.
func usedSpare(o outcome) bool {
	for _, st := range o.result.GetTrace() {
		if strings.Contains(st.GetName(), "spare bash") {
			return true
		}
	}
	return false
}

func TestSpareBashRunsScripts(t *testing.T) {
	a := startAgent(t)
	req := bashReq("echo \"$PWD|$GREETING\"; ls /proc/$$/fd | tr '\\n' ' '; echo; exit 3")
	req.Env = map[string]string{"GREETING": "it's\nme"}
	req.Trace = true
	// The agent starts its spare after it has been idle a while; on a
	// loaded host the first Exec may come first and run a fresh bash, so
	// try again (idle in between) until an Exec finds the spare.
	var o outcome
	for attempt := 0; ; attempt++ {
		o = a.run(t, req)
		if usedSpare(o) || attempt == spareAttempts {
			break
		}
		time.Sleep(spareWait)
	}
	wantResult(t, o, sandboxv1.ExecStatus_EXEC_STATUS_ERROR, 3, false)
	if !strings.Contains(o.stdout, a.workspace+"|it's\nme\n") {
		t.Errorf("stdout %q: want the workspace and the variable", o.stdout)
	}
	if fds := strings.Fields(strings.Split(o.stdout, "\n")[2]); len(fds) > 4 {
		t.Errorf("the script sees fds %v: want 0, 1, 2 and the one ls reads", fds)
	}
	if !usedSpare(o) {
		t.Errorf("no Exec of %d used the spare: stages %v", spareAttempts+1, o.result.Trace)
	}
	o = a.run(t, bashReq("true\nfalse\nnosuchcommand"))
	if !strings.Contains(o.stderr, "line 3") {
		t.Errorf("line numbers moved: stderr %q", o.stderr)
	}
	// The spare's bootstrap is its command line (and this Exec's bash's):
	// kill the others from the code.
	wantResult(t, a.run(t, bashReq("for p in $(pgrep -f 'read -r -n 1 -u 4'); do [ $p = $$ ] || kill $p; done; true")), ok, 0, false)
	o = a.run(t, bashReq("echo after"))
	wantResult(t, o, ok, 0, false)
	if o.stdout != "after\n" {
		t.Errorf("after killing the spare: %q", o.stdout)
	}
	withStdin := bashReq("cat")
	withStdin.Stdin = []byte("fed")
	if o := a.run(t, withStdin); o.stdout != "fed" {
		t.Errorf("stdin Exec: %q", o.stdout)
	}
	elsewhere := bashReq("pwd")
	elsewhere.Workdir = "/tmp"
	if o := a.run(t, elsewhere); o.stdout != "/tmp\n" {
		t.Errorf("workdir Exec: %q", o.stdout)
	}
}
