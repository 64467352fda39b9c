package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	agentv1 "github.com/sandboxd/sandboxd/proto/agent/v1"
	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"github.com/sandboxd/sandboxd/runtime/stdioconn"
)

// countingResyncer counts Resyncs and fails them with err.
type countingResyncer struct {
	n   int
	err error
}

func (r *countingResyncer) Resync() error { r.n++; return r.err }

// TestResyncOn guarantees that every resync signal resynchronises the
// listener and is logged, a failure included.
func TestResyncOn(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"ok", nil, "resynchronising the connection for a restarted daemon"},
		{"failed", errors.New("broken pipe"), "err=\"broken pipe\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logged bytes.Buffer
			r := &countingResyncer{err: tc.err}
			sigs := make(chan os.Signal, 2)
			sigs <- resyncSignal
			sigs <- resyncSignal
			close(sigs)
			resyncOn(sigs, r, slog.New(slog.NewTextHandler(&logged, nil)))
			if r.n != 2 {
				t.Fatalf("%d Resyncs for 2 signals", r.n)
			}
			if !strings.Contains(logged.String(), tc.want) {
				t.Fatalf("log %q lacks %q", logged.String(), tc.want)
			}
		})
	}
}

// harnessStaleOutput bounds the output a dead harness client leaves unread:
// unlike the daemon, whose fixed 1 MiB flow-control window keeps it under
// stdioconn.MaxResyncDiscard, the harness lets gRPC grow its window up to
// 16 MiB.
const harnessStaleOutput = 32 << 20

// TestResyncAfterDaemonCrash guarantees the agent side of a daemon restart:
// the daemon dies while an Exec streams output, leaving part of a frame on
// the agent's stdin and unread output on its stdout, and keeps its pipe
// ends open (a holder process does); on SIGUSR2 to the init the agent
// serves the next daemon's connection on the same pipes once
// stdioconn.Reattach ran, with its Python state intact and the old Exec
// cancelled.
func TestResyncAfterDaemonCrash(t *testing.T) {
	a := startAgent(t)
	wantResult(t, a.run(t, pyReq("x = 41")), sandboxv1.ExecStatus_EXEC_STATUS_OK, 0, false)
	stream, err := a.Exec(context.Background(), bashReq("yes output"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("the streaming Exec: %v", err)
	}
	// Keep reading, so that the agent is writing when the daemon dies.
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	// The daemon dies: it reads and writes nothing more, and its pipe ends
	// stay open in the holder (here duplicates).
	outR, inW := dupFile(t, a.outR), dupFile(t, a.inW)
	a.conn.die()
	a.cc.Close()
	// What it was writing: a DATA frame header announcing 100 bytes, and 10
	// of them.
	inW.Write([]byte("\x00\x00\x64\x00\x00\x00\x00\x00\x01partial..."))
	// Let the agent fill stdout, so that the Resync waits for a write
	// blocked on the pipe.
	time.Sleep(100 * time.Millisecond)

	if err := a.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	outR.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := stdioconn.Reattach(outR, inW, harnessStaleOutput); err != nil {
		t.Fatalf("Reattach: %v\nagent log:\n%s", err, a.stderr.String())
	}
	outR.SetReadDeadline(time.Time{})
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
	if !strings.Contains(a.stderr.String(), "resynchronising the connection") {
		t.Errorf("the resync was not logged:\n%s", a.stderr.String())
	}
	// The old Exec ended with its connection: Quiesce, which refuses while
	// RPCs run, goes through (the connection then ends with the test).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, err := a.Quiesce(context.Background(), &agentv1.QuiesceRequest{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the old connection's Exec still runs: %v", err)
		}
	}
}
