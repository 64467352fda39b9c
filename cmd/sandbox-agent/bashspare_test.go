package main

import (
	"os/exec"
	"strings"
	"testing"

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
func TestSpareBashRunsScripts(t *testing.T) {
	a := startAgent(t)
	req := bashReq("echo \"$PWD|$GREETING\"; ls /proc/$$/fd | tr '\\n' ' '; echo; exit 3")
	req.Env = map[string]string{"GREETING": "it's\nme"}
	req.Trace = true
	o := a.run(t, req)
	wantResult(t, o, sandboxv1.ExecStatus_EXEC_STATUS_ERROR, 3, false)
	if !strings.Contains(o.stdout, a.workspace+"|it's\nme\n") {
		t.Errorf("stdout %q: want the workspace and the variable", o.stdout)
	}
	if fds := strings.Fields(strings.Split(o.stdout, "\n")[2]); len(fds) > 4 {
		t.Errorf("the script sees fds %v: want 0, 1, 2 and the one ls reads", fds)
	}
	var stages []string
	for _, st := range o.result.Trace {
		stages = append(stages, st.Name)
	}
	if !strings.Contains(strings.Join(stages, "|"), "spare bash") {
		t.Errorf("the Exec did not use the spare: stages %v", stages)
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
