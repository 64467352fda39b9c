// Package sandbox owns one gVisor sandbox: it writes the bundle, boots runsc
// with the agent as init on pipes it holds, connects gRPC to the agent over
// those pipes, notices when the sandbox dies and tears everything down
// exactly once.
package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"

	agentv1 "github.com/sandboxd/sandboxd/proto/agent/v1"
	"github.com/sandboxd/sandboxd/runtime/cgroups"
	"github.com/sandboxd/sandboxd/runtime/cleanup"
	"github.com/sandboxd/sandboxd/runtime/ocispec"
	"github.com/sandboxd/sandboxd/runtime/runsc"
)

// Config describes a sandbox to boot.
type Config struct {
	// ID is the sandbox ID, already validated.
	ID string
	// Spec are the OCI spec parameters.
	Spec ocispec.Params
	// BundleDir is the sandbox's own directory (created, then removed).
	BundleDir string
	// Runsc runs the sandbox; its flags carry the overlay size.
	Runsc *runsc.Runsc
	// StartPython starts the Python worker during boot, so the first Python
	// Exec does not pay for it.
	StartPython bool
	// PythonAddressSpace is RLIMIT_AS in bytes of the Python worker (policy
	// limits.python_address_space); 0: no cap.
	PythonAddressSpace int64
	// WarmImports are the template's warm imports: a boot imports them and
	// fails unless that succeeds; a restore checks they are loaded.
	WarmImports []string
	// Prefault makes a restore touch the interpreter's heap before it
	// returns (gc.collect walks every object), for a sandbox that will wait
	// in a pool: memory restored from an image is mapped on first touch,
	// one fault at a time, which otherwise slows the client's first Exec
	// (measured: pool hit to first print(1) 13.4 -> 9.8-11.1 ms, as for a
	// booted sandbox, 9.3 ms). A restore for a waiting client skips it.
	Prefault bool
	// Cgroup holds the sandbox's CPU and memory limits; the sandbox deletes
	// it on teardown. Nil: no cgroup.
	Cgroup *cgroups.Group
	// Logger receives the sandbox's events and its agent's stderr.
	Logger *slog.Logger
	// HolderSocket, if set, is where a holder process (runtime/holder)
	// listens that keeps a copy of the daemon's ends of the sandbox's
	// pipes, so that the sandbox outlives a crash of the daemon and a new
	// one can adopt it (Adopt). Empty: no holder.
	HolderSocket string
}

// Sandbox is a booted sandbox. Its methods are safe for concurrent use.
type Sandbox struct {
	id     string
	log    *slog.Logger
	conn   *grpc.ClientConn
	agent  agentv1.AgentServiceClient
	undo   cleanup.Stack
	cgroup *cgroups.Group // nil without one
	runsc  *runsc.Runsc
	// restored: made from a snapshot image, not booted.
	restored bool
	exited   chan struct{} // closed when the agent connection ends
	mu       sync.Mutex
	reason   string // why the sandbox ended, set once
	stopped  bool   // Destroy was called
	oom      bool   // the host killed it for going over its memory limit
	died     bool   // it ended on its own, before any Destroy
}

// ID returns the sandbox ID.
func (s *Sandbox) ID() string { return s.id }

// Restored reports whether the sandbox was restored from a snapshot image
// rather than booted.
func (s *Sandbox) Restored() bool { return s.restored }

// Cgroup returns the sandbox's cgroup, nil if it has none.
func (s *Sandbox) Cgroup() *cgroups.Group { return s.cgroup }

// Agent returns the client of the sandbox's agent.
func (s *Sandbox) Agent() agentv1.AgentServiceClient { return s.agent }

// Exited is closed when the sandbox's agent connection ends: the sandbox
// died or was destroyed.
func (s *Sandbox) Exited() <-chan struct{} { return s.exited }

// ExitReason says why the sandbox ended; empty while it runs.
func (s *Sandbox) ExitReason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason
}

// OOMKilled reports whether the sandbox ended because it went over its
// memory limit.
func (s *Sandbox) OOMKilled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.oom
}

// Died reports whether the sandbox ended on its own (crash, OOM kill, kill
// from outside) rather than by Destroy.
func (s *Sandbox) Died() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.died
}

// Destroyed reports whether Destroy was called.
func (s *Sandbox) Destroyed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// setReason records the first reason the sandbox ended.
func (s *Sandbox) setReason(r string) {
	s.mu.Lock()
	if s.reason == "" {
		s.reason = r
	}
	s.mu.Unlock()
}

// Destroy kills the sandbox and frees its pipes, runsc state and bundle. It
// is idempotent; every call returns the first teardown's result.
func (s *Sandbox) Destroy(ctx context.Context) error {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.setReason("destroyed")
	start := time.Now()
	err := s.undo.Run(ctx)
	s.log.Debug("sandbox destroyed", "took", time.Since(start), "err", err)
	if err != nil {
		return fmt.Errorf("destroying sandbox %s: %w", s.id, err)
	}
	return nil
}
