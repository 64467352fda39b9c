package main

// This file keeps one bash started ahead of time. Starting bash costs ~10 ms
// in gVisor (fork, exec, dynamic linking), more than most scripts take to
// run, so the agent keeps a spare bash blocked on a pipe: a bash Exec that
// asks for nothing the spare cannot give (another working directory,
// stdin) hands it its script and goes on as with a bash of its own, and a
// new spare starts in the background. The script is written into an
// in-memory file the spare sources; it starts by closing the spare's extra
// fds and setting the Exec's process limit and environment, on the
// script's first line so that bash's line numbers stay right.

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// spareBootstrap is the spare's program: wait for the go byte on fd 4 (EOF
// means the spare is not needed), then run the script in the in-memory
// file on fd 3. bash reads a sourced file whole, in one go.
const spareBootstrap = `read -r -n 1 -u 4 _ || exit 0; . /dev/fd/3`

// spareScriptFD and spareGateFD are the spare's script file and go pipe.
const (
	spareScriptFD = 3
	spareGateFD   = 4
)

// shellName matches the variable names the prologue can export.
var shellName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// spareBash is a bash waiting for a script.
type spareBash struct {
	cmd              *exec.Cmd
	dir              string   // its working directory
	script           *os.File // the memfd on the spare's fd 3
	gate             *os.File // the write end of the pipe on its fd 4
	stdoutR, stderrR *os.File
	exited           chan struct{} // closed once the spare is reaped
}

// spareDelay is how long the agent waits, once no request runs, before it
// starts the next spare: starting bash takes ~10 ms of CPU in gVisor, and
// on a small host that would slow the Exec that follows a bash Exec at
// once (measured: Python Exec p50 +1 ms when bash and Python alternate).
// A tool loop's pauses between calls are far longer.
const spareDelay = 50 * time.Millisecond

// spares keeps at most one spare bash.
type spares struct {
	log *slog.Logger
	dir string // the spares' working directory: the workspace
	// idle reports whether no request is in progress: spares start then.
	idle func() bool

	mu        sync.Mutex
	cur       *spareBash // nil while none is ready
	busy      bool       // a spare is being started
	scheduled bool       // a later start is scheduled
	down      bool       // shutdown was called
}

// take returns the ready spare, if any and still alive, and schedules the
// next one for when the agent is idle.
func (s *spares) take() *spareBash {
	s.mu.Lock()
	sp := s.cur
	s.cur = nil
	s.mu.Unlock()
	s.refillWhenIdle()
	if sp == nil {
		return nil
	}
	select {
	case <-sp.exited: // killed by the code of an earlier Exec, say
		sp.discard()
		return nil
	default:
		return sp
	}
}

// refillWhenIdle starts the next spare spareDelay after the agent has no
// request in progress.
func (s *spares) refillWhenIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.scheduled || s.down {
		return
	}
	s.scheduled = true
	var check func()
	check = func() {
		if !s.idle() {
			time.AfterFunc(spareDelay, check)
			return
		}
		s.mu.Lock()
		s.scheduled = false
		s.mu.Unlock()
		s.refill()
	}
	time.AfterFunc(spareDelay, check)
}

// refill starts a spare in the background unless one is ready or coming.
func (s *spares) refill() {
	s.mu.Lock()
	if s.cur != nil || s.busy || s.down {
		s.mu.Unlock()
		return
	}
	s.busy = true
	s.mu.Unlock()
	go func() {
		sp, err := startSpare(s.dir)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.busy = false
		if err != nil {
			s.log.Warn("starting a spare bash; bash Execs start their own", "err", err)
			return
		}
		if s.down {
			sp.discard()
			return
		}
		s.cur = sp
	}()
}

// shutdown kills the spare and starts no other.
func (s *spares) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = true
	if s.cur != nil {
		s.cur.discard()
		s.cur = nil
	}
}

// startSpare starts a bash that waits for its script, in its own process
// group, with the agent's environment, in dir.
func startSpare(dir string) (_ *spareBash, err error) {
	var pipes pipeSet
	defer func() {
		if err != nil {
			pipes.closeAll()
		}
	}()
	fd, err := unix.MemfdCreate("sandboxd-script", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("creating the script file: %w", err)
	}
	script := os.NewFile(uintptr(fd), "script")
	pipes.files = append(pipes.files, script)
	gateR, gate, err := pipes.pipe()
	if err != nil {
		return nil, err
	}
	stdoutR, stdoutW, stderrR, stderrW, err := pipes.outputPipes()
	if err != nil {
		return nil, err
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	pipes.files = append(pipes.files, null)
	cmd := &exec.Cmd{
		Path:        bashPath,
		Args:        []string{"bash", "-c", spareBootstrap},
		Dir:         dir,
		Env:         os.Environ(),
		Stdin:       null,
		Stdout:      stdoutW,
		Stderr:      stderrW,
		ExtraFiles:  []*os.File{script, gateR}, // fds 3 and 4
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting bash: %w", err)
	}
	for _, f := range []*os.File{gateR, stdoutW, stderrW, null} {
		f.Close() // bash has its own copies now
	}
	sp := &spareBash{cmd: cmd, dir: dir, script: script, gate: gate, stdoutR: stdoutR, stderrR: stderrR, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(sp.exited)
	}()
	return sp, nil
}

// fits reports whether the spare can run job: the job runs in the spare's
// working directory, has no stdin, and the prologue can export its
// variables.
func (sp *spareBash) fits(job *execJob) bool {
	if job.dir != sp.dir || len(job.stdin) > 0 {
		return false
	}
	for k := range job.env {
		if !shellName.MatchString(k) {
			return false
		}
	}
	return true
}

// hand gives the spare job's script and lets it go. On failure the spare
// is discarded and the caller starts a bash of its own.
func (sp *spareBash) hand(job *execJob, processes uint64) error {
	text := spareProlog(job.codeEnv(), processes) + job.code
	if _, err := sp.script.WriteAt([]byte(text), 0); err != nil {
		sp.discard()
		return fmt.Errorf("writing the script: %w", err)
	}
	if err := sp.script.Truncate(int64(len(text))); err != nil {
		sp.discard()
		return fmt.Errorf("writing the script: %w", err)
	}
	_, err := sp.gate.Write([]byte{'\n'})
	sp.gate.Close()
	sp.script.Close()
	if err != nil {
		sp.discard()
		return fmt.Errorf("starting the spare bash: %w", err)
	}
	return nil
}

// discard kills the spare and frees its files.
func (sp *spareBash) discard() {
	killGroup(sp.cmd.Process.Pid)
	<-sp.exited
	for _, f := range []*os.File{sp.script, sp.gate, sp.stdoutR, sp.stderrR} {
		f.Close()
	}
}

// spareProlog is the first line of a spare's script, without a newline:
// close the spare's extra fds, set the process limit, export the Exec's
// variables. Values are ANSI-C quoted, so that a newline in one does not
// move the script's line numbers.
func spareProlog(env map[string]string, processes uint64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "exec %d<&- %d<&-; ", spareScriptFD, spareGateFD)
	if processes > 0 {
		fmt.Fprintf(&b, "ulimit -u %d; ", processes)
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%s; ", k, ansiQuote(env[k]))
	}
	return b.String()
}

// ansiQuote quotes s as a bash $'...' string: backslash and quote escaped,
// every byte outside printable ASCII written as \xHH.
func ansiQuote(s string) string {
	var b strings.Builder
	b.WriteString("$'")
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' || c == '\'':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c >= 0x20 && c < 0x7f:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "\\x%02x", c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}
