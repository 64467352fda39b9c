package runsc

import "context"

// Delete force-deletes sandbox id: kills it if running and removes its
// state. Deleting a sandbox runsc does not know fails; callers that want
// idempotence check with List first or ignore the error.
func (r *Runsc) Delete(ctx context.Context, id string) error {
	_, err := r.run(ctx, "delete", "--force", id)
	return err
}
