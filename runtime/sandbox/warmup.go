package sandbox

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// warmupTimeout bounds the warm-up cell: importing the whole scientific
// stack takes ~1 s in gVisor; a minute means something is wrong.
const warmupTimeout = time.Minute

// maxWarmupOutput bounds what is kept of the warm-up's stderr for the error.
const maxWarmupOutput = 2048

// WarmupCode returns the Python cell that imports modules, or "" for none.
// Module names come from a validated policy (dotted identifiers).
func WarmupCode(modules []string) string {
	if len(modules) == 0 {
		return ""
	}
	return "import " + strings.Join(modules, ", ")
}

// warmup runs code in the Python worker and requires it to succeed: it is
// the readiness probe of a warm sandbox.
func (s *Sandbox) warmup(ctx context.Context, code string) error {
	ctx, cancel := context.WithTimeout(ctx, warmupTimeout)
	defer cancel()
	stream, err := s.agent.Exec(ctx, &sandboxv1.ExecRequest{
		Language: sandboxv1.Language_LANGUAGE_PYTHON, Code: code, Timeout: durationpb.New(warmupTimeout),
	})
	if err != nil {
		return fmt.Errorf("warming up: %w", err)
	}
	var stderr strings.Builder
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return fmt.Errorf("warming up: no result from the agent")
		}
		if err != nil {
			return fmt.Errorf("warming up: %w", err)
		}
		if e := ev.GetStderr(); e != nil && stderr.Len() < maxWarmupOutput {
			stderr.Write(e[:min(len(e), maxWarmupOutput-stderr.Len())])
		}
		if r := ev.GetResult(); r != nil {
			if r.GetStatus() != sandboxv1.ExecStatus_EXEC_STATUS_OK {
				return fmt.Errorf("warm-up %q failed (%v): %s", code, r.GetStatus(), strings.TrimSpace(stderr.String()))
			}
			return nil
		}
	}
}
