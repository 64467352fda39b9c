package main

import "golang.org/x/sys/unix"

// hideFromSandboxedCode clears this process's dumpable flag. Sandboxed code
// runs as the same user as the agent; without this it could open
// /proc/<agent>/fd/0 and /proc/<agent>/fd/1, the agent's channel to the
// daemon, and read or forge requests and results. For a non-dumpable
// process gVisor fails the ptrace access check that opening /proc/PID/fd/N,
// /proc/PID/mem and /proc/PID/environ needs (it still lists the fd numbers
// and fdinfo, which give no access). Children get the flag back when they
// exec, so sandboxed code is unaffected.
func hideFromSandboxedCode() error {
	return unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}
