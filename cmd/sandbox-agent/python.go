package main

// This file manages the sandbox's one persistent Python interpreter: it
// starts the worker lazily (or on Ping), restarts it after it died, and runs
// Python Execs on it one at a time, in arrival order.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// python owns the worker.
type python struct {
	log   *slog.Logger
	queue turnstile  // serializes Execs
	mu    sync.Mutex // held while a worker starts
	w     *worker    // guarded by mu
	down  bool       // guarded by mu: shutdown was called, start no worker
	// limits is guarded by mu: the limits of workers started from now on.
	limits workerLimits
	// unseen is guarded by mu: how the last worker died, when no Exec was
	// running to report it (killed from bash, out of memory); the next Exec
	// reports it as a lost state.
	unseen string
}

func newPython(log *slog.Logger) *python { return &python{log: log} }

// ensure returns a live worker, starting one if there is none.
func (p *python) ensure(ctx context.Context) (*worker, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.w != nil && !p.w.dead() {
		return p.w, nil
	}
	if p.down {
		return nil, status.Error(codes.Unavailable, "the agent is shutting down")
	}
	if p.w != nil {
		if !p.w.reported.Load() {
			p.unseen = p.w.death()
		}
		p.w.kill() // what is left of its process group, and its socket
	}
	w, err := startWorker(ctx, p.limits)
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		p.log.Error("starting the Python worker", "err", err)
		return nil, status.Error(codes.Internal, err.Error())
	}
	p.w = w
	p.log.Info("Python worker started", "pid", w.cmd.Process.Pid)
	return w, nil
}

// exec waits for its turn, then runs job on the worker. Time spent waiting
// counts against the job's timeout, as it does for the daemon. A worker
// found dead when the cell is handed over is replaced once.
func (p *python) exec(ctx context.Context, job *execJob, out *output) (*sandboxv1.ExecResult, error) {
	waitCtx, cancel := ctx, context.CancelFunc(func() {})
	if !job.deadline.IsZero() {
		waitCtx, cancel = context.WithDeadline(ctx, job.deadline)
	}
	defer cancel()
	if err := p.queue.acquire(waitCtx); err != nil {
		return notStarted(ctx, waitCtx, job, err)
	}
	defer p.queue.release()
	for retried := false; ; retried = true {
		w, err := p.ensure(waitCtx)
		if err != nil {
			return notStarted(ctx, waitCtx, job, err)
		}
		job.clock.mark("agent: wait for the interpreter")
		res, err := w.run(ctx, job, out)
		if errors.Is(err, errWorkerGone) && !retried {
			w.kill() // reaped now: ensure replaces it and notes its death
			continue
		}
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		p.reportUnseen(res)
		return res, nil
	}
}

// notStarted answers an Exec whose cell never started because of err: a
// TIMEOUT result if its deadline passed while it waited, else an error.
func notStarted(ctx, waitCtx context.Context, job *execJob, err error) (*sandboxv1.ExecResult, error) {
	switch {
	case ctx.Err() != nil:
		return nil, status.FromContextError(ctx.Err()).Err()
	case errors.Is(waitCtx.Err(), context.DeadlineExceeded):
		return &sandboxv1.ExecResult{
			ExitCode: -1,
			Status:   sandboxv1.ExecStatus_EXEC_STATUS_TIMEOUT,
			Message:  fmt.Sprintf("timed out after %v before the cell started (earlier Execs or the interpreter's start-up took the time)", job.deadline.Sub(job.start)),
		}, nil
	default:
		return nil, err
	}
}

// reportUnseen marks res as having lost the state if an earlier worker died
// with no Exec to report it.
func (p *python) reportUnseen(res *sandboxv1.ExecResult) {
	p.mu.Lock()
	why := p.unseen
	p.unseen = ""
	p.mu.Unlock()
	if why == "" || res.StateLost {
		return
	}
	res.StateLost = true
	note := why + " between Execs; it was restarted for this one and earlier variables are gone"
	if res.Message != "" {
		note += "; " + res.Message
	}
	res.Message = note
}

// setLimits sets the limits of workers started from now on; a zero field
// keeps the current value.
func (p *python) setLimits(l workerLimits) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l.addressSpace != 0 {
		p.limits.addressSpace = l.addressSpace
	}
	if l.processes != 0 {
		p.limits.processes = l.processes
	}
}

// shutdown kills the worker, if any, and keeps new ones from starting.
func (p *python) shutdown() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	if p.w != nil {
		p.w.kill()
	}
}
