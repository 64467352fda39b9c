package e2e

import (
	"strings"
	"testing"
	"time"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// TestPythonPrintsSum guarantees the walking skeleton: a sandbox is created
// over gRPC and Python output streams back.
func TestPythonPrintsSum(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)
	r := py(t, d, id, "print(sum(range(101)))")
	wantOK(t, r)
	if r.stdout != "5050\n" || r.result.ExitCode != 0 {
		t.Fatalf("stdout %q exit %d", r.stdout, r.result.ExitCode)
	}
	if r.result.Duration.AsDuration() <= 0 {
		t.Fatalf("no duration in result: %v", r.result)
	}
}

// TestPythonStatePersistsLikeANotebook guarantees that variables, imports
// and functions survive between Execs and that a final expression's value is
// returned like a notebook cell.
func TestPythonStatePersistsLikeANotebook(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)
	wantOK(t, py(t, d, id, "import math\nx = 41\ndef inc(v):\n    return v + 1"))
	r := py(t, d, id, "inc(x)")
	wantOK(t, r)
	if r.result.Value != "42" || r.stdout != "42\n" {
		t.Fatalf("value %q stdout %q, want 42", r.result.Value, r.stdout)
	}
	r = py(t, d, id, "math.sqrt(16)")
	if r.result.Value != "4.0" {
		t.Fatalf("import did not persist: value %q stderr %q", r.result.Value, r.stderr)
	}
}

// TestBashSeesFilesPythonWrote guarantees that bash runs in /workspace and
// shares the sandbox's file system with the Python interpreter.
func TestBashSeesFilesPythonWrote(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)
	wantOK(t, py(t, d, id, "open('note.txt', 'w').write('from python')"))
	r := sh(t, d, id, "pwd; cat note.txt")
	wantOK(t, r)
	if r.stdout != "/workspace\nfrom python" {
		t.Fatalf("stdout %q", r.stdout)
	}
}

// TestExceptionReturnsTracebackAndInterpreterSurvives guarantees that an
// exception is reported with its traceback and a non-OK status, and that the
// interpreter and its state survive it.
func TestExceptionReturnsTracebackAndInterpreterSurvives(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)
	wantOK(t, py(t, d, id, "kept = 'yes'"))
	r := py(t, d, id, "def f():\n    raise ValueError('bad value')\nf()")
	if r.result.Status != sandboxv1.ExecStatus_EXEC_STATUS_ERROR || r.result.ExitCode != 1 {
		t.Fatalf("status %v exit %d", r.result.Status, r.result.ExitCode)
	}
	if !strings.Contains(r.stderr, "Traceback") || !strings.Contains(r.stderr, "ValueError: bad value") {
		t.Fatalf("no traceback in stderr %q", r.stderr)
	}
	if r.result.ErrorName != "ValueError" {
		t.Fatalf("error_name %q", r.result.ErrorName)
	}
	r = py(t, d, id, "print(kept)")
	wantOK(t, r)
	if r.stdout != "yes\n" || r.result.StateLost {
		t.Fatalf("state lost after exception: %q %v", r.stdout, r.result.StateLost)
	}
}

// TestBashNonZeroExitIsReported guarantees that a bash exit code reaches the
// client with status ERROR, and that stdout and stderr stay apart.
func TestBashNonZeroExitIsReported(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)
	r := sh(t, d, id, "echo out; echo err >&2; exit 3")
	if r.result.Status != sandboxv1.ExecStatus_EXEC_STATUS_ERROR || r.result.ExitCode != 3 {
		t.Fatalf("status %v exit %d", r.result.Status, r.result.ExitCode)
	}
	if r.stdout != "out\n" || r.stderr != "err\n" {
		t.Fatalf("stdout %q stderr %q", r.stdout, r.stderr)
	}
}

// TestExecTimeoutStopsCode guarantees that an Exec past its timeout ends
// with TIMEOUT soon after the deadline and the sandbox keeps working.
func TestExecTimeoutStopsCode(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)
	start := time.Now()
	r := d.run(t, id, sandboxv1.Language_LANGUAGE_BASH, "sleep 1000", time.Second)
	if r.result.Status != sandboxv1.ExecStatus_EXEC_STATUS_TIMEOUT {
		t.Fatalf("status %v", r.result.Status)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("timeout of 1s took %v", took)
	}
	wantOK(t, sh(t, d, id, "true"))
}

// TestExecStreamsOutputLive guarantees that output reaches the client while
// the code still runs, not only at the end.
func TestExecStreamsOutputLive(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)
	stream, err := d.client.Exec(ctx(t), &sandboxv1.ExecRequest{
		SandboxId: id, Language: sandboxv1.Language_LANGUAGE_PYTHON,
		Code: "import time\nprint('first', flush=True)\ntime.sleep(3)\nprint('second')",
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var got string
	for got != "first\n" {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetResult() != nil || len(got) > len("first\n") {
			t.Fatalf("got %q then %v before the first line was complete", got, ev)
		}
		got += string(ev.GetStdout())
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("first line arrived after %v: output is not streamed", took)
	}
}

// TestExecTrace guarantees ExecRequest.trace: the result lists the Exec's
// stages from the daemon through the agent to the interpreter (Python) or
// bash, each with a non-negative duration, adding up to no more than what
// the client waited; an Exec without trace carries none.
func TestExecTrace(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, "pool.yaml")})
	id := d.create(t)
	for _, c := range []struct {
		lang sandboxv1.Language
		code string
		want []string
	}{
		{sandboxv1.Language_LANGUAGE_PYTHON, "sum(range(1000))", []string{"daemon: check the request", "daemon <-> agent", "agent: hand the cell", "interpreter: run the code", "agent: assemble the result", "daemon: read the cgroup counters"}},
		{sandboxv1.Language_LANGUAGE_BASH, "echo hi", []string{"daemon: check the request", "bash (script, pipes", "bash: run the script", "daemon: read the cgroup counters"}},
	} {
		start := time.Now()
		r, err := d.tryRun(ctx(t), id, &sandboxv1.ExecRequest{Language: c.lang, Code: c.code, Trace: true})
		took := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		wantOK(t, r)
		var names []string
		var sum time.Duration
		for _, st := range r.result.Trace {
			if d := st.Duration.AsDuration(); d < 0 {
				t.Errorf("stage %q has a negative duration %v", st.Name, d)
			}
			names = append(names, st.Name)
			sum += st.Duration.AsDuration()
		}
		joined := strings.Join(names, " | ")
		for _, w := range c.want {
			if !strings.Contains(joined, w) {
				t.Errorf("%v trace lacks a stage %q: %s", c.lang, w, joined)
			}
		}
		if sum <= 0 || sum > took {
			t.Errorf("%v stages add up to %v, the client waited %v", c.lang, sum, took)
		}
	}
	r := py(t, d, id, "1")
	if len(r.result.Trace) != 0 {
		t.Errorf("an Exec without trace got %d stages", len(r.result.Trace))
	}
}
