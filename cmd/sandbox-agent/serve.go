package main

// This file is the serve half of the agent: the gRPC server on the process's
// stdin/stdout, which lives as long as the daemon's connection. Across a
// checkpoint and restore (quiesce.go) it serves the restoring daemon's new
// connection on the same fds, and after a daemon restart (resync.go) the
// new daemon's.

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"

	agentv1 "github.com/sandboxd/sandboxd/proto/agent/v1"
	"github.com/sandboxd/sandboxd/runtime/stdioconn"
)

// maxMessage bounds every gRPC message both ways. Output and file chunks are
// at most 256 KiB, code and stdin at most 1 MiB each, EditFile's text 4 MiB,
// and an Exec result carries at most 16 MiB of figures, so 24 MiB (the
// daemon's MaxAgentMessage) leaves room for framing while keeping a hostile
// peer from making us buffer more.
const maxMessage = 24 << 20

// flowWindow is the HTTP/2 flow-control window per stream and connection,
// as the daemon sets it: uploads run at full speed over the pipe, and a
// stream holds at most this much unread.
const flowWindow = 1 << 20

// ioBuffer is gRPC's read and write buffer, as the daemon sets it: a 256 KiB
// file chunk moves in one or two reads and writes of the pipe instead of
// eight, and in gVisor each costs a context switch.
const ioBuffer = 256 << 10

// workspaceEnv names an environment variable that moves the workspace away
// from /workspace. Only the tests set it (the host has no /workspace); the
// daemon never does.
const workspaceEnv = "SANDBOXD_AGENT_WORKSPACE"

// defaultWorkspace is where relative paths and bash Execs start.
const defaultWorkspace = "/workspace"

// runServe serves the daemon on stdin/stdout until the connection closes or
// a SIGTERM/SIGINT arrives, then stops the Python worker and returns 0.
func runServe() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := hideFromSandboxedCode(); err != nil {
		log.Error("making the agent server non-dumpable", "err", err)
		return 1
	}
	workspace := os.Getenv(workspaceEnv)
	if workspace == "" {
		workspace = defaultWorkspace
	}
	in, err := pipeFile(0, "stdin")
	if err != nil {
		log.Error("opening stdin", "err", err)
		return 1
	}
	out, err := pipeFile(1, "stdout")
	if err != nil {
		log.Error("opening stdout", "err", err)
		return 1
	}
	// A write to the daemon's closed pipe must be an EPIPE error, not death
	// by SIGPIPE (Go's default for fds 1 and 2). Notify, unlike Ignore, is
	// not inherited by the bash and Python children.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	lis := stdioconn.NewListener(in, out)
	// A restarted daemon asks for the pipes with a signal (resync.go).
	resyncs := make(chan os.Signal, 1)
	signal.Notify(resyncs, resyncSignal)
	go resyncOn(resyncs, lis, log)

	agent := newServer(workspace, lis, log)
	srv := grpc.NewServer(
		grpc.MaxRecvMsgSize(maxMessage), grpc.MaxSendMsgSize(maxMessage),
		grpc.InitialWindowSize(flowWindow), grpc.InitialConnWindowSize(flowWindow),
		grpc.ReadBufferSize(ioBuffer), grpc.WriteBufferSize(ioBuffer),
		grpc.UnaryInterceptor(agent.busy.unary), grpc.StreamInterceptor(agent.busy.stream))
	agentv1.RegisterAgentServiceServer(srv, agent)
	go func() {
		if err := srv.Serve(lis); err != nil {
			log.Error("serving", "err", err)
		}
	}()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go agent.memory.run(ctx, log)
	select {
	case <-lis.Done():
	case <-ctx.Done():
		log.Info("stopping on signal")
	}
	srv.Stop()
	agent.python.shutdown()
	agent.spares.shutdown()
	agent.session.shutdown()
	return 0
}

// pipeFile wraps an inherited pipe fd as a non-blocking *os.File, so Go's
// poller serves it (no thread blocked per read, and deadlines work).
func pipeFile(fd int, name string) (*os.File, error) {
	if err := syscall.SetNonblock(fd, true); err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}
