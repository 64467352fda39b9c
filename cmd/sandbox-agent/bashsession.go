package main

// This file runs LANGUAGE_BASH_SESSION Execs: one long-lived bash per
// sandbox, like the Python interpreter, in which the working directory,
// variables, functions, aliases and shell options persist from one Exec to
// the next.
//
// The session is an interactive bash (-i, without line editing, history or
// job control) reading command lines from a pipe: interactive, so that an
// error such as ${x:?} or a syntax error ends the command, not the session,
// and so that an interrupt stops the whole command line, through functions
// and loops, and brings bash back to its prompt. Each Exec's code is written
// to an in-memory file that the agent's one-line command sources at the top
// level (so `declare` makes globals and aliases apply to later lines), with
// the Exec's stdin, after setting the Exec's token. The file's first line,
// before the code, sets the Exec's env and workdir. Before each prompt bash
// runs PROMPT_COMMAND, which,
// when a token is set, undoes the Exec's env and workdir, prints an end
// record with the token, the code's exit status and $! on the session's
// stdout and stderr pipes, and unsets the token: once both records are in,
// both streams are drained for the Exec. The token is random per Exec, so no
// output can end an Exec by accident (code that reads the session's
// variables could forge one; it can wreck its own session anyway), and
// PROMPT_COMMAND and the session's functions are read-only. Every fd
// redirection costs bash four to eight syscalls, and a syscall costs tens
// of microseconds in gVisor, so an Exec uses few: the session's own fds
// (200-204) stay open in the code's processes rather than being closed and
// restored around each Exec. For the same reason the session's readers
// send the Exec's output to its stream themselves rather than through
// output (output.go) and a pair of pipes per Exec: while a send is in
// flight, bash's pipe gathers what follows, so output still leaves in few
// large messages and a slow client still holds bash back.
//
// Semantics:
//   - env: each variable is exported for this Exec only; afterwards it gets
//     back its earlier value and export attribute, or is unset if it was
//     unset, even if the code changed it. Names must be shell identifiers.
//   - workdir: the Exec runs there and the session goes back to its earlier
//     directory afterwards; without workdir the Exec runs in the session's
//     directory (the workspace at first) and a cd persists.
//   - stdin: the code reads the request's bytes from an in-memory file
//     (seekable, not a pipe), or /dev/null without.
//   - output: what the session's processes write while no Exec runs (a
//     background job's) is discarded; while an Exec runs it is that Exec's.
//     Like everything else in the session, an `exec >file` persists.
//   - timeout, cancellation, low memory: the agent interrupts bash (SIGUSR2,
//     whose trap sends bash SIGINT, unless bash is at its prompt) and kills
//     what the Exec started: its processes carry the Exec's marker, and the
//     session's subshells (forks of bash) carry the session's marker. Forks
//     that were running in the background when an earlier Exec ended, and
//     their children, are kept. If bash is not back at its prompt within
//     sessionStopGrace, the whole session is killed and the result says
//     state_lost. An interrupted command's stderr ends with the newline an
//     interactive bash prints on an interrupt.
//   - a session that ended (exit, set -e, a signal) is reported by the Exec
//     that saw it (state_lost) and the next Exec gets a fresh one; a death
//     between Execs is reported by the next Exec, as for the Python
//     interpreter. restart_session kills the session first (state_lost when
//     there was one).

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// The session's own fds after its bootstrap: high, so that they do not
// clash with the code's `exec 3>file` and the like. The bootstrap moves
// them there from 3-6, where the agent passes them, and opens /dev/null.
const (
	sessionCodeFD  = 200 // the code file
	sessionStdinFD = 201 // the stdin file
	sessionOutFD   = 202 // the stdout pipe: end records
	sessionErrFD   = 203 // the stderr pipe: end records
	sessionNullFD  = 204 // /dev/null: stdin without request stdin, and where restore errors go
)

// sessionBootstrap is sourced once at start (from fd 3). It turns off what
// an interactive shell adds (history, ! expansion, job control, prompts,
// mail checks), defines the helpers of the Exec's first line and
// PROMPT_COMMAND, makes them read-only, sets the interrupt trap and moves
// the session's fds up. The helpers turn off the code's set -eux for
// themselves at once: set -x then shows a line or two of them, where a
// redirection of their stderr would cost syscalls in every Exec. A prompt
// without a token (bash was interrupted at its prompt) prints nothing. The
// agent appends the token of the start-up round.
var sessionBootstrap = strings.NewReplacer(
	"{code}", strconv.Itoa(sessionCodeFD), "{stdin}", strconv.Itoa(sessionStdinFD), "{out}", strconv.Itoa(sessionOutFD),
	"{err}", strconv.Itoa(sessionErrFD), "{null}", strconv.Itoa(sessionNullFD),
).Replace(`set +o history +o histexpand +o monitor
unset -v HISTFILE MAIL MAILPATH MAILCHECK
PS0= PS1= PS2=
shopt -s expand_aliases
__sandboxd_undo=()
__sandboxd_env() {
	local - __sandboxd_x
	set +eux
	while (($# >= 2)); do
		if [[ -v $1 ]]; then
			__sandboxd_x=0
			[[ ${!1@a} == *x* ]] && __sandboxd_x=1
			__sandboxd_undo+=("$1" 1 "$__sandboxd_x" "${!1}")
		else
			__sandboxd_undo+=("$1" 0 0 "")
		fi
		builtin export "$1=$2"
		shift 2
	done
	return 0
}
__sandboxd_cd() {
	__sandboxd_dir=${PWD-} __sandboxd_olddir=${OLDPWD-}
	builtin cd -- "$1"
}
__sandboxd_restore() {
	local __sandboxd_i __sandboxd_n
	for ((__sandboxd_i = ${#__sandboxd_undo[@]} - 4; __sandboxd_i >= 0; __sandboxd_i -= 4)); do
		__sandboxd_n=${__sandboxd_undo[__sandboxd_i]}
		if ((__sandboxd_undo[__sandboxd_i + 1])); then
			builtin printf -v "$__sandboxd_n" %s "${__sandboxd_undo[__sandboxd_i + 3]}" 2>&{null}
			if ((__sandboxd_undo[__sandboxd_i + 2])); then
				builtin export "$__sandboxd_n"
			else
				builtin export -n "$__sandboxd_n"
			fi
		else
			builtin unset -v "$__sandboxd_n" 2>&{null}
		fi
	done
	__sandboxd_undo=()
	if [[ -v __sandboxd_dir ]]; then
		builtin cd -- "$__sandboxd_dir" 2>&{null}
		OLDPWD=$__sandboxd_olddir
		builtin unset -v __sandboxd_dir __sandboxd_olddir
	fi
}
__sandboxd_prompt() {
	local __sandboxd_s=$? __sandboxd_busy=1 -
	set +eux
	[[ -v __sandboxd_token ]] || return 0
	__sandboxd_restore
	builtin printf '\036sandboxd-end %s %d %s\n' "$__sandboxd_token" "$__sandboxd_s" "${!-}" >&{out}
	builtin printf '\036sandboxd-end %s %d %s\n' "$__sandboxd_token" "$__sandboxd_s" "${!-}" >&{err}
	builtin unset -v __sandboxd_token
	PS0= PS1= PS2=
}
readonly -f __sandboxd_env __sandboxd_cd __sandboxd_restore __sandboxd_prompt
declare -r PROMPT_COMMAND=__sandboxd_prompt
trap '[[ -v __sandboxd_busy || ! -v __sandboxd_token ]] || builtin kill -INT $$' USR2
exec {code}<&3 {stdin}<&4 {out}>&5 {err}>&6 {null}<>/dev/null 3<&- 4<&- 5>&- 6>&-
`)

// sessionStartLine makes bash source the bootstrap.
const sessionStartLine = ". /dev/fd/3\n"

// sessionInterrupt is the signal whose trap interrupts the session's
// command. The trap sends bash SIGINT, which stops an interactive shell's
// command line wherever it is, but only while an Exec's token is set, that
// is while its code runs (a repeat catches the moment before): bash 5.2
// crashes when that SIGINT comes while it waits at its prompt. USR2 is one
// that code hardly ever traps itself.
const sessionInterrupt = syscall.SIGUSR2

// sessionStopGrace is how long bash may take to come back to its prompt
// after a stopped Exec's processes were killed: it needs milliseconds; one
// that is not back by then ignores the interrupt (its own INT trap), and
// the whole session is killed instead.
const sessionStopGrace = time.Second

// sessionStartTimeout bounds the session's start: bash starts in tens of
// milliseconds even in gVisor; one that is not ready after this is broken.
const sessionStartTimeout = 10 * time.Second

// recordPrefix starts an end record: an ASCII record separator, which
// output hardly ever holds, then a name. The token, the exit status and $!
// follow, then a newline.
const recordPrefix = "\x1esandboxd-end "

// maxRecord bounds a record after its prefix (a 32-character token, an exit
// status, a pid, spaces): a longer line is output, not a record.
const maxRecord = 64

// tokenBytes is the size of an Exec's random token (32 hex digits in the
// record): unguessable.
const tokenBytes = 16

// chattyReads is how many small reads in a row make a session stream
// linger between reads (outputLinger), as output does: a loop of small
// prints then leaves in few reads and writes. Fewer small reads, as most
// Execs make, do not linger, which would delay the end record.
const chattyReads = 8

// stateGone tells what a lost session took with it.
const stateGone = "earlier variables, functions, aliases and the working directory are gone"

// errSessionGone means that an Exec could not even be handed to the
// session: it had ended already, and the code did not run.
var errSessionGone = errors.New("the bash session ended before the code started")

// bashSessions owns the sandbox's bash session and runs session Execs on
// it one at a time, in arrival order.
type bashSessions struct {
	log   *slog.Logger
	dir   string     // where a new session starts: the workspace
	queue turnstile  // serializes session Execs
	mu    sync.Mutex // held while a session starts or is replaced
	cur   *bashSession
	down  bool // shutdown was called: start no session
}

func newBashSessions(workspace string, log *slog.Logger) *bashSessions {
	return &bashSessions{log: log, dir: workspace}
}

// exec waits for its turn, then runs job on the session, starting or
// restarting it first as needed. Time spent waiting counts against the
// job's timeout.
func (b *bashSessions) exec(ctx context.Context, job *execJob, restart bool, processes uint64, stream grpc.ServerStreamingServer[sandboxv1.ExecEvent]) (*sandboxv1.ExecResult, error) {
	for k := range job.env {
		if !shellName.MatchString(k) {
			return nil, status.Errorf(codes.InvalidArgument, "env %q: a bash session can only export shell identifiers (letters, digits and '_', not starting with a digit)", k)
		}
	}
	waitCtx, cancel := ctx, context.CancelFunc(func() {})
	if !job.deadline.IsZero() {
		waitCtx, cancel = context.WithDeadline(ctx, job.deadline)
	}
	defer cancel()
	if err := b.queue.acquire(waitCtx); err != nil {
		return sessionNotStarted(ctx, waitCtx, job, err)
	}
	defer b.queue.release()
	var lost []string
	for retried := false; ; retried = true {
		s, why, err := b.ensure(waitCtx, restart, processes)
		if err != nil {
			return sessionNotStarted(ctx, waitCtx, job, err)
		}
		restart = false
		if why != "" {
			lost = append(lost, why)
		}
		job.clock.mark("agent: wait for the bash session")
		res, err := s.run(ctx, job, stream)
		if errors.Is(err, errSessionGone) && !retried {
			// It is dying, maybe not reaped yet: ensure replaces it and
			// notes its death.
			s.kill("")
			continue
		}
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if len(lost) > 0 && !res.StateLost {
			res.StateLost = true
			note := strings.Join(lost, "; ") + "; " + stateGone
			if res.Message != "" {
				note += "; " + res.Message
			}
			res.Message = note
		}
		return res, nil
	}
}

// ensure returns a live session, starting one if there is none, the last
// one ended or restart asks for a fresh one. why is non-empty when state
// was lost that no earlier Exec reported.
func (b *bashSessions) ensure(ctx context.Context, restart bool, processes uint64) (s *bashSession, why string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		return nil, "", status.Error(codes.Unavailable, "the agent is shutting down")
	}
	if old := b.cur; old != nil {
		switch {
		case old.dead() && !old.reported:
			why = old.death() + " between Execs and was started afresh for this one"
		case old.dead():
		case restart:
			why = "the bash session was started afresh (restart_session)"
		default:
			return old, "", nil
		}
		old.kill("")
		b.cur = nil
	}
	s, err = startSession(ctx, b.dir, processes)
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", status.FromContextError(ctx.Err()).Err()
		}
		if status.Code(err) == codes.Unknown {
			b.log.Error("starting the bash session", "err", err)
			err = status.Error(codes.Internal, err.Error())
		}
		return nil, "", err
	}
	b.log.Info("bash session started", "pid", s.cmd.Process.Pid)
	b.cur = s
	return s, why, nil
}

// shutdown kills the session, if any, and keeps new ones from starting.
func (b *bashSessions) shutdown() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down = true
	if b.cur != nil {
		b.cur.kill("")
	}
}

// sessionNotStarted answers an Exec whose code never started because of
// err: a TIMEOUT result if its deadline passed while it waited, else an
// error.
func sessionNotStarted(ctx, waitCtx context.Context, job *execJob, err error) (*sandboxv1.ExecResult, error) {
	switch {
	case ctx.Err() != nil:
		return nil, status.FromContextError(ctx.Err()).Err()
	case errors.Is(waitCtx.Err(), context.DeadlineExceeded):
		return &sandboxv1.ExecResult{ExitCode: -1, Status: sandboxv1.ExecStatus_EXEC_STATUS_TIMEOUT,
			Message: fmt.Sprintf("timed out after %v before the command started (earlier session Execs or the session's start took the time)", job.deadline.Sub(job.start))}, nil
	default:
		return nil, err
	}
}

// bashSession is one running session bash.
type bashSession struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once bash is reaped (cmd.ProcessState is set)
	// marker is in the environment bash started with, so in that of every
	// fork of it (subshells, which run no new program).
	marker   string
	code     *os.File // memfd: the code file (bash's sessionCodeFD)
	stdin    *os.File // memfd: the stdin file (bash's sessionStdinFD)
	control  *os.File // the write end of bash's stdin
	streams  [2]*sessionStream
	killOnce sync.Once

	// The fields below are used by the Exec holding the turn only.

	reported bool   // an Exec's result said that this session ended
	lastBg   string // $! after the last Exec
	// protected are the forks of bash that were running after an Exec that
	// started background jobs: a stopped Exec kills neither them nor their
	// children. snapshot is closed once protected is up to date.
	protected map[int]bool
	snapshot  chan struct{}
}

// startSession starts a session bash in dir, under the processes limit
// when non-zero, and waits until it has run its bootstrap.
func startSession(ctx context.Context, dir string, processes uint64) (_ *bashSession, err error) {
	var pipes pipeSet
	defer func() {
		if err != nil {
			pipes.closeAll()
		}
	}()
	token, err := newToken()
	if err != nil {
		return nil, err
	}
	code, err := newMemfd("sandboxd-session-code", &pipes)
	if err != nil {
		return nil, err
	}
	if _, err := code.WriteAt([]byte(sessionBootstrap+tokenLine(token)+"\n"), 0); err != nil {
		return nil, fmt.Errorf("writing the session's bootstrap: %w", err)
	}
	stdin, err := newMemfd("sandboxd-session-stdin", &pipes)
	if err != nil {
		return nil, err
	}
	ctlR, ctlW, err := pipes.pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, errR, errW, err := pipes.outputPipes()
	if err != nil {
		return nil, err
	}
	marker := newMarker()
	cmd := &exec.Cmd{
		Path: bashPath,
		Args: []string{"bash", "--noprofile", "--norc", "--noediting", "-i"},
		Dir:  dir,
		// An empty HISTFILE keeps an interactive bash from loading history.
		Env:         mergeEnv(map[string]string{markerVar: marker, "HISTFILE": ""}),
		Stdin:       ctlR,
		Stdout:      outW,
		Stderr:      errW,
		ExtraFiles:  []*os.File{code, stdin, outW, errW}, // fds 3-6
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.EAGAIN) {
			return nil, status.Errorf(codes.ResourceExhausted, "cannot start the bash session: the sandbox's processes and threads are at its limit (limits.processes): end some first")
		}
		return nil, fmt.Errorf("starting the bash session: %w", err)
	}
	for _, f := range []*os.File{ctlR, outW, errW} {
		f.Close() // bash has its own copies now
	}
	s := &bashSession{cmd: cmd, exited: make(chan struct{}), marker: marker, code: code, stdin: stdin, control: ctlW,
		streams: [2]*sessionStream{newSessionStream(outR), newSessionStream(errR)}}
	go func() {
		_ = cmd.Wait() // the exit status is in cmd.ProcessState
		close(s.exited)
	}()
	for _, st := range s.streams {
		go st.read()
	}
	if processes > 0 {
		lim := unix.Rlimit{Cur: processes, Max: processes}
		if err := unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_NPROC, &lim, nil); err != nil {
			s.kill("")
			return nil, fmt.Errorf("setting the bash session's process limit: %w", err)
		}
	}
	records := s.attach(token, nil)
	defer s.detach()
	if _, err := s.control.WriteString(sessionStartLine); err != nil {
		s.kill("")
		return nil, fmt.Errorf("starting the bash session: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, sessionStartTimeout)
	defer cancel()
	for n := 0; n < len(s.streams); n++ {
		select {
		case <-records:
		case <-s.exited:
			s.kill("")
			return nil, fmt.Errorf("starting the bash session: %s", s.death())
		case <-ctx.Done():
			s.kill("")
			return nil, fmt.Errorf("starting the bash session: %w", ctx.Err())
		}
	}
	return s, nil
}

// newMemfd returns a new in-memory file, which pipes closes on failure.
func newMemfd(name string, pipes *pipeSet) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	pipes.files = append(pipes.files, f)
	return f, nil
}

// newToken returns a fresh random token for an end record.
func newToken() (string, error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("making an end record token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// tokenLine sets the token that PROMPT_COMMAND prints in the end record.
func tokenLine(token string) string { return "__sandboxd_token=" + token }

// sessionLine is the command line of an Exec: set its token, which also
// tells the interrupt trap that code runs (here, not in the code file,
// where a syntax error on the code's first line would take it along), then
// source the code file at the top level, with the Exec's stdin, which bash
// restores afterwards, also after an interrupt: its own stdin is the
// command pipe. The backslash keeps aliases out.
func sessionLine(token string, stdin bool) string {
	in := fmt.Sprintf("0<&%d", sessionNullFD)
	if stdin {
		in = fmt.Sprintf("0</dev/fd/%d", sessionStdinFD)
	}
	return fmt.Sprintf("%s; \\builtin . /dev/fd/%d %s\n", tokenLine(token), sessionCodeFD, in)
}

// sessionPrologue is put before the code, on its first line so that bash's
// line numbers stay right: export the Exec's variables (values ANSI-C
// quoted, so a newline in one keeps the line; a read-only one says so on
// stderr), and cd to its workdir, ending the code with status 1 if that
// fails.
func sessionPrologue(job *execJob) string {
	var b strings.Builder
	b.WriteString("__sandboxd_env")
	env := job.codeEnv()
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s %s", k, ansiQuote(env[k]))
	}
	b.WriteString("; ")
	if job.dir != "" {
		fmt.Fprintf(&b, "__sandboxd_cd %s || return; ", ansiQuote(job.dir))
	}
	return b.String()
}

// rewrite makes f hold exactly data, read from its start.
func rewrite(f *os.File, data []byte) error {
	if _, err := f.WriteAt(data, 0); err != nil {
		return err
	}
	if err := f.Truncate(int64(len(data))); err != nil {
		return err
	}
	// bash's fd shares the file's offset with ours.
	_, err := f.Seek(0, 0)
	return err
}

// run runs job as the session's next command, streaming its output to
// stream, and returns its result. When the deadline passes, ctx ends or
// memory runs low it stops the command, and if bash does not come back to
// its prompt within sessionStopGrace it kills the session. A result with
// StateLost set means the session is dead.
func (s *bashSession) run(ctx context.Context, job *execJob, stream grpc.ServerStreamingServer[sandboxv1.ExecEvent]) (*sandboxv1.ExecResult, error) {
	if s.snapshot != nil {
		<-s.snapshot
	}
	token, err := newToken()
	if err != nil {
		return nil, err
	}
	if err := rewrite(s.code, []byte(sessionPrologue(job)+job.code)); err != nil {
		return nil, fmt.Errorf("writing the code file: %w", err)
	}
	if len(job.stdin) > 0 {
		if err := rewrite(s.stdin, job.stdin); err != nil {
			return nil, fmt.Errorf("writing the stdin file: %w", err)
		}
	}
	sink := &execSink{stream: stream}
	records := s.attach(token, sink)
	// Whatever way the Exec ends, nothing is sent after its result.
	defer sink.close()
	if _, err := s.control.WriteString(sessionLine(token, len(job.stdin) > 0)); err != nil {
		s.detach()
		return nil, fmt.Errorf("%w (%v)", errSessionGone, err)
	}
	job.clock.mark("agent: hand the code to the bash session")

	timeout, stopTimer := job.timer()
	defer stopTimer()
	done, memLow := ctx.Done(), job.memLow
	var stopped sandboxv1.ExecStatus // TIMEOUT, KILLED or OOM_KILLED once we interrupted
	var grace <-chan time.Time
	var repeat *time.Ticker // repeats the interrupt while bash comes back
	var again <-chan time.Time
	defer func() {
		if repeat != nil {
			repeat.Stop()
		}
	}()
	interrupt := func(why sandboxv1.ExecStatus) {
		stopped = why
		timeout, done, memLow = nil, nil, nil
		_ = syscall.Kill(s.cmd.Process.Pid, sessionInterrupt)
		within(func() { s.killExec(job.marker) })
		repeat = time.NewTicker(interruptRepeat)
		again = repeat.C
		grace = time.After(sessionStopGrace)
	}
	var fields []string
	for n := 0; n < len(s.streams); {
		select {
		case f := <-records:
			if fields == nil {
				fields = f
			}
			n++
		case <-s.exited:
			s.kill(job.marker) // what is left of its processes; drains the streams
			s.detach()
			return s.lost(stopped, s.exitCode(), s.death()), nil
		case <-timeout:
			interrupt(sandboxv1.ExecStatus_EXEC_STATUS_TIMEOUT)
		case <-done:
			interrupt(sandboxv1.ExecStatus_EXEC_STATUS_KILLED)
		case <-memLow:
			interrupt(sandboxv1.ExecStatus_EXEC_STATUS_OOM_KILLED)
		case <-again:
			_ = syscall.Kill(s.cmd.Process.Pid, sessionInterrupt)
		case <-grace:
			s.kill(job.marker)
			s.detach()
			return s.lost(stopped, -1, stopReason(stopped, job)+fmt.Sprintf(" and bash did not come back to its prompt within %v: the bash session was killed", sessionStopGrace)), nil
		}
	}
	job.clock.mark("bash session: run the code")
	s.noteBackground(fields)
	return sessionResult(fields, stopped, job), nil
}

// stopReason says why an Exec was stopped.
func stopReason(st sandboxv1.ExecStatus, job *execJob) string {
	switch st {
	case sandboxv1.ExecStatus_EXEC_STATUS_KILLED:
		return "cancelled"
	case sandboxv1.ExecStatus_EXEC_STATUS_OOM_KILLED:
		return memLowMessage + "the command was stopped"
	default:
		return fmt.Sprintf("timed out after %v", job.deadline.Sub(job.start))
	}
}

// sessionResult maps an end record's fields (token, exit status, $!) to an
// ExecResult; stopped says whether the command was interrupted.
func sessionResult(fields []string, stopped sandboxv1.ExecStatus, job *execJob) *sandboxv1.ExecResult {
	if stopped != sandboxv1.ExecStatus_EXEC_STATUS_UNSPECIFIED {
		return &sandboxv1.ExecResult{ExitCode: -1, Status: stopped,
			Message: stopReason(stopped, job) + ": the command and the processes it started were killed; the bash session and its state are kept"}
	}
	code, err := strconv.Atoi(fields[1])
	switch {
	case err != nil:
		return &sandboxv1.ExecResult{ExitCode: -1, Status: sandboxv1.ExecStatus_EXEC_STATUS_ERROR, Message: fmt.Sprintf("the bash session reported exit status %q", fields[1])}
	case code != 0:
		return &sandboxv1.ExecResult{ExitCode: int32(code), Status: sandboxv1.ExecStatus_EXEC_STATUS_ERROR, Message: fmt.Sprintf("exit code %d", code)}
	default:
		return &sandboxv1.ExecResult{Status: sandboxv1.ExecStatus_EXEC_STATUS_OK}
	}
}

// lost is the result of an Exec whose session is dead, with its exit code;
// st is the status, or UNSPECIFIED to derive it from the code. It marks the
// death as reported.
func (s *bashSession) lost(st sandboxv1.ExecStatus, code int32, why string) *sandboxv1.ExecResult {
	s.reported = true
	if st == sandboxv1.ExecStatus_EXEC_STATUS_UNSPECIFIED {
		switch {
		case code < 0:
			st = sandboxv1.ExecStatus_EXEC_STATUS_KILLED
		case code > 0:
			st = sandboxv1.ExecStatus_EXEC_STATUS_ERROR
		default:
			st = sandboxv1.ExecStatus_EXEC_STATUS_OK
		}
	}
	return &sandboxv1.ExecResult{ExitCode: code, Status: st, StateLost: true,
		Message: why + "; the next Exec starts a new session: " + stateGone}
}

// dead reports whether bash has exited.
func (s *bashSession) dead() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// death describes how bash ended; call it once it has exited.
func (s *bashSession) death() string {
	<-s.exited
	ws := s.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return fmt.Sprintf("the bash session was killed by signal %d (%v)", ws.Signal(), ws.Signal())
	}
	return fmt.Sprintf("the bash session exited with code %d", ws.ExitStatus())
}

// exitCode is bash's exit code, or -1 if a signal killed it.
func (s *bashSession) exitCode() int32 {
	<-s.exited
	ws := s.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return -1
	}
	return int32(ws.ExitStatus())
}

// kill kills the session once: bash's process group, then what carries the
// session's marker (forks of bash that left the group) or marker, the
// Exec's, when given. It waits up to drainGrace for the output pipes to
// reach EOF, so that the Exec attached gets the last of its output, then
// closes the session's files.
func (s *bashSession) kill(marker string) {
	s.killOnce.Do(func() {
		killGroup(s.cmd.Process.Pid)
		<-s.exited
		within(func() {
			sweep(s.marker)
			if marker != "" {
				sweep(marker)
			}
		})
		t := time.NewTimer(drainGrace)
		defer t.Stop()
		for _, st := range s.streams {
			select {
			case <-st.eof:
			case <-t.C:
			}
		}
		for _, st := range s.streams {
			st.r.Close()
		}
		for _, f := range []*os.File{s.code, s.stdin, s.control} {
			f.Close()
		}
	})
}

// killExec kills the processes of the Exec with marker: those that carry
// the marker, and the forks of bash (subshells) but those that an earlier
// Exec left running in the background and their children.
func (s *bashSession) killExec(marker string) {
	bash := s.cmd.Process.Pid
	execEntry, sessionEntry := markerEntry(marker), markerEntry(s.marker)
	killWhere(func(pid int) bool {
		if pid == bash {
			return false
		}
		env := environ(pid)
		if bytes.Contains(env, execEntry) {
			return true
		}
		return bytes.Contains(env, sessionEntry) && !s.isProtected(pid)
	})
}

// isProtected reports whether pid or one of its ancestors below bash is a
// protected fork.
func (s *bashSession) isProtected(pid int) bool {
	for pid > 1 && pid != s.cmd.Process.Pid {
		if s.protected[pid] {
			return true
		}
		pid = parentOf(pid)
	}
	return false
}

// noteBackground protects, after an Exec that changed $! (it started
// background jobs), the forks of bash running now. The scan of /proc runs
// in the background; the next Exec waits for it.
func (s *bashSession) noteBackground(fields []string) {
	bg := ""
	if len(fields) > 2 {
		bg = fields[2]
	}
	if bg == s.lastBg {
		return
	}
	s.lastBg = bg
	ready := make(chan struct{})
	s.snapshot = ready
	go func() {
		defer close(ready)
		forks := make(map[int]bool)
		entry := markerEntry(s.marker)
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err == nil && pid != s.cmd.Process.Pid && bytes.Contains(environ(pid), entry) {
				forks[pid] = true
			}
		}
		s.protected = forks
	}()
}

// markerEntry is how markerVar=marker appears in an environ listing
// prefixed with a NUL (see environ).
func markerEntry(marker string) []byte {
	return []byte("\x00" + markerVar + "=" + marker + "\x00")
}

// environ returns pid's initial environment, NUL-separated and starting
// with a NUL, or nil.
func environ(pid int) []byte {
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return nil
	}
	return append([]byte{0}, env...)
}

// parentOf returns pid's parent from /proc/PID/stat, 0 if it is gone.
func parentOf(pid int) int {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The parent follows the state, after the command name in parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// attach makes the Exec with token the one that gets the session's output,
// in sink (nil: discard it). Each stream sends the fields of its end record
// (token, exit status, $!) on the returned channel and stops passing output
// on.
func (s *bashSession) attach(token string, sink *execSink) <-chan []string {
	records := make(chan []string, len(s.streams))
	for i, st := range s.streams {
		t := &streamTurn{token: token, sink: sink, stderr: i == 1, records: records}
		st.mu.Lock()
		st.turn = t
		st.mu.Unlock()
	}
	return records
}

// detach makes the session's output go nowhere until the next attach.
func (s *bashSession) detach() {
	for _, st := range s.streams {
		st.mu.Lock()
		st.turn = nil
		st.mu.Unlock()
	}
}

// sessionStream is the session's stdout or stderr pipe, read for the
// session's lifetime and passed on to the attached Exec up to its end
// record.
type sessionStream struct {
	r   *os.File
	eof chan struct{} // closed when the reader has ended

	mu   sync.Mutex
	turn *streamTurn // the attached Exec's; nil: discard
}

// streamTurn is what one Exec wants of a stream.
type streamTurn struct {
	token   string
	sink    *execSink // where its output goes; nil: discard
	stderr  bool      // the stream is stderr
	records chan<- []string
}

// execSink sends an Exec's output to its stream, for both of the session's
// streams, until close.
type execSink struct {
	stream grpc.ServerStreamingServer[sandboxv1.ExecEvent]

	mu     sync.Mutex // held during a send: the stream takes one at a time
	err    error      // a send failed: the client is gone, output is dropped
	closed bool
}

// send sends data as one stdout or stderr event. It keeps no reference to
// data.
func (k *execSink) send(stderr bool, data []byte) {
	if k == nil || len(data) == 0 {
		return
	}
	data = bytes.Clone(data)
	ev := &sandboxv1.ExecEvent{Event: &sandboxv1.ExecEvent_Stdout{Stdout: data}}
	if stderr {
		ev = &sandboxv1.ExecEvent{Event: &sandboxv1.ExecEvent_Stderr{Stderr: data}}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.closed && k.err == nil {
		k.err = k.stream.Send(ev)
	}
}

// close waits for a send in flight and makes later ones do nothing.
func (k *execSink) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = true
}

func newSessionStream(r *os.File) *sessionStream {
	return &sessionStream{r: r, eof: make(chan struct{})}
}

// read passes what it reads on to the attached Exec until its end record,
// holding back what may be the start of a record, until EOF or a read
// error (the session was killed). After chattyReads small reads in a row
// it lingers before reading again, as output does.
func (st *sessionStream) read() {
	defer close(st.eof)
	buf := make([]byte, outputChunk)
	var held []byte
	var t *streamTurn
	small := 0
	for {
		n, err := st.r.Read(buf)
		st.mu.Lock()
		if st.turn != t {
			held, small = nil, 0 // a partial record, and chatter, of an earlier turn
		}
		t = st.turn
		st.mu.Unlock()
		if t != nil {
			data := buf[:n]
			if len(held) > 0 {
				data = append(held, data...)
			}
			pass, rest, fields := scanRecord(data, t.token)
			t.sink.send(t.stderr, pass)
			held = nil
			if fields != nil {
				st.mu.Lock()
				if st.turn == t {
					st.turn = nil
				}
				st.mu.Unlock()
				t.records <- fields
				t, small = nil, 0
			} else {
				held = append([]byte(nil), rest...)
			}
		}
		if err != nil {
			if t != nil {
				t.sink.send(t.stderr, held)
			}
			return
		}
		if n >= outputChunk/2 {
			small = 0
		} else if small++; small >= chattyReads {
			time.Sleep(outputLinger)
		}
	}
}

// scanRecord splits data at the end record with token: pass is the output
// before it, and fields the record's fields once it is complete; what
// follows the record is output of no Exec. Without a complete record, held
// is a tail that may be the start of one, to be read again with more data.
// Records with another token (old, or printed by the code) are output.
func scanRecord(data []byte, token string) (pass, held []byte, fields []string) {
	prefix := []byte(recordPrefix)
	for from := 0; ; {
		i := bytes.Index(data[from:], prefix)
		if i < 0 {
			k := partialPrefix(data[from:])
			return data[:len(data)-k], data[len(data)-k:], nil
		}
		i += from
		body := data[i+len(prefix):]
		j := bytes.IndexByte(body, '\n')
		if j < 0 && len(body) < maxRecord {
			return data[:i], data[i:], nil
		}
		if j >= 0 && j <= maxRecord {
			if f := strings.Fields(string(body[:j])); len(f) >= 2 && f[0] == token {
				return data[:i], nil, f
			}
		}
		from = i + 1
	}
}

// partialPrefix returns the length of the longest tail of data that is a
// proper prefix of recordPrefix.
func partialPrefix(data []byte) int {
	for k := min(len(data), len(recordPrefix)-1); k > 0; k-- {
		if bytes.HasSuffix(data, []byte(recordPrefix[:k])) {
			return k
		}
	}
	return 0
}
