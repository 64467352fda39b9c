package sandbox

import (
	"context"
	"fmt"

	agentv1 "github.com/sandboxd/sandboxd/proto/agent/v1"
	"github.com/sandboxd/sandboxd/runtime/runsc"
)

// Checkpoint quiesces the agent and writes the sandbox's image into dir,
// which stops the sandbox; the caller still destroys it to free the rest.
// Only for a sandbox that is idle and was never handed to a client: the
// image holds everything in its memory.
func (s *Sandbox) Checkpoint(ctx context.Context, dir string, o runsc.CheckpointOpts) error {
	if _, err := s.agent.Quiesce(ctx, &agentv1.QuiesceRequest{}); err != nil {
		return fmt.Errorf("quiescing the sandbox agent: %w", err)
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
