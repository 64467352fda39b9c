package main

// This file runs one cell on a worker: it hands the kernel the cell and its
// pipes, enforces the timeout and cancellation (SIGINT, then SIGKILL), and
// turns the outcome into an ExecResult.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// errWorkerGone means that a cell could not even be handed to the worker:
// it had died already, and the cell did not run.
var errWorkerGone = errors.New("the Python interpreter died before the cell started")

// run runs job as one cell and returns its result. When the deadline passes
// or ctx ends it interrupts the cell with SIGINT and, if the cell has not
// ended interruptGrace later, kills the worker. A result with StateLost set
// means the worker is dead.
func (w *worker) run(ctx context.Context, job *execJob, out *output) (*sandboxv1.ExecResult, error) {
	var pipes pipeSet
	defer pipes.closeAll() // also unblocks feed if the cell never read its stdin
	cp, err := w.cellPipes()
	if err != nil {
		return nil, err
	}
	// The next cell's pipes are made once this cell's result is on its way.
	defer time.AfterFunc(sparePipesDelay, w.makeSpare)
	// The cell's stdout and stderr, after its stdin if it has one; without,
	// the kernel leaves its stdin on /dev/null.
	theirs := []int{cp.outW, cp.errW}
	var stdinW *os.File
	if len(job.stdin) > 0 {
		stdinR, wr, err := pipes.pipe()
		if err != nil {
			cp.close()
			return nil, err
		}
		stdinW = wr
		theirs = append([]int{int(stdinR.Fd())}, theirs...)
		defer stdinR.Close()
	}
	err = w.send(kernelRequest{Code: job.code, Env: job.codeEnv(), Workdir: job.dir}, theirs)
	unix.Close(cp.outW) // the kernel has its own copies now
	unix.Close(cp.errW)
	if err != nil {
		cp.outR.Close()
		cp.errR.Close()
		return nil, fmt.Errorf("%w (%v)", errWorkerGone, err)
	}
	if stdinW != nil {
		go feed(stdinW, job.stdin)
	}
	// out closes the read ends once the output is drained, after the
	// result went out.
	out.start(cp.outR, cp.errR)
	job.clock.mark("agent: hand the cell to the interpreter (pipes, fd passing)")

	results := w.readResult()
	timeout, stopTimer := job.timer()
	defer stopTimer()
	done, memLow := ctx.Done(), job.memLow
	var stopped sandboxv1.ExecStatus // TIMEOUT, KILLED or OOM_KILLED once we interrupted
	defer func() {
		if stopped != sandboxv1.ExecStatus_EXEC_STATUS_UNSPECIFIED {
			// A stopped cell leaves nothing running: not the interpreter's
			// forks (its process group, also those started while it was
			// being interrupted) nor the cell's subprocesses (the marker).
			killCellProcesses(w.cmd.Process.Pid, job.marker)
		}
	}()
	var grace <-chan time.Time
	var repeat *time.Ticker // repeats SIGINT while the cell unwinds
	var again <-chan time.Time
	defer func() {
		if repeat != nil {
			repeat.Stop()
		}
	}()
	interrupt := func(why sandboxv1.ExecStatus) {
		stopped = why
		timeout, done, memLow = nil, nil, nil
		_ = syscall.Kill(w.cmd.Process.Pid, syscall.SIGINT)
		repeat = time.NewTicker(interruptRepeat)
		again = repeat.C
		if why == sandboxv1.ExecStatus_EXEC_STATUS_OOM_KILLED {
			grace = time.After(memLowGrace)
		} else {
			grace = time.After(interruptGrace)
		}
	}
	for {
		select {
		case r := <-results:
			if r.err != nil {
				res := w.broken(orKilled(stopped), r.err)
				out.stop(drainGrace)
				return res, nil
			}
			job.clock.markSplit("interpreter: set up and tear down the cell, answer", "interpreter: run the code", time.Duration(r.res.RunNanos))
			out.stop(drainGrace)
			job.clock.mark("agent: drain the output")
			return cellResult(r.res, stopped, job), nil
		case <-w.exited:
			w.kill() // its children too
			out.stop(drainGrace)
			return w.lost(orKilled(stopped), w.exitCode(), w.death()), nil
		case <-timeout:
			interrupt(sandboxv1.ExecStatus_EXEC_STATUS_TIMEOUT)
		case <-done:
			interrupt(sandboxv1.ExecStatus_EXEC_STATUS_KILLED)
		case <-again:
			_ = syscall.Kill(w.cmd.Process.Pid, syscall.SIGINT)
		case <-memLow:
			// Interrupt the cell and free what it started at once: forked
			// copies of the interpreter (its process group) and its
			// subprocesses (the marker).
			interrupt(sandboxv1.ExecStatus_EXEC_STATUS_OOM_KILLED)
			killCellProcesses(w.cmd.Process.Pid, job.marker)
		case <-grace:
			w.kill()
			out.stop(drainGrace)
			why := fmt.Sprintf("timed out after %v", job.deadline.Sub(job.start))
			switch stopped {
			case sandboxv1.ExecStatus_EXEC_STATUS_KILLED:
				why = "cancelled"
			case sandboxv1.ExecStatus_EXEC_STATUS_OOM_KILLED:
				why = memLowMessage + "the cell was interrupted"
			}
			return w.lost(stopped, -1, why+" and the cell ignored the interrupt: the Python interpreter was killed"), nil
		}
	}
}

// lost is the result of a cell whose worker is dead, with its exit code. It
// marks the death as reported.
func (w *worker) lost(st sandboxv1.ExecStatus, code int32, why string) *sandboxv1.ExecResult {
	w.reported.Store(true)
	return &sandboxv1.ExecResult{
		ExitCode:  code,
		Status:    st,
		StateLost: true,
		Message:   why + "; it will be restarted and earlier variables are gone",
	}
}

// broken ends a worker whose socket failed: if the worker is exiting by
// itself it reports how it ended, otherwise it kills the worker and reports
// err. Either way the worker is dead afterwards.
func (w *worker) broken(st sandboxv1.ExecStatus, err error) *sandboxv1.ExecResult {
	t := time.NewTimer(interruptGrace)
	defer t.Stop()
	select {
	case <-w.exited:
		w.kill() // its children too
		return w.lost(st, w.exitCode(), w.death())
	case <-t.C:
		w.kill()
		return w.lost(st, -1, fmt.Sprintf("the Python kernel failed (%v) and was killed", err))
	}
}

// orKilled is st, or KILLED when nothing stopped the cell on purpose.
func orKilled(st sandboxv1.ExecStatus) sandboxv1.ExecStatus {
	if st == sandboxv1.ExecStatus_EXEC_STATUS_UNSPECIFIED {
		return sandboxv1.ExecStatus_EXEC_STATUS_KILLED
	}
	return st
}

// cellResult maps the kernel's answer to an ExecResult; stopped says whether
// the cell was interrupted for its timeout or a cancellation.
func cellResult(r kernelResult, stopped sandboxv1.ExecStatus, job *execJob) *sandboxv1.ExecResult {
	res := &sandboxv1.ExecResult{ExitCode: r.ExitCode, Value: r.Value, ErrorName: r.ErrorName, ImagesTruncated: r.ImagesTruncated}
	for _, png := range r.Images {
		res.Images = append(res.Images, &sandboxv1.Image{MimeType: "image/png", Data: png})
	}
	switch {
	case stopped == sandboxv1.ExecStatus_EXEC_STATUS_TIMEOUT:
		res.Status, res.ExitCode = stopped, -1
		res.Message = fmt.Sprintf("timed out after %v: the cell was interrupted; the interpreter and its variables are kept", job.deadline.Sub(job.start))
	case stopped == sandboxv1.ExecStatus_EXEC_STATUS_KILLED:
		res.Status, res.ExitCode = stopped, -1
		res.Message = "cancelled: the cell was interrupted; the interpreter and its variables are kept"
	case stopped == sandboxv1.ExecStatus_EXEC_STATUS_OOM_KILLED:
		res.Status, res.ExitCode = stopped, -1
		res.Message = memLowMessage + "the cell was interrupted and the processes it started were killed; the interpreter and its variables are kept"
	case r.ErrorName != "" || r.ExitCode != 0:
		res.Status = sandboxv1.ExecStatus_EXEC_STATUS_ERROR
		res.Message = fmt.Sprintf("the cell raised %s", r.ErrorName)
		if r.ErrorName == "SystemExit" {
			res.Message = fmt.Sprintf("the cell exited with code %d", r.ExitCode)
		}
	default:
		res.Status = sandboxv1.ExecStatus_EXEC_STATUS_OK
	}
	return res
}
