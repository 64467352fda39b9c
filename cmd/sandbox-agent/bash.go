package main

// This file runs bash Execs: a new /bin/bash per Exec (the spare one started
// ahead of time when it fits, see bashspare.go), in its own process group,
// reading the script from an in-memory file on fd 3.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// bashPath is the shell of the sandbox rootfs.
const bashPath = "/bin/bash"

// scriptFD is where bash finds the script. Passing it on a file descriptor
// rather than with -c avoids the kernel's 128 KiB limit on one argv string.
const scriptFD = 3

// scriptPrefix closes fd 3 in bash before the first command, so the script
// file does not leak into the script's children (bash reads the script
// through its own descriptor). It shares the first line with the script so
// that line numbers in bash's messages stay right.
const scriptPrefix = "exec 3<&-; "

// drainGrace is how long output pipes may stay open after the code has
// finished or was killed: processes that escaped the kill (setsid) would
// otherwise hold the Exec open forever; 100 ms is ample for a pipe to drain.
const drainGrace = 100 * time.Millisecond

// runBash runs job.code with bash. It completes when bash has exited and both
// output pipes are at EOF (a background child holding stdout keeps the Exec
// open, as a shell's command substitution would wait), or at the deadline or
// on cancellation, which kill bash's whole process group.
func runBash(ctx context.Context, job *execJob, processes uint64, spare *spareBash, out *output) (*sandboxv1.ExecResult, error) {
	var cmd *exec.Cmd
	var exited chan struct{}
	if spare != nil && spare.fits(job) && spare.hand(job, processes) == nil {
		cmd, exited = spare.cmd, spare.exited
		defer spare.stdoutR.Close()
		defer spare.stderrR.Close()
		out.start(spare.stdoutR, spare.stderrR)
		job.clock.mark("agent: hand the script to the spare bash (script, pipes ready)")
	} else {
		if spare != nil {
			spare.discard() // it cannot run this one
		}
		var pipes pipeSet
		defer pipes.closeAll() // also unblocks feed if bash never read its stdin
		var err error
		if cmd, err = startBash(job, processes, &pipes, out); err != nil {
			return nil, err
		}
		exited = make(chan struct{})
		go func() {
			_ = cmd.Wait() // the exit status is in cmd.ProcessState
			close(exited)
		}()
		job.clock.mark("agent: start bash (script, pipes, fork and exec)")
	}
	timeout, stopTimer := job.timer()
	defer stopTimer()
	waitExit, waitEOF := exited, out.done()
	var stopped sandboxv1.ExecStatus // TIMEOUT or KILLED when we killed it
	for (waitExit != nil || waitEOF != nil) && stopped == sandboxv1.ExecStatus_EXEC_STATUS_UNSPECIFIED {
		select {
		case <-waitExit:
			waitExit = nil
			out.hurry()
		case <-waitEOF:
			waitEOF = nil
		case <-timeout:
			stopped = sandboxv1.ExecStatus_EXEC_STATUS_TIMEOUT
		case <-job.memLow:
			stopped = sandboxv1.ExecStatus_EXEC_STATUS_OOM_KILLED
		case <-ctx.Done():
			stopped = sandboxv1.ExecStatus_EXEC_STATUS_KILLED
		}
	}
	job.clock.mark("bash: run the script")
	if stopped != sandboxv1.ExecStatus_EXEC_STATUS_UNSPECIFIED {
		killGroup(cmd.Process.Pid)
		<-exited
		within(func() { sweep(job.marker) }) // what left the process group
	}
	out.stop(drainGrace)
	job.clock.mark("agent: drain the output")

	switch ws := cmd.ProcessState.Sys().(syscall.WaitStatus); {
	case stopped == sandboxv1.ExecStatus_EXEC_STATUS_TIMEOUT:
		return &sandboxv1.ExecResult{ExitCode: -1, Status: stopped,
			Message: fmt.Sprintf("timed out after %v: bash and its process group were killed", job.deadline.Sub(job.start))}, nil
	case stopped == sandboxv1.ExecStatus_EXEC_STATUS_KILLED:
		return &sandboxv1.ExecResult{ExitCode: -1, Status: stopped,
			Message: "cancelled: bash and its process group were killed"}, nil
	case stopped == sandboxv1.ExecStatus_EXEC_STATUS_OOM_KILLED:
		return &sandboxv1.ExecResult{ExitCode: -1, Status: stopped, Message: memLowMessage + "bash and its processes were killed; the sandbox keeps running"}, nil
	case ws.Signaled():
		return &sandboxv1.ExecResult{ExitCode: -1, Status: sandboxv1.ExecStatus_EXEC_STATUS_KILLED,
			Message: fmt.Sprintf("bash was killed by signal %d (%v)", ws.Signal(), ws.Signal())}, nil
	case ws.ExitStatus() != 0:
		return &sandboxv1.ExecResult{ExitCode: int32(ws.ExitStatus()), Status: sandboxv1.ExecStatus_EXEC_STATUS_ERROR,
			Message: fmt.Sprintf("bash exited with code %d", ws.ExitStatus())}, nil
	default:
		return &sandboxv1.ExecResult{Status: sandboxv1.ExecStatus_EXEC_STATUS_OK}, nil
	}
}

// startBash starts a bash of the job's own that reads the script from an
// in-memory file on fd 3, and starts reading its output. The pipes it
// makes are in pipes.
func startBash(job *execJob, processes uint64, pipes *pipeSet, out *output) (*exec.Cmd, error) {
	script, err := scriptFile(job.code, processes)
	if err != nil {
		return nil, err
	}
	defer script.Close()
	stdoutR, stdoutW, stderrR, stderrW, err := pipes.outputPipes()
	if err != nil {
		return nil, err
	}
	cmd := &exec.Cmd{
		Path:        bashPath,
		Args:        []string{"bash", fmt.Sprintf("/dev/fd/%d", scriptFD)},
		Dir:         job.dir,
		Env:         mergeEnv(job.codeEnv()),
		Stdout:      stdoutW,
		Stderr:      stderrW,
		ExtraFiles:  []*os.File{script},
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	childEnds := []*os.File{script, stdoutW, stderrW}
	var stdinW *os.File
	if len(job.stdin) > 0 {
		var stdinR *os.File
		if stdinR, stdinW, err = pipes.pipe(); err != nil {
			return nil, err
		}
		cmd.Stdin = stdinR
		childEnds = append(childEnds, stdinR)
	}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.EAGAIN) {
			return nil, status.Errorf(codes.ResourceExhausted, "cannot start bash: the sandbox's processes and threads are at its limit (limits.processes): end some first")
		}
		return nil, status.Errorf(codes.Internal, "starting bash: %v", err)
	}
	for _, f := range childEnds {
		f.Close() // bash has its own copies now
	}
	if stdinW != nil {
		go feed(stdinW, job.stdin)
	}
	out.start(stdoutR, stderrR)
	return cmd, nil
}

// scriptFile returns an in-memory file holding the script. Bash reads a
// script on a seekable file in blocks but one on a pipe a byte per read(2),
// which in gVisor costs seconds for a script of a few hundred KiB. A
// non-zero processes limit is set first, soft and hard (ulimit -u), so the
// script runs under the code's process limit rather than the agent's.
func scriptFile(code string, processes uint64) (*os.File, error) {
	prefix := scriptPrefix
	if processes > 0 {
		prefix += fmt.Sprintf("ulimit -u %d; ", processes)
	}
	fd, err := unix.MemfdCreate("sandboxd-script", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "creating the script file: %v", err)
	}
	f := os.NewFile(uintptr(fd), "script")
	// WriteAt leaves the offset at 0, where bash starts reading.
	if _, err := f.WriteAt([]byte(prefix+code), 0); err != nil {
		f.Close()
		return nil, status.Errorf(codes.Internal, "writing the script file: %v", err)
	}
	return f, nil
}

// feed writes data to w and closes it. A reader that goes away early is not
// an error: the code simply did not read all of its input.
func feed(w *os.File, data []byte) {
	_, _ = w.Write(data)
	w.Close()
}

// mergeEnv returns the agent's environment with extra added; extra wins.
func mergeEnv(extra map[string]string) []string {
	env := os.Environ()
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}
