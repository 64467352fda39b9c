package runsc

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// Delete force-deletes sandbox id: kills it if running and removes its
// state. Deleting a sandbox runsc does not know fails; callers that want
// idempotence check with List first or ignore the error. Either way, the
// control socket and lock file that a `runsc create` or `restore` killed
// before it saved the sandbox's state leaves behind are removed: runsc
// does not know such a sandbox, so its delete removes neither.
func (r *Runsc) Delete(ctx context.Context, id string) error {
	_, err := r.run(ctx, "delete", "--force", id)
	r.removeLeftovers(id)
	return err
}

// removeLeftovers removes the files of sandbox id in the runsc root that
// outlive a boot killed half-way, when runsc has no state for id. id is a
// validated sandbox ID, so the names stay in the root.
func (r *Runsc) removeLeftovers(id string) {
	if r.Root == "" {
		return
	}
	if _, err := os.Stat(filepath.Join(r.Root, id+"_sandbox:"+id+".state")); !errors.Is(err, fs.ErrNotExist) {
		return // runsc knows the sandbox (or the root is unreadable): its delete owns the files
	}
	for _, name := range []string{"runsc-" + id + ".sock", id + "_sandbox:" + id + ".lock"} {
		os.Remove(filepath.Join(r.Root, name))
	}
}
