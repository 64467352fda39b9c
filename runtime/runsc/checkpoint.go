package runsc

import "context"

// CheckpointOpts are the inputs of Checkpoint.
type CheckpointOpts struct {
	// ImagePath is the directory the image is written to (created by runsc
	// if missing).
	ImagePath string
	// ExcludeZeroPages leaves committed pages that are all zeros out of the
	// image (--exclude-committed-zero-pages): a smaller image to read back.
	ExcludeZeroPages bool
}

// Checkpoint saves sandbox id into o.ImagePath and stops it.
func (r *Runsc) Checkpoint(ctx context.Context, id string, o CheckpointOpts) error {
	// An uncompressed image is what restore --background needs, and
	// reading it costs no CPU for inflating.
	args := []string{"--image-path=" + o.ImagePath, "--compression=none"}
	if o.ExcludeZeroPages {
		args = append(args, "--exclude-committed-zero-pages")
	}
	_, err := r.run(ctx, "checkpoint", append(args, id)...)
	return err
}
