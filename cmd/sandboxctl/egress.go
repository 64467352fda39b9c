package main

import (
	"context"
	"fmt"
	"strings"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// egressCommand is "sandboxctl egress".
func egressCommand() *command {
	cmd := newCommand("egress", "ID [ENTRY...]", "show or narrow a sandbox's egress allowlist", `
Egress replaces the egress allowlist of a running or paused sandbox of a
template with network: allowlist by the ENTRYs given, and prints the list in
force, one entry a line. Entries are written as in the policy's
egress.allow: HOST, *.DOMAIN or CIDR, each with optional :PORT[,PORT]
(80 and 443 without). The list must lie within the template's: the daemon
refuses a wider one (invalid argument) and leaves the list as it was.
Connections open already go on; new ones are decided under the new list.
--none closes the sandbox's egress (an empty list). Without ENTRYs or
--none, egress only prints the list in force. With --json it prints the
sandbox as JSON.`, 1, -1)
	none := cmd.flags.Bool("none", false, "close the sandbox's egress: replace its allowlist by an empty one")
	asJSON := cmd.flags.Bool("json", false, "print the sandbox as JSON")

	cmd.run = func(ctx context.Context, c *cli, args []string) error {
		id, entries := args[0], args[1:]
		if *none && len(entries) > 0 {
			return usagef("--none closes egress: give no ENTRY with it")
		}
		client, err := c.client()
		if err != nil {
			return err
		}
		var sb *sandboxv1.Sandbox
		if *none || len(entries) > 0 {
			sb, err = client.UpdateSandboxEgress(ctx, &sandboxv1.UpdateSandboxEgressRequest{SandboxId: id, Allow: entries})
		} else {
			sb, err = client.GetSandbox(ctx, &sandboxv1.GetSandboxRequest{SandboxId: id})
		}
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(c.stdout, false, sb)
		}
		if allow := sb.GetEgressAllow(); len(allow) > 0 {
			_, err = fmt.Fprintln(c.stdout, strings.Join(allow, "\n"))
		}
		return err
	}
	return cmd
}
