package main

// This file is one Python worker process: starting it, talking to its
// kernel and killing it. The wire protocol is described in kernel.py; cells
// run in cell.go.

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

//go:embed kernel.py
var kernelSource string

// pythonCommand is the interpreter, looked up on the agent's PATH.
const pythonCommand = "python3"

// kernelBootstrap is the worker's -c: it runs the kernel's source, which
// the agent writes to a pipe on fd 4. Passing the source itself with -c
// would make it the worker's command line in every ps listing.
const kernelBootstrap = `exec(compile(open(4, "rb").read(), "<sandboxd-kernel>", "exec"))`

// workerStartTimeout bounds the interpreter's start-up. Python starts in well
// under a second even in gVisor; a worker that is not ready after this is
// broken, and failing beats a hung Ping or Exec.
const workerStartTimeout = 30 * time.Second

// interruptGrace is how long a cell may take to unwind after SIGINT before
// the worker is killed: plenty for a KeyboardInterrupt to propagate through
// Python code, short enough that an ignored interrupt costs little.
const interruptGrace = 500 * time.Millisecond

// interruptRepeat is how often SIGINT is sent again while a stopped cell
// unwinds, in case an interrupt was swallowed (see kernel.py).
const interruptRepeat = 150 * time.Millisecond

// maxResultFrame bounds a frame from the kernel: a result carries at most a
// 64 KiB value, a class name and 16 MiB of figures as base64 (kernel.py's
// IMAGE_BYTES_MAX, 4/3 of it), so anything much larger is a broken kernel.
const maxResultFrame = 24 << 20

// worker is one running interpreter.
type worker struct {
	cmd  *exec.Cmd
	conn *net.UnixConn
	// in reads the kernel's frames: a result's length and body arrive in
	// one read instead of two (in gVisor each read is a syscall that
	// counts). The kernel sends one frame per request, so nothing is
	// read ahead of the frame asked for.
	in       *bufio.Reader
	exited   chan struct{} // closed once the process is reaped (cmd.ProcessState is set)
	reported atomic.Bool   // an Exec's result said that this worker died
	// spare holds the next cell's pipes, made while the kernel ran the
	// cell before: creating two pipes is six syscalls (pipe2, fcntl,
	// epoll_ctl each), ~0.9 ms in gVisor, off the next cell's path.
	spare chan *cellPipes
}

// frameBuffer is the size of the buffer of the kernel's frames: a result
// with a 64 KiB value fits whole.
const frameBuffer = 72 << 10

// kernelRequest asks the kernel to run one cell.
type kernelRequest struct {
	Code    string            `json:"code"`
	Env     map[string]string `json:"env"`
	Workdir string            `json:"workdir"`
}

// kernelResult is the kernel's answer for one cell; the start-up frame only
// sets Ready.
type kernelResult struct {
	Ready     bool   `json:"ready"`
	ExitCode  int32  `json:"exit_code"`
	Value     string `json:"value"`
	ErrorName string `json:"error_name"`
	// RunNanos is how long the cell's code ran, by the interpreter's clock.
	RunNanos int64 `json:"run_ns"`
	// Images are the figures the cell left open, as PNG (base64 in the
	// JSON); ImagesTruncated says some were left out over the limits.
	Images          [][]byte `json:"images"`
	ImagesTruncated bool     `json:"images_truncated"`
}

// workerLimits are rlimits of the interpreter; zero leaves one as the
// agent's.
type workerLimits struct {
	addressSpace uint64 // RLIMIT_AS
	processes    uint64 // RLIMIT_NPROC
}

// startWorker starts an interpreter and waits until its kernel is ready.
// The limits are set before its kernel can run any cell; setting the hard
// limits too keeps cells from raising them again.
func startWorker(ctx context.Context, limits workerLimits) (*worker, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("creating the worker socket: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "worker-socket")
	theirs := os.NewFile(uintptr(fds[1]), "kernel-socket")
	defer theirs.Close()
	fc, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return nil, fmt.Errorf("wrapping the worker socket: %w", err)
	}
	var pipes pipeSet
	defer pipes.closeAll()
	srcR, srcW, err := pipes.pipe()
	if err != nil {
		fc.Close()
		return nil, err
	}
	go feed(srcW, []byte(kernelSource))
	cmd := exec.Command(pythonCommand, "-c", kernelBootstrap)
	cmd.Env = kernelEnv(os.Environ())
	cmd.ExtraFiles = []*os.File{theirs, srcR} // fds 3 and 4
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		fc.Close()
		return nil, fmt.Errorf("starting %s: %w", pythonCommand, err)
	}
	srcR.Close()
	conn := fc.(*net.UnixConn)
	w := &worker{cmd: cmd, conn: conn, in: bufio.NewReaderSize(conn, frameBuffer), exited: make(chan struct{}), spare: make(chan *cellPipes, 1)}
	go func() {
		_ = cmd.Wait() // the exit status is in cmd.ProcessState
		close(w.exited)
	}()
	for _, l := range []struct {
		resource int
		v        uint64
		name     string
	}{{unix.RLIMIT_AS, limits.addressSpace, "address space"}, {unix.RLIMIT_NPROC, limits.processes, "process"}} {
		if l.v == 0 {
			continue
		}
		lim := unix.Rlimit{Cur: l.v, Max: l.v}
		if err := unix.Prlimit(cmd.Process.Pid, l.resource, &lim, nil); err != nil {
			w.kill()
			return nil, fmt.Errorf("setting the Python interpreter's %s limit: %w", l.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, workerStartTimeout)
	defer cancel()
	select {
	case r := <-w.readResult():
		if r.err == nil && r.res.Ready {
			return w, nil
		}
		w.kill()
		return nil, fmt.Errorf("starting the Python kernel: %s", w.death())
	case <-ctx.Done():
		w.kill()
		return nil, fmt.Errorf("starting the Python kernel: %w", ctx.Err())
	}
}

// dead reports whether the worker has exited.
func (w *worker) dead() bool {
	select {
	case <-w.exited:
		return true
	default:
		return false
	}
}

// kill kills the worker's process group, waits until the worker is reaped
// and closes the socket, which also ends a pending readResult.
func (w *worker) kill() {
	_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
	<-w.exited
	w.conn.Close()
	select {
	case p := <-w.spare:
		p.close()
	default:
	}
}

// sparePipesDelay is how long after a cell ends its worker makes the next cell's
// pipes: the six syscalls must not hold up the cell's result, which the
// agent sends within a millisecond, and an Exec that follows at once finds
// them ready or makes its own.
const sparePipesDelay = time.Millisecond

// cellPipes returns the pipes for a cell: the spare ones, else new ones.
func (w *worker) cellPipes() (*cellPipes, error) {
	select {
	case p := <-w.spare:
		return p, nil
	default:
		return newCellPipes()
	}
}

// makeSpare makes the next cell's pipes unless a spare set is there; a
// failure only leaves the next cell to make its own.
func (w *worker) makeSpare() {
	p, err := newCellPipes()
	if err != nil {
		return
	}
	select {
	case w.spare <- p:
	default:
		p.close()
		return
	}
	// A worker that died meanwhile keeps no spare: kill may have emptied
	// the slot already.
	select {
	case <-w.exited:
		select {
		case p := <-w.spare:
			p.close()
		default:
		}
	default:
	}
}

// death describes how the worker ended; call it once it has exited.
func (w *worker) death() string {
	<-w.exited
	ws := w.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return fmt.Sprintf("the Python interpreter was killed by signal %d (%v)", ws.Signal(), ws.Signal())
	}
	return fmt.Sprintf("the Python interpreter exited with code %d", ws.ExitStatus())
}

// exitCode is the worker's exit code, or -1 if a signal killed it.
func (w *worker) exitCode() int32 {
	<-w.exited
	ws := w.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return -1
	}
	return int32(ws.ExitStatus())
}

type readOutcome struct {
	res kernelResult
	err error
}

// readResult reads one frame from the kernel in the background.
func (w *worker) readResult() <-chan readOutcome {
	c := make(chan readOutcome, 1)
	go func() {
		var o readOutcome
		o.res, o.err = w.readFrame()
		c <- o
	}()
	return c
}

func (w *worker) readFrame() (kernelResult, error) {
	var res kernelResult
	var head [4]byte
	if _, err := io.ReadFull(w.in, head[:]); err != nil {
		return res, fmt.Errorf("reading from the kernel: %w", err)
	}
	n := binary.BigEndian.Uint32(head[:])
	if n > maxResultFrame {
		return res, fmt.Errorf("kernel frame of %d bytes, more than %d", n, maxResultFrame)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(w.in, body); err != nil {
		return res, fmt.Errorf("reading from the kernel: %w", err)
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return res, fmt.Errorf("decoding the kernel's frame: %w", err)
	}
	return res, nil
}

// send sends a cell to the kernel with the fds of its stdin, stdout and
// stderr.
func (w *worker) send(req kernelRequest, fds []int) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encoding the cell: %w", err)
	}
	// One sendmsg for the frame and the fds: the kernel reads the length
	// with the fds, then the body, which is already there.
	frame := make([]byte, 4, 4+len(body))
	binary.BigEndian.PutUint32(frame, uint32(len(body)))
	frame = append(frame, body...)
	n, _, err := w.conn.WriteMsgUnix(frame, syscall.UnixRights(fds...), nil)
	if err == nil && n < len(frame) {
		// The rest of a long cell follows as plain bytes.
		_, err = w.conn.Write(frame[n:])
	}
	if err != nil {
		return fmt.Errorf("sending the cell and its pipes: %w", err)
	}
	return nil
}

// mplBackend is matplotlib's backend in the kernel unless the template's
// env names another: Agg renders figures without a display, and the kernel
// returns what a cell left open (kernel.py), as a notebook's inline backend.
const mplBackend = "MPLBACKEND=Agg"

// kernelEnv is the interpreter's environment: the agent's, with
// mplBackend unless MPLBACKEND is set.
func kernelEnv(env []string) []string {
	for _, kv := range env {
		if strings.HasPrefix(kv, "MPLBACKEND=") {
			return env
		}
	}
	return append(env, mplBackend)
}
