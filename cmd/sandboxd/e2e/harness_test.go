package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// bins are the binaries under test, built once per test run.
var bins struct {
	once            sync.Once
	err             error
	dir             string
	sandboxd, agent string

	ctlOnce sync.Once
	ctlErr  error
	ctl     string // sandboxctl, built on first use
}

// TestMain removes the binaries the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// requireE2E skips the test unless the end-to-end prerequisites are there
// (root, SANDBOXD_RUNSC, SANDBOXD_ROOTFS); under SANDBOXD_E2E=1 (make test,
// CI) a missing prerequisite fails the test instead.
func requireE2E(t testing.TB) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, env := range []string{"SANDBOXD_RUNSC", "SANDBOXD_ROOTFS"} {
		if p := os.Getenv(env); p == "" {
			missing = append(missing, env)
		} else if _, err := os.Stat(p); err != nil {
			missing = append(missing, fmt.Sprintf("%s (%v)", env, err))
		}
	}
	if len(missing) > 0 {
		msg := "end-to-end test needs " + strings.Join(missing, ", ") + ": run `make test` as root"
		if os.Getenv("SANDBOXD_E2E") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	bins.once.Do(buildBinaries)
	if bins.err != nil {
		t.Fatal(bins.err)
	}
}

// buildBinaries builds the daemon with the race detector, and the static
// agent and CLI, into a temporary directory.
func buildBinaries() {
	dir, err := os.MkdirTemp("", "sandboxd-e2e-bin-")
	if err != nil {
		bins.err = err
		return
	}
	bins.dir = dir
	bins.sandboxd = filepath.Join(dir, "sandboxd")
	bins.agent = filepath.Join(dir, "sandbox-agent")
	if bins.err = goBuild(bins.sandboxd, "../", "-race"); bins.err != nil {
		return
	}
	bins.err = goBuild(bins.agent, "../../sandbox-agent")
}

// goBuild builds pkg into out; binaries without -race are static.
func goBuild(out, pkg string, flags ...string) error {
	// -trimpath: the agent is readable inside the sandbox and must not
	// carry host paths.
	args := append([]string{"build", "-trimpath", "-o", out}, flags...)
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Env = os.Environ()
	if len(flags) == 0 {
		cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %v\n%s", pkg, err, out)
	}
	return nil
}

// daemon is a running sandboxd under test.
type daemon struct {
	t        testing.TB
	cmd      *exec.Cmd
	socket   string
	stateDir string
	log      *lockedBuffer
	conn     *grpc.ClientConn
	client   sandboxv1.SandboxServiceClient
	exited   chan struct{}
}

type daemonOpts struct {
	policy   string // policy file; empty: embedded default
	stateDir string // reuse a state directory (restart tests)
	env      []string
	args     []string // extra daemon flags, e.g. --listen-tcp
	// pauseOnExit keeps the daemon's default of pausing live sandboxes
	// when it stops; other tests run with --destroy-on-exit, so that
	// stopping a test's daemon does not spend a checkpoint on each
	// sandbox it left.
	pauseOnExit bool
}

// startDaemon starts sandboxd on a fresh socket and waits until its health
// service says SERVING. The daemon is stopped with SIGTERM at cleanup.
func startDaemon(t testing.TB, o daemonOpts) *daemon {
	t.Helper()
	requireE2E(t)
	// Short paths: a unix socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("/tmp", "sbd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &daemon{t: t, socket: filepath.Join(dir, "sock"), stateDir: o.stateDir, log: &lockedBuffer{}, exited: make(chan struct{})}
	if d.stateDir == "" {
		d.stateDir = filepath.Join(dir, "state")
	}
	args := []string{
		"--socket", d.socket, "--state-dir", d.stateDir,
		"--runsc", os.Getenv("SANDBOXD_RUNSC"), "--rootfs", os.Getenv("SANDBOXD_ROOTFS"),
		"--agent", bins.agent, "--log-level", "debug",
	}
	if o.policy != "" {
		args = append(args, "--policy", o.policy)
	}
	if !o.pauseOnExit {
		args = append(args, "--destroy-on-exit")
	}
	args = append(args, o.args...)
	d.cmd = exec.Command(bins.sandboxd, args...)
	d.cmd.Env = append(os.Environ(), o.env...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(d.stop)

	d.conn, err = grpc.NewClient("unix://"+d.socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20), grpc.MaxCallSendMsgSize(16<<20)))
	if err != nil {
		t.Fatal(err)
	}
	d.client = sandboxv1.NewSandboxServiceClient(d.conn)
	health := healthpb.NewHealthClient(d.conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "sandbox.v1.SandboxService"})
		cancel()
		if err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING {
			return d
		}
		select {
		case <-d.exited:
			t.Fatalf("sandboxd exited at start:\n%s", d.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandboxd not serving after 30s (%v):\n%s", err, d.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the daemon to exit; on failure the
// daemon's log is printed.
func (d *daemon) stop() {
	d.conn.Close()
	select {
	case <-d.exited:
	default:
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(90 * time.Second):
			d.cmd.Process.Kill()
			<-d.exited
			d.t.Errorf("sandboxd did not stop within 90s of SIGTERM")
		}
	}
	// SANDBOXD_E2E_LOG=1 shows the daemon's log of passing tests too.
	if d.t.Failed() || os.Getenv("SANDBOXD_E2E_LOG") == "1" {
		d.t.Logf("sandboxd log:\n%s", d.log.String())
	}
	if strings.Contains(d.log.String(), "WARNING: DATA RACE") {
		d.t.Errorf("the race detector fired in sandboxd:\n%s", d.log.String())
	}
}

// kill SIGKILLs the daemon, as a crash would.
func (d *daemon) kill() {
	d.cmd.Process.Kill()
	<-d.exited
}

// runscRoot is the runsc state root the daemon uses.
func (d *daemon) runscRoot() string { return filepath.Join(d.stateDir, "runsc") }

// lockedBuffer collects the daemon's log from its stdout and stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// create makes a sandbox from the default template and destroys it at
// cleanup.
func (d *daemon) create(t testing.TB) string {
	t.Helper()
	sb, err := d.client.CreateSandbox(ctx(t), &sandboxv1.CreateSandboxRequest{})
	if err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	t.Cleanup(func() {
		d.client.DestroySandbox(context.Background(), &sandboxv1.DestroySandboxRequest{SandboxId: sb.SandboxId})
	})
	return sb.SandboxId
}

// execResult is what one Exec produced.
type execResult struct {
	stdout, stderr string
	result         *sandboxv1.ExecResult
}

// run executes code and collects the whole stream.
func (d *daemon) run(t testing.TB, id string, lang sandboxv1.Language, code string, timeout time.Duration) execResult {
	t.Helper()
	r, err := d.tryRun(ctx(t), id, &sandboxv1.ExecRequest{Language: lang, Code: code, Timeout: durationpb.New(timeout)})
	if err != nil {
		t.Fatalf("Exec %q: %v", code, err)
	}
	return r
}

func (d *daemon) tryRun(c context.Context, id string, req *sandboxv1.ExecRequest) (execResult, error) {
	req.SandboxId = id
	stream, err := d.client.Exec(c, req)
	if err != nil {
		return execResult{}, err
	}
	var out, errOut strings.Builder
	for {
		ev, err := stream.Recv()
		if err != nil {
			return execResult{stdout: out.String(), stderr: errOut.String()}, err
		}
		switch e := ev.Event.(type) {
		case *sandboxv1.ExecEvent_Stdout:
			out.Write(e.Stdout)
		case *sandboxv1.ExecEvent_Stderr:
			errOut.Write(e.Stderr)
		case *sandboxv1.ExecEvent_Result:
			return execResult{out.String(), errOut.String(), e.Result}, nil
		}
	}
}

func py(t testing.TB, d *daemon, id, code string) execResult {
	t.Helper()
	return d.run(t, id, sandboxv1.Language_LANGUAGE_PYTHON, code, time.Minute)
}

func sh(t testing.TB, d *daemon, id, code string) execResult {
	t.Helper()
	return d.run(t, id, sandboxv1.Language_LANGUAGE_BASH, code, time.Minute)
}

// wantOK fails the test unless the Exec ended with status OK.
func wantOK(t testing.TB, r execResult) {
	t.Helper()
	if r.result.GetStatus() != sandboxv1.ExecStatus_EXEC_STATUS_OK {
		t.Fatalf("status %v (exit %d, %q), stdout %q, stderr %q", r.result.GetStatus(), r.result.GetExitCode(), r.result.GetMessage(), r.stdout, r.stderr)
	}
}

// strayProcesses lists processes whose command line names runsc root and
// contains every one of words (e.g. a sandbox ID).
func strayProcesses(root string, words ...string) []string {
	flag := []byte("--root=" + root + "\x00")
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var found []string
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, flag) {
			continue
		}
		all := true
		for _, w := range words {
			all = all && bytes.Contains(b, []byte(w))
		}
		if all {
			found = append(found, filepath.Base(filepath.Dir(p))+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return found
}
