package runsc

import (
	"context"
	"fmt"
)

// RestoreOpts are the inputs of Restore.
type RestoreOpts struct {
	CreateOpts
	// ImagePath is the directory of a checkpoint image made by the same
	// runsc binary with the same global flags.
	ImagePath string
	// Background lets the sandbox run while its memory is still being read
	// from the image (--background; needs an uncompressed image).
	Background bool
}

// Restore creates sandbox id from the bundle and restores the image into
// it; the restored sandbox runs when Restore returns (--detach). Like
// Create, runsc hands its stdio to the sandbox's init: the restored agent's
// fds 0-2 become o.Stdin, o.Stdout and o.Stderr.
func (r *Runsc) Restore(ctx context.Context, id string, o RestoreOpts) error {
	args := []string{"--detach", "--bundle=" + o.Bundle, "--image-path=" + o.ImagePath}
	if o.Background {
		args = append(args, "--background")
	}
	cmd := r.command(ctx, "restore", append(args, id)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	// As with create: wait for runsc only, never for EOF on the stdio the
	// sandbox keeps.
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("runsc restore: %w", err)
	}
	return nil
}
