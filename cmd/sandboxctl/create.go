package main

import (
	"context"
	"fmt"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// createCommand is "sandboxctl create".
func createCommand() *command {
	cmd := newCommand("create", "", "create a sandbox and print its ID", `
Create boots a sandbox from a template of the daemon's policy and prints its
ID alone on a line, so that scripts can do id=$(sandboxctl create).
With --json it prints the whole sandbox instead (start says whether it was
taken warm from the template's pool, restored from its snapshot or booted
for the request).

The flags that name a policy key (--memory 512Mi, --cpu 0.5, --exec-timeout
30s, ...) lower the template's limits for this sandbox only: the daemon
refuses a value above the template's (invalid argument), and a flag left
out keeps the template's value. Sizes are written as in the policy file
(512Mi, 1G, 1048576), durations as 90s, 10m or 1h30m. Lowering a limit
fixed at boot (cpu, memory, disk, processes, open files, file size, Python
address space) boots a fresh sandbox instead of taking one from the pool.
"sandboxctl get" shows the limits in force.

--allow narrows the egress allowlist of a template with network: allowlist
for this sandbox: give each entry with its own --allow, written as in the
policy's egress.allow (HOST, *.DOMAIN or CIDR, each with optional
:PORT[,PORT]). Every entry must lie within the template's list; a wider
one is refused (invalid argument). Without --allow the sandbox gets the
template's list. "sandboxctl egress" changes it later.`, 0, 0)
	template := cmd.flags.String("template", "", "policy `NAME` of the template (default: the policy's default template)")
	labels := keyValues{}
	cmd.flags.Var(labels, "label", "attach label `KEY=VALUE` to the sandbox (repeatable)")
	asJSON := cmd.flags.Bool("json", false, "print the sandbox as JSON")
	bypass := cmd.flags.Bool("bypass-pool", false, "make a fresh sandbox even if the pool has one ready (restored when the template's snapshot is ready)")
	bypassSnapshot := cmd.flags.Bool("bypass-snapshot", false, "boot a fresh sandbox in full, from neither the pool nor the template's snapshot")
	limits := addLimitFlags(cmd.flags)
	var allow []string
	cmd.flags.Func("allow", "narrow the template's egress allowlist to `ENTRY` (repeatable; within the template's list)", func(s string) error {
		allow = append(allow, s)
		return nil
	})

	cmd.run = func(ctx context.Context, c *cli, _ []string) error {
		client, err := c.client()
		if err != nil {
			return err
		}
		sb, err := client.CreateSandbox(ctx, &sandboxv1.CreateSandboxRequest{
			Template:       *template,
			Labels:         labels,
			BypassPool:     *bypass,
			BypassSnapshot: *bypassSnapshot,
			Limits:         limitsRequest(limits),
			EgressAllow:    allow,
		})
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(c.stdout, false, sb)
		}
		_, err = fmt.Fprintln(c.stdout, sb.GetSandboxId())
		return err
	}
	return cmd
}
