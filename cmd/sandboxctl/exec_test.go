package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// execStream is the stream type a fake Exec writes to.
type execStream = grpc.ServerStreamingServer[sandboxv1.ExecEvent]

// sendAll returns a fake Exec that sends events in order.
func sendAll(events ...*sandboxv1.ExecEvent) func(*sandboxv1.ExecRequest, execStream) error {
	return func(_ *sandboxv1.ExecRequest, s execStream) error {
		for _, ev := range events {
			if err := s.Send(ev); err != nil {
				return err
			}
		}
		return nil
	}
}

func stdoutEvent(s string) *sandboxv1.ExecEvent {
	return &sandboxv1.ExecEvent{Event: &sandboxv1.ExecEvent_Stdout{Stdout: []byte(s)}}
}

func stderrEvent(s string) *sandboxv1.ExecEvent {
	return &sandboxv1.ExecEvent{Event: &sandboxv1.ExecEvent_Stderr{Stderr: []byte(s)}}
}

// okResult is the result of code that ran fine.
var okResult = resultEvent(&sandboxv1.ExecResult{Status: sandboxv1.ExecStatus_EXEC_STATUS_OK})

// eventLog records writes to several writers in the order they happen.
type eventLog struct {
	mu     sync.Mutex
	writes []string
}

// logWriter is one writer of an eventLog; it tags its writes with name.
type logWriter struct {
	log  *eventLog
	name string
}

func (w logWriter) Write(p []byte) (int, error) {
	w.log.mu.Lock()
	defer w.log.mu.Unlock()
	w.log.writes = append(w.log.writes, w.name+":"+string(p))
	return len(p), nil
}

// TestExecStreamsInOrder guarantees that stdout and stderr chunks go to the
// right writers, in the order the daemon sent them, and that an OK result
// exits 0.
func TestExecStreamsInOrder(t *testing.T) {
	sock := startFake(t, &fakeServer{exec: sendAll(
		stdoutEvent("a"), stderrEvent("b"), stdoutEvent("c\n"), stderrEvent("d\n"), okResult,
	)})
	var log eventLog
	code := run(context.Background(), []string{"--socket", sock, "exec", "sb", "x"},
		strings.NewReader(""), logWriter{&log, "out"}, logWriter{&log, "err"})
	if code != 0 {
		t.Fatalf("exit status %d, want 0 (writes %q)", code, log.writes)
	}
	want := []string{"out:a", "err:b", "out:c\n", "err:d\n"}
	if strings.Join(log.writes, "|") != strings.Join(want, "|") {
		t.Errorf("writes = %q, want %q", log.writes, want)
	}
}

// signalWriter closes seen once something containing marker is written.
type signalWriter struct {
	marker string
	seen   chan struct{}
	once   sync.Once
	buf    bytes.Buffer
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.marker) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

// TestExecStreamsLive guarantees that output is written as it arrives, not
// when the exec ends: the fake holds back the result until the client has
// written the first chunk.
func TestExecStreamsLive(t *testing.T) {
	out := &signalWriter{marker: "first", seen: make(chan struct{})}
	waited := make(chan error, 1) // nil once the client wrote the first chunk
	sock := startFake(t, &fakeServer{exec: func(_ *sandboxv1.ExecRequest, s execStream) error {
		if err := s.Send(stdoutEvent("first\n")); err != nil {
			return err
		}
		select {
		case <-out.seen:
			waited <- nil
		case <-time.After(10 * time.Second):
			waited <- errors.New("the client had not written the first chunk after 10s")
		}
		if err := s.Send(stdoutEvent("second\n")); err != nil {
			return err
		}
		return s.Send(okResult)
	}})
	code := run(context.Background(), []string{"--socket", sock, "exec", "sb", "x"},
		strings.NewReader(""), out, &bytes.Buffer{})
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	if code != 0 || out.buf.String() != "first\nsecond\n" {
		t.Errorf("exit %d, stdout %q", code, out.buf.String())
	}
}

// TestExecExitStatus guarantees the mapping of each result to the exit
// status and stderr note that exec's help documents.
func TestExecExitStatus(t *testing.T) {
	type res = sandboxv1.ExecResult
	const (
		ok      = sandboxv1.ExecStatus_EXEC_STATUS_OK
		failed  = sandboxv1.ExecStatus_EXEC_STATUS_ERROR
		timeout = sandboxv1.ExecStatus_EXEC_STATUS_TIMEOUT
		killed  = sandboxv1.ExecStatus_EXEC_STATUS_KILLED
		died    = sandboxv1.ExecStatus_EXEC_STATUS_SANDBOX_DIED
	)
	for _, tc := range []struct {
		name   string
		result *res
		code   int
		stderr string
	}{
		{"ok", &res{Status: ok}, 0, ""},
		{"bash exit 3", &res{Status: failed, ExitCode: 3}, 3, ""},
		{"python exception", &res{Status: failed, ExitCode: 1, ErrorName: "ValueError"}, 1, ""},
		{"error without code", &res{Status: failed, ExitCode: -1}, 1, ""},
		{"error with message", &res{Status: failed, ExitCode: 2, Message: "bash exited with code 2"}, 2,
			"sandboxctl: exec: bash exited with code 2\n"},
		{"timeout", &res{Status: timeout, ExitCode: -1, Duration: durationpb.New(30*time.Second + 1234567)}, 124,
			"sandboxctl: exec: timed out after 30.001s\n"},
		{"timeout with message", &res{Status: timeout, ExitCode: -1, Message: "timed out after 30s: bash was killed"}, 124,
			"sandboxctl: exec: timed out after 30s: bash was killed\n"},
		{"killed", &res{Status: killed, ExitCode: -1}, 137, "sandboxctl: exec: killed\n"},
		{"killed with message", &res{Status: killed, ExitCode: -1, Message: "the sandbox was destroyed"}, 137,
			"sandboxctl: exec: the sandbox was destroyed\n"},
		{"sandbox died", &res{Status: died, ExitCode: -1, Message: "the sandbox died during the Exec: oom"}, 125,
			"sandboxctl: exec: the sandbox died during the Exec: oom\n"},
		{"out of memory", &res{Status: sandboxv1.ExecStatus_EXEC_STATUS_OOM_KILLED, ExitCode: -1}, 137,
			"sandboxctl: exec: killed: out of memory\n"},
		{"output truncated", &res{Status: sandboxv1.ExecStatus_EXEC_STATUS_OUTPUT_TRUNCATED, ExitCode: -1, Message: "output exceeded 16 bytes"}, 141,
			"sandboxctl: exec: output exceeded 16 bytes\n"},
		{"sandbox died silently", &res{Status: died, ExitCode: -1}, 125,
			"sandboxctl: exec: the sandbox died\n"},
		{"state lost, explained", &res{Status: killed, ExitCode: -1, StateLost: true, Message: "the interpreter died; earlier variables are gone"}, 137,
			"sandboxctl: exec: the interpreter died; earlier variables are gone\n"},
		{"state lost, silently", &res{Status: ok, StateLost: true}, 0,
			"sandboxctl: exec: the Python interpreter was restarted: earlier variables are gone\n"},
		{"unspecified", &res{Message: "?"}, 1,
			"sandboxctl: exec: the daemon reported an unknown exec status EXEC_STATUS_UNSPECIFIED: ?\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := startFake(t, &fakeServer{exec: sendAll(resultEvent(tc.result))})
			r := runOn(t, sock, "", "exec", "sb", "x")
			wantExit(t, r, tc.code)
			if r.stderr != tc.stderr {
				t.Errorf("stderr = %q, want %q", r.stderr, tc.stderr)
			}
		})
	}
}

// TestExecStats guarantees the note of --stats: after any other note,
// whatever the status, on a line of its own, "unknown" for what the daemon
// did not measure; without --stats nothing is added, and the exit status
// is the same either way.
func TestExecStats(t *testing.T) {
	type res = sandboxv1.ExecResult
	measured := func(r *res) *res {
		r.CpuTime = durationpb.New(1234567 * time.Microsecond)
		r.PeakMemoryBytes = 180<<20 + 4321
		r.Duration = durationpb.New(2300 * time.Millisecond)
		return r
	}
	for _, tc := range []struct {
		name   string
		events []*sandboxv1.ExecEvent
		code   int
		stderr string // with --stats
		plain  string // without
	}{
		{"ok", []*sandboxv1.ExecEvent{resultEvent(measured(&res{Status: sandboxv1.ExecStatus_EXEC_STATUS_OK}))}, 0,
			"sandboxctl: exec: cpu 1.235s, peak memory 180Mi, took 2.3s\n", ""},
		{"after the code's stderr", []*sandboxv1.ExecEvent{stderrEvent("warn"), resultEvent(measured(&res{Status: sandboxv1.ExecStatus_EXEC_STATUS_OK}))}, 0,
			"warn\nsandboxctl: exec: cpu 1.235s, peak memory 180Mi, took 2.3s\n", "warn"},
		{"bash exit 3", []*sandboxv1.ExecEvent{resultEvent(measured(&res{Status: sandboxv1.ExecStatus_EXEC_STATUS_ERROR, ExitCode: 3}))}, 3,
			"sandboxctl: exec: cpu 1.235s, peak memory 180Mi, took 2.3s\n", ""},
		{"timeout, peak not measurable", []*sandboxv1.ExecEvent{resultEvent(&res{
			Status: sandboxv1.ExecStatus_EXEC_STATUS_TIMEOUT, ExitCode: -1,
			Duration: durationpb.New(30 * time.Second), CpuTime: durationpb.New(15 * time.Second),
		})}, 124,
			"sandboxctl: exec: timed out after 30s\nsandboxctl: exec: cpu 15s, peak memory unknown, took 30s\n",
			"sandboxctl: exec: timed out after 30s\n"},
		{"nothing measured", []*sandboxv1.ExecEvent{okResult}, 0,
			"sandboxctl: exec: cpu unknown, peak memory unknown\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := startFake(t, &fakeServer{exec: sendAll(tc.events...)})
			r := runOn(t, sock, "", "exec", "--stats", "sb", "x")
			wantExit(t, r, tc.code)
			if r.stderr != tc.stderr {
				t.Errorf("--stats: stderr = %q, want %q", r.stderr, tc.stderr)
			}
			r = runOn(t, sock, "", "exec", "sb", "x")
			wantExit(t, r, tc.code)
			if r.stderr != tc.plain {
				t.Errorf("without --stats: stderr = %q, want %q", r.stderr, tc.plain)
			}
		})
	}
}

// TestExecNoResult guarantees that a stream without a result is an error,
// not a success.
func TestExecNoResult(t *testing.T) {
	sock := startFake(t, &fakeServer{exec: sendAll(stdoutEvent("hi\n"))})
	r := runOn(t, sock, "", "exec", "sb", "x")
	wantExit(t, r, 1)
	if want := "sandboxctl: exec: the daemon ended the exec without a result\n"; r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
}

// TestExecValueAndNotes guarantees that a Python value is not printed
// again (the interpreter already wrote it to stdout), and that notes start
// on a fresh line of stderr.
func TestExecValueAndNotes(t *testing.T) {
	sock := startFake(t, &fakeServer{exec: sendAll(
		stdoutEvent("42\n"), stderrEvent("warn"),
		resultEvent(&sandboxv1.ExecResult{
			Status: sandboxv1.ExecStatus_EXEC_STATUS_OK, Value: "42", StateLost: true,
		}),
	)})
	r := runOn(t, sock, "", "exec", "sb", "x")
	wantExit(t, r, 0)
	if r.stdout != "42\n" {
		t.Errorf("stdout = %q", r.stdout)
	}
	want := "warn\nsandboxctl: exec: the Python interpreter was restarted: earlier variables are gone\n"
	if r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
}

// TestExecRequest guarantees where the code comes from (CODE, --file,
// stdin, CODE "-") and that the other flags reach the request.
func TestExecRequest(t *testing.T) {
	f := &fakeServer{}
	sock := startFake(t, f)
	dir := t.TempDir()
	codeFile := filepath.Join(dir, "code.sh")
	inFile := filepath.Join(dir, "in.txt")
	writeFile(t, codeFile, "echo from-file")
	writeFile(t, inFile, "input bytes")

	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  string
	}{
		{"argument", "ignored", []string{"sb", "print(1)"}, "print(1)"},
		{"file", "ignored", []string{"--file", codeFile, "sb"}, "echo from-file"},
		{"stdin", "from stdin", []string{"sb"}, "from stdin"},
		{"dash", "from stdin", []string{"sb", "-"}, "from stdin"},
		{"file dash", "from stdin", []string{"--file", "-", "sb"}, "from stdin"},
	} {
		r := runOn(t, sock, tc.stdin, append([]string{"exec"}, tc.args...)...)
		wantExit(t, r, 0)
		f.locked(func() {
			if f.execReq.GetCode() != tc.code || f.execReq.GetSandboxId() != "sb" {
				t.Errorf("%s: request %v, want code %q", tc.name, f.execReq, tc.code)
			}
			if f.execReq.GetLanguage() != sandboxv1.Language_LANGUAGE_PYTHON || f.execReq.GetTimeout() != nil {
				t.Errorf("%s: defaults: language %v, timeout %v", tc.name, f.execReq.GetLanguage(), f.execReq.GetTimeout())
			}
		})
	}

	// Flags go before or after the positional arguments.
	r := runOn(t, sock, "", "exec", "--lang", "bash", "sb", "--timeout", "1m30s", "--env", "A=1",
		"--env", "B=x=y", "--env", "C=", "--workdir", "sub", "--stdin-file", inFile, "cat")
	wantExit(t, r, 0)
	f.locked(func() {
		req := f.execReq
		if req.GetLanguage() != sandboxv1.Language_LANGUAGE_BASH || req.GetCode() != "cat" ||
			req.GetTimeout().AsDuration() != 90*time.Second || req.GetWorkdir() != "sub" ||
			string(req.GetStdin()) != "input bytes" {
			t.Errorf("request = %v", req)
		}
		want := map[string]string{"A": "1", "B": "x=y", "C": ""}
		if keyValues(req.GetEnv()).String() != keyValues(want).String() {
			t.Errorf("env = %v, want %v", req.GetEnv(), want)
		}
	})

	// A missing code file is an error of sandboxctl, before any RPC.
	r = runOn(t, sock, "", "exec", "--file", filepath.Join(dir, "nope.py"), "sb")
	wantExit(t, r, 1)
	if !strings.HasPrefix(r.stderr, "sandboxctl: exec: open ") {
		t.Errorf("stderr = %q", r.stderr)
	}
}

// TestExecBadCode guarantees that code the API would reject (not UTF-8,
// over 1 MiB) is refused with exit 1 before any RPC.
func TestExecBadCode(t *testing.T) {
	f := &fakeServer{}
	sock := startFake(t, f)
	for stdin, want := range map[string]string{
		"print('\xff')":                     "sandboxctl: exec: the code is not valid UTF-8\n",
		strings.Repeat("#", maxExecInput+1): "sandboxctl: exec: the code (standard input) is larger than 1 MiB\n",
	} {
		r := runOn(t, sock, stdin, "exec", "sb")
		wantExit(t, r, 1)
		if r.stderr != want {
			t.Errorf("stderr = %q, want %q", r.stderr, want)
		}
	}
	f.locked(func() {
		if f.execReq != nil {
			t.Errorf("bad code reached the daemon")
		}
	})
}

// TestMain lets tests run the test binary as sandboxctl itself: with
// SANDBOXCTL_RUN_MAIN=1 in its environment it is main.
func TestMain(m *testing.M) {
	if os.Getenv("SANDBOXCTL_RUN_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

// TestInterruptProcess guarantees that SIGINT (Ctrl-C) to the sandboxctl
// process cancels a running exec on the daemon's side and exits 130, and
// that output arrives while the code still runs.
func TestInterruptProcess(t *testing.T) {
	cancelled := make(chan struct{})
	sock := startFake(t, &fakeServer{exec: func(_ *sandboxv1.ExecRequest, s execStream) error {
		if err := s.Send(stdoutEvent("running\n")); err != nil {
			return err
		}
		<-s.Context().Done()
		close(cancelled)
		return s.Context().Err()
	}})
	cmd := exec.Command(os.Args[0], "--socket", sock, "exec", "sb", "x")
	cmd.Env = append(os.Environ(), "SANDBOXCTL_RUN_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "running\n" {
		t.Fatalf("first line %q (%v)", line, err)
	}
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != exitInterrupted {
		t.Errorf("exit status %d, want 130 (stderr %q)", code, stderr.String())
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Error("the daemon never saw the cancellation")
	}
}

// TestExecInterrupt guarantees that cancelling the context (Ctrl-C) cancels
// the Exec on the daemon's side and exits 130.
func TestExecInterrupt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cancelled := make(chan struct{})
	sock := startFake(t, &fakeServer{exec: func(_ *sandboxv1.ExecRequest, s execStream) error {
		if err := s.Send(stdoutEvent("running\n")); err != nil {
			return err
		}
		<-s.Context().Done()
		close(cancelled)
		return s.Context().Err()
	}})
	out := &signalWriter{marker: "running", seen: make(chan struct{})}
	go func() {
		<-out.seen
		cancel()
	}()
	var stderr bytes.Buffer
	code := run(ctx, []string{"--socket", sock, "exec", "sb", "x"}, strings.NewReader(""), out, &stderr)
	if code != exitInterrupted {
		t.Errorf("exit status %d, want 130 (stderr %q)", code, stderr.String())
	}
	if stderr.String() != "sandboxctl: exec: interrupted\n" {
		t.Errorf("stderr = %q", stderr.String())
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Error("the daemon never saw the cancellation")
	}
}
