// Command sandbox-agent is the init process of every sandboxd sandbox. The
// daemon bind-mounts it read-only at /.sandboxd/agent and runs it as PID 1,
// as the unprivileged sandbox user. Run with no arguments it is the init
// (see init.go): it starts "sandbox-agent serve" and reaps orphans. The serve
// process answers agent.v1.AgentService over gRPC on its stdin/stdout: it
// runs bash and Python code and reads and writes files.
package main

import (
	"fmt"
	"os"
)

func main() {
	switch {
	case len(os.Args) == 1:
		os.Exit(runInit())
	case len(os.Args) == 2 && os.Args[1] == "serve":
		os.Exit(runServe())
	default:
		fmt.Fprintln(os.Stderr, "usage: sandbox-agent [serve]")
		os.Exit(2)
	}
}
