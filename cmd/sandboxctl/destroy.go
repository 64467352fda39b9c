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
		return c.eachID(ctx, cmd.name, ids, func(id string) error {
			_, err := client.DestroySandbox(ctx, &sandboxv1.DestroySandboxRequest{SandboxId: id})
			return err
		})
	}
	return cmd
}

// eachID calls do for each ID. A failure is reported (prefixed with its ID
// when there are several) and the remaining IDs still go; the exit status
// is then 1. It stops at once without a daemon or after Ctrl-C.
func (c *cli) eachID(ctx context.Context, verb string, ids []string, do func(id string) error) error {
	failed := false
	for _, id := range ids {
		err := do(id)
		if err == nil {
			continue
		}
		if ctx.Err() != nil || c.conn.unreachable(err) != nil {
			return err
		}
		msg := c.describe(err)
		if len(ids) > 1 {
			msg = id + ": " + msg
		}
		c.note(verb, msg)
		failed = true
	}
	if failed {
		return &exitError{exitFailure}
	}
	return nil
}
