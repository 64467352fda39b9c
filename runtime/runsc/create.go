package runsc

import (
	"context"
	"fmt"
	"os"
)

// CreateOpts are the inputs of Create.
type CreateOpts struct {
	// Bundle is the OCI bundle directory (config.json).
	Bundle string
	// Stdin, Stdout and Stderr become the container init's stdio: runsc
	// create hands its own fds 0-2 to the init. The caller closes its copies
	// once Create returns.
	Stdin, Stdout, Stderr *os.File
}

// Create creates (boots, without starting the init) sandbox id. runsc's own
// error messages go to o.Stderr, which the caller reads.
func (r *Runsc) Create(ctx context.Context, id string, o CreateOpts) error {
	cmd := r.command(ctx, "create", "--bundle="+o.Bundle, id)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	// Wait only for runsc to exit, never for EOF on its stdio: the sandbox
	// keeps those fds open for its whole life. Passing *os.File values
	// makes exec hand the fds over directly, with no copying goroutines.
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("runsc create: %w", err)
	}
	return nil
}
