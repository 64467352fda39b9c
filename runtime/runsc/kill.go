package runsc

import "context"

// Kill sends signal (a name such as "USR2" or a number) to the init
// process of sandbox id.
func (r *Runsc) Kill(ctx context.Context, id, signal string) error {
	_, err := r.run(ctx, "kill", id, signal)
	return err
}
