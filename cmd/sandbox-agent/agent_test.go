package main

// This file is the test harness: each test runs the real agent (this test
// binary as init and server) as a subprocess on pipes, with a temporary
// workspace, and talks to it the way the daemon does.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	agentv1 "github.com/sandboxd/sandboxd/proto/agent/v1"
	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"github.com/sandboxd/sandboxd/runtime/stdioconn"
)

// agentRoleEnv makes the test binary be the agent: it runs main, so that
// with no arguments it is the init, which starts itself again as the server.
const agentRoleEnv = "SANDBOXD_AGENT_TEST_AGENT"

func TestMain(m *testing.M) {
	// In a sandbox the agent inherits only stdio. Here the test may have
	// inherited more from its parent; keep them from the agents under test.
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		panic(err)
	}
	if os.Getenv(agentRoleEnv) == "1" {
		main()
	}
	os.Exit(m.Run())
}

// agent is a running agent subprocess and a client for it.
type agent struct {
	agentv1.AgentServiceClient
	workspace string
	cmd       *exec.Cmd // the init
	pid       int       // the server
	cc        *grpc.ClientConn
	conn      *daemonConn // cc's end of the pipes
	outR, inW *os.File    // the daemon's ends of the agent's stdout and stdin
	stderr    *lockedBuffer
	exited    chan struct{}
}

// lockedBuffer collects the agent's log.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startAgent runs an agent with a fresh workspace (also its working
// directory), waits until it answers, and stops it when the test ends, failing the test if the agent
// does not exit cleanly once its connection closes or if it reported a race.
func startAgent(t testing.TB) *agent {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{workspace: t.TempDir(), stderr: &lockedBuffer{}, exited: make(chan struct{})}
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	a.cmd = exec.Command(self)
	a.cmd.Env = append(os.Environ(), agentRoleEnv+"=1", workspaceEnv+"="+a.workspace)
	a.cmd.Dir = a.workspace
	a.cmd.Stdin, a.cmd.Stdout, a.cmd.Stderr = inR, outW, a.stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	inR.Close()
	outW.Close()
	go func() {
		_ = a.cmd.Wait()
		close(a.exited)
	}()
	a.outR, a.inW = outR, inW
	a.cc, a.conn = dialPipes(t, outR, inW)
	a.AgentServiceClient = agentv1.NewAgentServiceClient(a.cc)
	t.Cleanup(func() { a.stop(t) })
	// Wait until the agent serves, so that tests time their Execs only.
	resp, err := a.Ping(context.Background(), &agentv1.PingRequest{})
	if err != nil {
		t.Fatalf("Ping: %v", err)
	}
	a.pid = int(resp.Pid)
	return a
}

// dialPipes returns a gRPC client over the daemon's ends of an agent's
// pipes and its connection, which owns them.
func dialPipes(t testing.TB, outR, inW *os.File) (*grpc.ClientConn, *daemonConn) {
	t.Helper()
	conn := &daemonConn{Conn: stdioconn.New(outR, inW)}
	var dialed atomic.Bool
	cc, err := grpc.NewClient("passthrough:///agent",
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) {
			if dialed.Swap(true) {
				return nil, errors.New("the agent's pipes are in use already")
			}
			return conn, nil
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage)))
	if err != nil {
		t.Fatal(err)
	}
	return cc, conn
}

// daemonConn is the daemon's end of an agent's pipes, which a test can kill
// as a kill -9 kills the daemon.
type daemonConn struct {
	*stdioconn.Conn
	dead atomic.Bool
}

// die makes the connection read and write nothing more, as if its process
// died; the pipes stay open as long as the files are.
func (c *daemonConn) die() {
	c.dead.Store(true)
	_ = c.Conn.SetDeadline(time.Unix(1, 0)) // wake a reader or writer
}

func (c *daemonConn) Read(p []byte) (int, error) {
	if c.dead.Load() {
		return 0, net.ErrClosed
	}
	return c.Conn.Read(p)
}

func (c *daemonConn) Write(p []byte) (int, error) {
	if c.dead.Load() {
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

// Deadlines of a dead connection stay in the past: gRPC, closing, sets a
// write deadline to send its GOAWAY.
func (c *daemonConn) SetDeadline(t time.Time) error {
	if c.dead.Load() {
		return nil
	}
	return c.Conn.SetDeadline(t)
}

func (c *daemonConn) SetReadDeadline(t time.Time) error {
	if c.dead.Load() {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *daemonConn) SetWriteDeadline(t time.Time) error {
	if c.dead.Load() {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

// stop closes the connection and checks that the agent exits with 0.
func (a *agent) stop(t testing.TB) {
	a.cc.Close()
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.exited
		t.Error("the agent did not exit after its connection closed")
	}
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("the agent exited with %d", code)
	}
	if strings.Contains(a.stderr.String(), "DATA RACE") {
		t.Error("the agent reported a data race")
	}
	if t.Failed() {
		t.Logf("agent log:\n%s", a.stderr.String())
	}
}

// outcome is everything one Exec streamed.
type outcome struct {
	stdout, stderr string
	result         *sandboxv1.ExecResult
	elapsed        time.Duration
}

func pyReq(code string) *sandboxv1.ExecRequest {
	return &sandboxv1.ExecRequest{Language: sandboxv1.Language_LANGUAGE_PYTHON, Code: code}
}

func bashReq(code string) *sandboxv1.ExecRequest {
	return &sandboxv1.ExecRequest{Language: sandboxv1.Language_LANGUAGE_BASH, Code: code}
}

func withTimeout(req *sandboxv1.ExecRequest, d time.Duration) *sandboxv1.ExecRequest {
	req.Timeout = durationpb.New(d)
	return req
}

// run runs one Exec to its end and checks the stream's shape: output
// events, then exactly one result, then EOF.
func (a *agent) run(t testing.TB, req *sandboxv1.ExecRequest) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	stream, err := a.Exec(ctx, req)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	var o outcome
	var stdout, stderr strings.Builder
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Exec stream: %v", err)
		}
		if o.result != nil {
			t.Fatalf("event after the result: %v", ev)
		}
		switch e := ev.Event.(type) {
		case *sandboxv1.ExecEvent_Stdout:
			stdout.Write(e.Stdout)
		case *sandboxv1.ExecEvent_Stderr:
			stderr.Write(e.Stderr)
		case *sandboxv1.ExecEvent_Result:
			o.result = e.Result
		}
	}
	if o.result == nil {
		t.Fatal("the stream ended without a result")
	}
	o.stdout, o.stderr, o.elapsed = stdout.String(), stderr.String(), time.Since(start)
	return o
}

// wantResult checks a result's status, exit code and state_lost.
func wantResult(t testing.TB, o outcome, st sandboxv1.ExecStatus, code int32, stateLost bool) {
	t.Helper()
	r := o.result
	if r.Status != st || r.ExitCode != code || r.StateLost != stateLost {
		t.Fatalf("got status %v exit %d state_lost %v (%q), want %v %d %v\nstdout: %q\nstderr: %q",
			r.Status, r.ExitCode, r.StateLost, r.Message, st, code, stateLost, o.stdout, o.stderr)
	}
}

// wantCode checks that err is a gRPC status with code c.
func wantCode(t testing.TB, err error, c codes.Code) {
	t.Helper()
	if status.Code(err) != c {
		t.Fatalf("got %v, want code %v", err, c)
	}
}

// processGone reports whether pid has exited (or is a zombie) within d.
func processGone(pid int, d time.Duration) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(stat), ") Z ") {
			return true
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
	}
	return false
}

// readProc reads /proc/pid/name.
func readProc(t testing.TB, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
