package main

// This file is the AgentService implementation: Ping, and Exec's request
// validation and dispatch to bash (bash.go) or Python (python.go). Files are
// in files.go.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	agentv1 "github.com/sandboxd/sandboxd/proto/agent/v1"
	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"github.com/sandboxd/sandboxd/runtime/stdioconn"
)

// maxCode and maxStdin are the public API's limits on an Exec's code and
// stdin (sandbox.proto); the daemon checks them too, the agent does not trust
// that it did.
const (
	maxCode  = 1 << 20
	maxStdin = 1 << 20
)

// server implements agentv1.AgentServiceServer.
type server struct {
	agentv1.UnimplementedAgentServiceServer
	workspace string
	python    *python
	// processes is RLIMIT_NPROC for bash Execs; 0: inherit the agent's.
	processes atomic.Uint64
	// memory tells running Execs when the sandbox runs out of memory.
	memory *memGuard
	// lis serves the daemon's connections; Quiesce detaches the current one.
	lis *stdioconn.Listener
	// busy counts the RPCs in progress, so Quiesce refuses while work runs.
	busy *busyCounter
	// spares keeps a bash started ahead of time for the next bash Exec.
	spares *spares
	// session is the persistent bash of LANGUAGE_BASH_SESSION Execs.
	session *bashSessions
	// egress is the egress proxy of EgressAccept and EgressRelay (egress.go).
	egress egress
}

func newServer(workspace string, lis *stdioconn.Listener, log *slog.Logger) *server {
	busy := &busyCounter{}
	return &server{workspace: workspace, python: newPython(log), memory: newMemGuard(), lis: lis, busy: busy,
		spares:  &spares{log: log, dir: workspace, idle: func() bool { return busy.n.Load() == 0 }},
		session: newBashSessions(workspace, log)}
}

// execJob is a validated Exec request.
type execJob struct {
	code  string
	stdin []byte
	env   map[string]string
	// dir is absolute, or empty for the language's default.
	dir string
	// start is when the request arrived; timeout and duration count from it.
	start time.Time
	// deadline is zero when the request set no timeout.
	deadline time.Time
	// marker tags the Exec's processes (sweep.go).
	marker string
	// memLow is closed when the sandbox runs low on memory while the job
	// runs (memguard.go).
	memLow <-chan struct{}
	// clock times the job's stages when the request asked for a trace.
	clock *stageClock
}

// codeEnv is the environment the job's code adds to its interpreter's:
// the request's, and the marker.
func (j *execJob) codeEnv() map[string]string {
	env := make(map[string]string, len(j.env)+1)
	for k, v := range j.env {
		env[k] = v
	}
	env[markerVar] = j.marker
	return env
}

// Ping answers with the agent's pid, after starting the Python worker if
// asked to.
func (s *server) Ping(ctx context.Context, req *agentv1.PingRequest) (*agentv1.PingResponse, error) {
	as, nproc := req.GetPythonAddressSpace(), req.GetCodeProcesses()
	if as < 0 || nproc < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "negative limit: python_address_space %d, code_processes %d", as, nproc)
	}
	if nproc > 0 {
		s.processes.Store(uint64(nproc))
	}
	s.python.setLimits(workerLimits{addressSpace: uint64(as), processes: uint64(nproc)})
	if req.GetStartPython() {
		if _, err := s.python.ensure(ctx); err != nil {
			return nil, err
		}
	}
	s.spares.refill()
	return &agentv1.PingResponse{Pid: int32(os.Getpid())}, nil
}

// Exec runs bash or Python code, streaming its output, and ends the stream
// with one result event.
func (s *server) Exec(req *sandboxv1.ExecRequest, stream grpc.ServerStreamingServer[sandboxv1.ExecEvent]) error {
	job, err := s.parseExec(req)
	if err != nil {
		return err
	}
	defer s.memory.watching()()
	var before *workspaceState
	if req.GetReportFiles() {
		before = snapshotWorkspace(stream.Context(), s.workspace, job.start)
		job.clock.mark("agent: snapshot the workspace (report_files)")
	}
	out := newOutput(stream)
	var res *sandboxv1.ExecResult
	switch req.GetLanguage() {
	case sandboxv1.Language_LANGUAGE_BASH:
		res, err = runBash(stream.Context(), job, s.processes.Load(), s.spares.take(), out)
	case sandboxv1.Language_LANGUAGE_BASH_SESSION:
		res, err = s.session.exec(stream.Context(), job, req.GetRestartSession(), s.processes.Load(), stream)
	default:
		res, err = s.python.exec(stream.Context(), job, out)
	}
	out.close()
	if err != nil {
		return err
	}
	job.clock.mark("agent: assemble the result")
	if req.GetReportFiles() {
		res.Files, res.FilesTruncated = producedFiles(stream.Context(), s.workspace, before)
		job.clock.mark("agent: list the files the Exec created or modified")
	}
	res.Trace = job.clock.result()
	res.Duration = durationpb.New(time.Since(job.start))
	return stream.Send(&sandboxv1.ExecEvent{Event: &sandboxv1.ExecEvent_Result{Result: res}})
}

// parseExec checks an ExecRequest and resolves its working directory.
func (s *server) parseExec(req *sandboxv1.ExecRequest) (*execJob, error) {
	start := time.Now()
	job := &execJob{code: req.GetCode(), stdin: req.GetStdin(), env: req.GetEnv(), start: start, marker: newMarker(), memLow: s.memory.fired(),
		clock: newStageClock(start, req.GetTrace())}
	switch req.GetLanguage() {
	case sandboxv1.Language_LANGUAGE_BASH, sandboxv1.Language_LANGUAGE_PYTHON, sandboxv1.Language_LANGUAGE_BASH_SESSION:
	default:
		return nil, status.Errorf(codes.InvalidArgument, "language %v is not supported", req.GetLanguage())
	}
	if len(job.code) > maxCode {
		return nil, status.Errorf(codes.InvalidArgument, "code is %d bytes, more than %d", len(job.code), maxCode)
	}
	if len(job.stdin) > maxStdin {
		return nil, status.Errorf(codes.InvalidArgument, "stdin is %d bytes, more than %d", len(job.stdin), maxStdin)
	}
	for k, v := range job.env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return nil, status.Errorf(codes.InvalidArgument, "env %q: names must be non-empty without '=' or NUL, values without NUL", k)
		}
	}
	if t := req.GetTimeout(); t != nil {
		if err := t.CheckValid(); err != nil || t.AsDuration() <= 0 {
			return nil, status.Errorf(codes.InvalidArgument, "timeout %v must be a positive duration", t.AsDuration())
		}
		job.deadline = job.start.Add(t.AsDuration())
	}
	if req.GetWorkdir() != "" {
		dir, err := s.workdir(req.GetWorkdir())
		if err != nil {
			return nil, err
		}
		job.dir = dir
	}
	if job.dir == "" && req.GetLanguage() == sandboxv1.Language_LANGUAGE_BASH {
		job.dir = s.workspace
	}
	return job, nil
}

// timer returns a channel that receives at the job's deadline (nil, which
// never receives, when it has none) and a function to release the timer.
func (j *execJob) timer() (<-chan time.Time, func()) {
	if j.deadline.IsZero() {
		return nil, func() {}
	}
	t := time.NewTimer(time.Until(j.deadline))
	return t.C, func() { t.Stop() }
}

// workdir resolves an Exec's working directory: relative paths are under the
// workspace and may not climb out of it, and the directory must exist.
func (s *server) workdir(dir string) (string, error) {
	if !filepath.IsAbs(dir) {
		if !filepath.IsLocal(dir) {
			return "", status.Errorf(codes.InvalidArgument, "workdir %q is outside the workspace", dir)
		}
		dir = filepath.Join(s.workspace, dir)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fileError(fmt.Sprintf("workdir %s", dir), err)
	}
	if !fi.IsDir() {
		return "", status.Errorf(codes.InvalidArgument, "workdir %s is not a directory", dir)
	}
	return dir, nil
}
