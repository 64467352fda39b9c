package main

import (
	"context"
	"fmt"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// pauseCommand is "sandboxctl pause".
func pauseCommand() *command {
	return lifecycleCommand("pause", "pause sandboxes to disk", `
Pause checkpoints each sandbox to disk and frees its memory and processes;
its state (variables, files, background processes) is kept, and the next
exec, upload or download resumes it by itself. A sandbox running an exec or
a transfer is refused: pause it when it is idle. Prints each sandbox's ID
and new state. A failure is reported and the remaining IDs are still
paused; the exit status is then 1.`,
		func(ctx context.Context, client sandboxv1.SandboxServiceClient, id string) (*sandboxv1.Sandbox, error) {
			return client.PauseSandbox(ctx, &sandboxv1.PauseSandboxRequest{SandboxId: id})
		})
}

// resumeCommand is "sandboxctl resume".
func resumeCommand() *command {
	return lifecycleCommand("resume", "resume paused sandboxes", `
Resume restores each paused sandbox from its image, ahead of the next call
that would resume it anyway. Resuming a running sandbox does nothing. Prints
each sandbox's ID and new state. A failure is reported and the remaining
IDs are still resumed; the exit status is then 1.`,
		func(ctx context.Context, client sandboxv1.SandboxServiceClient, id string) (*sandboxv1.Sandbox, error) {
			return client.ResumeSandbox(ctx, &sandboxv1.ResumeSandboxRequest{SandboxId: id})
		})
}

// lifecycleCommand is a verb that moves each named sandbox to a new state
// with one RPC and prints "ID STATE" for each.
func lifecycleCommand(name, summary, help string, call func(context.Context, sandboxv1.SandboxServiceClient, string) (*sandboxv1.Sandbox, error)) *command {
	cmd := newCommand(name, "ID [ID...]", summary, help, 1, -1)
	cmd.run = func(ctx context.Context, c *cli, ids []string) error {
		client, err := c.client()
		if err != nil {
			return err
		}
		return c.eachID(ctx, cmd.name, ids, func(id string) error {
			sb, err := call(ctx, client, id)
			if err == nil {
				fmt.Fprintf(c.stdout, "%s %s\n", sb.GetSandboxId(), stateName(sb.GetState()))
			}
			return err
		})
	}
	return cmd
}
