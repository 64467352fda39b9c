package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	agentv1 "github.com/sandboxd/sandboxd/proto/agent/v1"
	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// dupFile duplicates f's descriptor, so closing f leaves the pipe open. It
// does not use f.Fd, which would make the pipe blocking and end deadlines.
func dupFile(t *testing.T, f *os.File) *os.File {
	t.Helper()
	sc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	if cerr := sc.Control(func(raw uintptr) { fd, err = unix.FcntlInt(raw, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fd), f.Name())
}

// TestQuiesceThenNewConnection guarantees the agent side of a restore: after
// Quiesce the agent serves a brand-new gRPC connection on the same stdio
// (here the same pipes, after the old client closed and sent its GOAWAY),
// with its Python state intact, and exits cleanly when that one closes.
func TestQuiesceThenNewConnection(t *testing.T) {
	a := startAgent(t)
	wantResult(t, a.run(t, pyReq("x = 41")), sandboxv1.ExecStatus_EXEC_STATUS_OK, 0, false)
	if _, err := a.Quiesce(context.Background(), &agentv1.QuiesceRequest{}); err != nil {
		t.Fatalf("Quiesce: %v", err)
	}
	outR, inW := dupFile(t, a.outR), dupFile(t, a.inW)
	a.cc.Close()
	a.cc, a.conn = dialPipes(t, outR, inW)
	a.AgentServiceClient = agentv1.NewAgentServiceClient(a.cc)
	if _, err := a.Ping(context.Background(), &agentv1.PingRequest{}); err != nil {
		t.Fatalf("Ping on the new connection: %v\nagent log:\n%s", err, a.stderr.String())
	}
	o := a.run(t, pyReq("print(x + 1)"))
	wantResult(t, o, sandboxv1.ExecStatus_EXEC_STATUS_OK, 0, false)
	if strings.TrimSpace(o.stdout) != "42" {
		t.Fatalf("state after the new connection: got %q, want 42", o.stdout)
	}
	// The new connection can be quiesced in turn (a restored template).
	if _, err := a.Quiesce(context.Background(), &agentv1.QuiesceRequest{}); err != nil {
		t.Fatalf("second Quiesce: %v", err)
	}
}

// TestQuiesceRefusedWhileBusy guarantees that a checkpoint never cuts work
// in progress: Quiesce during a running Exec is FailedPrecondition and the
// Exec completes.
func TestQuiesceRefusedWhileBusy(t *testing.T) {
	a := startAgent(t)
	done := make(chan outcome, 1)
	go func() { done <- a.run(t, bashReq("touch started; sleep 1; echo done")) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(a.workspace, "started")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Exec did not start")
		}
	}
	_, err := a.Quiesce(context.Background(), &agentv1.QuiesceRequest{})
	wantCode(t, err, codes.FailedPrecondition)
	o := <-done
	wantResult(t, o, sandboxv1.ExecStatus_EXEC_STATUS_OK, 0, false)
}

// TestEgressStreamsDoNotKeepTheAgentBusy guarantees that an open egress
// proxy (EgressAccept, open for the sandbox's life) and a live tunnel
// (EgressRelay) are not work in progress, so a sandbox with egress can
// still be paused (Quiesce) and its spare bash refilled, while any other
// stream, an Exec say, still counts.
func TestEgressStreamsDoNotKeepTheAgentBusy(t *testing.T) {
	b := &busyCounter{}
	busyDuring := func(method string) int64 {
		var n int64
		err := b.stream(nil, nil, &grpc.StreamServerInfo{FullMethod: method}, func(any, grpc.ServerStream) error {
			n = b.n.Load()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, m := range []string{agentv1.AgentService_EgressAccept_FullMethodName, agentv1.AgentService_EgressRelay_FullMethodName} {
		if n := busyDuring(m); n != 0 {
			t.Errorf("%s counts as %d requests in progress, want 0", m, n)
		}
	}
	if n := busyDuring(agentv1.AgentService_Exec_FullMethodName); n != 1 {
		t.Errorf("an Exec counts as %d requests in progress, want 1", n)
	}
	if n := b.n.Load(); n != 0 {
		t.Errorf("%d requests in progress after every stream ended", n)
	}
}
