package main

// This file lets a restarted daemon re-attach to the agent. When the daemon
// dies (kill -9), a holder process keeps its ends of the agent's stdin and
// stdout open and hands them to the next daemon, which finds the agent's
// HTTP/2 connection in an unknown state: part of a frame on stdin, frames
// nobody read on stdout. The new daemon sends SIGUSR2 (runsc kill <id>
// USR2, which the init forwards to the server); the server then retires
// the connection and resynchronises the pipes with the daemon beneath
// HTTP/2 (the protocol is in runtime/stdioconn/resync.go), and the gRPC
// server serves the daemon's new connection. Running RPCs of the old one
// are cancelled; the Python worker and the workspace stay as they were.
//
// Sandboxed code runs as the agent's user and can send the signal too. That
// breaks the sandbox's connection, as killing the agent would, and gives it
// nothing more: the new connection starts only at the answer to a nonce
// that only the daemon reads.

import (
	"log/slog"
	"os"
	"syscall"
)

// resyncSignal asks the agent to resynchronise its connection with a
// restarted daemon; nothing else in the agent uses SIGUSR2.
const resyncSignal = syscall.SIGUSR2

// resyncer is the part of a stdioconn.Listener that resyncOn needs.
type resyncer interface{ Resync() error }

// resyncOn resynchronises lis on every signal from sigs, one at a time,
// until sigs is closed. A Resync returns once its record is out, which
// takes the daemon reading stdout; a signal meanwhile waits its turn.
func resyncOn(sigs <-chan os.Signal, lis resyncer, log *slog.Logger) {
	for range sigs {
		log.Info("resynchronising the connection for a restarted daemon")
		if err := lis.Resync(); err != nil {
			log.Error("resynchronising the connection", "err", err)
		}
	}
}
