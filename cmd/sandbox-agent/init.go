package main

// This file is the init half of the agent: it runs as PID 1, starts the real
// server as a child and reaps every process that gets re-parented to it.
// Go's exec.Cmd.Wait would race with a wait4(-1) reaper, so the server runs
// in its own process and the init does nothing but wait and forward signals.

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// runInit starts "/proc/self/exe serve" on the init's stdio, forwards SIGTERM,
// SIGINT and the resync signal (resync.go) to it, reaps all children and
// returns the server's exit status (128+signal if it was killed by a signal,
// as a shell reports it).
func runInit() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := hideFromSandboxedCode(); err != nil {
		log.Error("making the agent init non-dumpable", "err", err)
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, resyncSignal)
	pid, err := syscall.ForkExec("/proc/self/exe", []string{os.Args[0], "serve"}, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
	})
	if err != nil {
		log.Error("starting the agent server", "err", err)
		return 1
	}
	// The server owns the daemon's pipes now: if it dies, the daemon must see
	// EOF at once even if the init lingers.
	if err := nullStdio(); err != nil {
		log.Warn("detaching the init from the daemon's pipes", "err", err)
	}
	go func() {
		for s := range sigs {
			_ = syscall.Kill(pid, s.(syscall.Signal))
		}
	}()
	for {
		var ws syscall.WaitStatus
		wpid, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			log.Error("reaping children", "err", err)
			return 1
		}
		if wpid != pid {
			continue
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}

// nullStdio points the init's own stdin and stdout at /dev/null.
func nullStdio() error {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	for _, fd := range []int{0, 1} {
		if err := syscall.Dup3(int(null.Fd()), fd, 0); err != nil {
			return err
		}
	}
	return nil
}
