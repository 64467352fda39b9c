package main

import "golang.org/x/sys/unix"

// hideFromSandboxedCode clears this process's dumpable flag. Sandboxed code
// runs as the same user as the agent; without this it could open
// /proc/<agent>/fd/0 and /proc/<agent>/fd/1, the agent's channel to the
// daemon, and read or forge requests and results. A non-dumpable process's
// /proc files belong to root and fail the ptrace access check. Children get
// the flag back when they exec, so sandboxed code is unaffected.
func hideFromSandboxedCode() error {
	return unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}
