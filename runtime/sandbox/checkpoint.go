package sandbox

import (
	"context"
	"errors"
	"fmt"

	agentv1 "github.com/sandboxd/sandboxd/proto/agent/v1"
	"github.com/sandboxd/sandboxd/runtime/runsc"
)

// ErrNotQuiesced wraps a Checkpoint that failed before the agent let go of
// its connection: the sandbox still runs and serves as before.
var ErrNotQuiesced = errors.New("the sandbox agent did not quiesce")

// Checkpoint quiesces the agent and writes the sandbox's image into dir,
// which stops the sandbox; the caller still destroys it to free the rest.
// The sandbox must be idle (the agent refuses while an RPC runs). The image
// holds everything in the sandbox's memory: a template's snapshot is taken
// only of a sandbox never handed to a client, and a paused sandbox's image
// is its own, restored only into the same sandbox (Resume).
func (s *Sandbox) Checkpoint(ctx context.Context, dir string, o runsc.CheckpointOpts) error {
	if _, err := s.agent.Quiesce(ctx, &agentv1.QuiesceRequest{}); err != nil {
		return fmt.Errorf("quiescing the sandbox agent: %w: %w", ErrNotQuiesced, err)
	}
	// The sandbox stops with the checkpoint: that is not a death.
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.setReason("checkpointed")
	o.ImagePath = dir
	if err := s.runsc.Checkpoint(ctx, s.id, o); err != nil {
		return fmt.Errorf("checkpointing sandbox %s: %w", s.id, err)
	}
	return nil
}
