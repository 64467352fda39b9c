package main

import (
	"context"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// destroyCommand is "sandboxctl destroy".
func destroyCommand() *command {
	cmd := newCommand("destroy", "ID [ID...]", "destroy sandboxes", `
Destroy kills each sandbox and frees everything it held. Destroying an
unknown or already destroyed sandbox succeeds. A failure is reported and the
remaining IDs are still destroyed (with several IDs, the error line starts
with the ID that failed); the exit status is then 1. Prints nothing on
success.`, 1, -1)

	cmd.run = func(ctx context.Context, c *cli, ids []string) error {
		client, err := c.client()
		if err != nil {
			return err
		}
		failed := false
		for _, id := range ids {
			_, err := client.DestroySandbox(ctx, &sandboxv1.DestroySandboxRequest{SandboxId: id})
			if err == nil {
				continue
			}
			// No point going on without a daemon, nor after Ctrl-C.
			if ctx.Err() != nil || c.conn.unreachable(err) != nil {
				return err
			}
			msg := c.describe(err)
			if len(ids) > 1 {
				msg = id + ": " + msg
			}
			c.note(cmd.name, msg)
			failed = true
		}
		if failed {
			return &exitError{exitFailure}
		}
		return nil
	}
	return cmd
}
