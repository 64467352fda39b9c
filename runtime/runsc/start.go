package runsc

import "context"

// Start starts the init of a created sandbox.
func (r *Runsc) Start(ctx context.Context, id string) error {
	_, err := r.run(ctx, "start", id)
	return err
}
