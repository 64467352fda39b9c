// Command sandboxd is the sandboxd daemon: it serves sandbox.v1.SandboxService
// over a unix socket (and optionally loopback TCP), running each sandbox in
// gVisor. `sandboxd check-policy FILE` validates a policy file and exits;
// `sandboxd hash-token` prints the SHA-256 of a tenant's bearer token (read
// from standard input) for the policy.
package main

import (
	"fmt"
	"os"

	"github.com/sandboxd/sandboxd/runtime/holder"
)

// Set at build time by the Makefile (-ldflags -X) to the cached runsc binary
// and rootfs that `make runsc` and `make rootfs` produce, so the daemon runs
// with no configuration.
var (
	defaultRunsc  string
	defaultRootfs string
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "check-policy" {
		os.Exit(checkPolicy(args[1:], os.Stdout, os.Stderr))
	}
	if len(args) > 0 && args[0] == "hash-token" {
		os.Exit(hashToken(args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	if len(args) > 0 && args[0] == healthSubcommand {
		os.Exit(healthCheck(args[1:], os.Stdout, os.Stderr))
	}
	if len(args) > 0 && args[0] == holder.Subcommand {
		os.Exit(holder.Main(args[1:]))
	}
	if err := runDaemon(args); err != nil {
		fmt.Fprintf(os.Stderr, "sandboxd: %v\n", err)
		os.Exit(1)
	}
}
