// Package holder keeps a sandbox's stdio pipes open across a daemon crash,
// as containerd's shims do: the daemon spawns one small holder process per
// sandbox with duplicates of its own pipe ends (the sandbox's stdin write
// end, stdout and stderr read ends). The holder is in a session of its own,
// so nothing aimed at the daemon's process group reaches it, and it lives on
// when the daemon dies: the sandbox's agent sees no EOF. A restarted daemon
// takes the pipes back with Get over the holder's unix socket; Release ends
// a holder, and a holder ends by itself once its sandbox is gone (no writer
// is left on any pipe whose read end it holds).
//
// The holder is the daemon's own binary run again: the daemon's main calls
// Main when its first argument is Subcommand. It never reads or writes the
// pipes; it only keeps them open and hands out duplicates.
//
// The protocol is one request per connection over a SOCK_SEQPACKET socket,
// so each request and each reply is one packet: the client sends "get" or
// "release"; the holder answers "ok N" with the N held fds attached
// (SCM_RIGHTS), "ok" (and exits) or "error: WHY". Only a peer with the
// holder's own uid, root for the daemon, is served.
package holder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Subcommand is the hidden daemon subcommand that runs a holder:
// `sandboxd hold-stdio SOCKET COUNT`.
const Subcommand = "hold-stdio"

// ErrGone means no holder answers at the socket: it was released, its
// sandbox ended or it was killed (the socket is missing or stale).
var ErrGone = errors.New("holder gone")

const (
	// readyFd is the pipe on which the holder says it listens (or why it
	// cannot): exec's first extra file.
	readyFd = 3
	// firstHeldFd is where the held fds start, right after the ready pipe.
	firstHeldFd = readyFd + 1
	// maxFiles bounds the fds one holder keeps: the daemon holds three per
	// sandbox; 16 leaves room while keeping the control message that
	// carries them small (the kernel's own cap, SCM_MAX_FD, is 253).
	maxFiles = 16
	// readyMsg is what the holder writes on the ready pipe once it listens;
	// anything else is the error that stopped it.
	readyMsg = "listening"
	// maxReadyMsg bounds what Spawn reads from the ready pipe: a one-line
	// error.
	maxReadyMsg = 4 << 10
	// spawnTimeout bounds Spawn for a caller without a deadline: a holder
	// listens within milliseconds (see BenchmarkSpawn), so one that takes
	// seconds hangs.
	spawnTimeout = 5 * time.Second
)

// The requests and the success reply of the protocol.
const (
	reqGet     = "get"
	reqRelease = "release"
	replyOK    = "ok"
	replyError = "error: "
)

// executable is the binary Spawn runs as the holder: the daemon's own,
// through the kernel's link to it, which still works when an upgrade has
// replaced the file. A variable so that BenchmarkSpawn can measure the
// daemon's binary instead of the test's.
var executable = "/proc/self/exe"

// holderEnv is the holder's whole environment. One P is plenty for a
// process that sleeps in poll(2), and fewer Ps mean fewer per-P caches and
// threads.
var holderEnv = []string{"GOMAXPROCS=1"}

// Holder is a holder process that Spawn started.
type Holder struct {
	// Socket is the unix socket the holder listens on.
	Socket string
	// Pid is the holder's process ID.
	Pid  int
	done chan struct{}
}

// Done is closed once the holder has exited and been reaped: released, its
// sandbox gone, or killed. A holder that outlives the daemon is reaped by
// whoever inherits it.
func (h *Holder) Done() <-chan struct{} { return h.done }

// Spawn starts a holder of files listening on sock, whose directory the
// caller made (mode 0700), and returns once it listens. A stale socket at
// sock is replaced; a live holder there is an error. files are duplicated:
// the caller keeps its own, unchanged (non-blocking ones stay so), and
// may close them at any time. The holder ends by itself once no process
// writes to any pipe whose read end is among files; with none among them, it
// runs until released.
func Spawn(ctx context.Context, sock string, files []*os.File) (*Holder, error) {
	if len(files) == 0 || len(files) > maxFiles {
		return nil, fmt.Errorf("spawning holder %s: %d fds, want 1 to %d", sock, len(files), maxFiles)
	}
	ctx, cancel := context.WithTimeout(ctx, spawnTimeout)
	defer cancel()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("spawning holder %s: creating ready pipe: %w", sock, err)
	}
	defer readyR.Close()
	extra := []*os.File{readyW}
	defer func() { closeAll(extra) }()
	for _, f := range files {
		d, err := dup(f)
		if err != nil {
			return nil, fmt.Errorf("spawning holder %s: duplicating %s: %w", sock, f.Name(), err)
		}
		extra = append(extra, d)
	}
	cmd := &exec.Cmd{
		Path:       executable,
		Args:       []string{os.Args[0], Subcommand, sock, strconv.Itoa(len(files))},
		Env:        holderEnv,
		Dir:        "/", // not to keep the daemon's working directory busy
		ExtraFiles: extra,
		// A session of its own: the terminal's signals and those sent to
		// the daemon's process group do not reach it.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("spawning holder %s: %w", sock, err)
	}
	// Only the holder may keep the ready pipe's write end: its EOF ends
	// the wait below.
	closeAll(extra)
	extra = nil
	h := &Holder{Socket: sock, Pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(h.done)
	}()
	if err := awaitReady(ctx, readyR); err != nil {
		_ = cmd.Process.Kill()
		<-h.done
		return nil, fmt.Errorf("spawning holder %s: %w", sock, err)
	}
	return h, nil
}

// dup returns a new *os.File on f's open file description. The holder gets
// such duplicates, not f: exec takes a file's fd with Fd, which puts a file
// that Go made non-blocking (as os.Pipe does) back into blocking mode, and
// O_NONBLOCK belongs to the description, shared with f, whose reads would
// then tie up a thread and ignore deadlines. A file that NewFile finds
// non-blocking already is one that Fd leaves alone.
func dup(f *os.File) (*os.File, error) {
	sc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fd int
	var dupErr error
	if err := sc.Control(func(old uintptr) { fd, dupErr = unix.FcntlInt(old, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, dupErr
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// awaitReady reads the ready pipe to its end: the holder's readyMsg, or the
// error that stopped it.
func awaitReady(ctx context.Context, r *os.File) error {
	stop := context.AfterFunc(ctx, func() { _ = r.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	msg, err := io.ReadAll(io.LimitReader(r, maxReadyMsg))
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("waiting for the holder to listen: %w", ctx.Err())
	case err != nil:
		return fmt.Errorf("reading the ready pipe: %w", err)
	case string(msg) == readyMsg:
		return nil
	case len(msg) == 0:
		return errors.New("the holder exited before it listened")
	}
	return errors.New(string(msg))
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
