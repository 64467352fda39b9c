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
	"runtime"
)

// agentProcs is the agent's GOMAXPROCS. Inside gVisor a Go thread handing
// work to another one is a host wake-up that costs far more than the
// work: one P keeps the agent's goroutines (gRPC reader, handler, writer,
// output readers) on one thread. Measured with sandboxctl bench: Python
// exec p50 4.2 -> 3.6 ms, p90 7.4 -> 4.7 ms.
const agentProcs = 1

func main() {
	runtime.GOMAXPROCS(agentProcs)
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
