package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	agentv1 "github.com/sandboxd/sandboxd/proto/agent/v1"
	"github.com/sandboxd/sandboxd/runtime/ocispec"
	"github.com/sandboxd/sandboxd/runtime/runsc"
)

// teardownTimeout bounds how long tearing down a failed or destroyed sandbox
// may take; runsc delete normally takes ~10 ms.
const teardownTimeout = 30 * time.Second

// Boot creates, starts and connects to a sandbox. On failure everything it
// acquired is released before it returns. ctx bounds the whole boot.
func Boot(ctx context.Context, cfg Config) (_ *Sandbox, retErr error) {
	s := &Sandbox{id: cfg.ID, log: cfg.Logger.With("sandbox", cfg.ID), cgroup: cfg.Cgroup, exited: make(chan struct{})}
	defer func() {
		if retErr != nil {
			s.setReason("boot failed")
			tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
			defer cancel()
			if err := s.undo.Run(tctx); err != nil {
				s.log.Warn("cleaning up failed boot", "err", err)
			}
		}
	}()

	if g := cfg.Cgroup; g != nil {
		// Pushed first, so it runs last: after runsc delete has killed
		// everything in the group.
		s.undo.Push("deleting cgroup", func(context.Context) error { return g.Delete() })
		cfg.Spec.CgroupsPath = g.Path()
	}
	if err := writeBundle(cfg.BundleDir, cfg.Spec); err != nil {
		return nil, err
	}
	s.undo.Push("removing bundle", func(context.Context) error { return os.RemoveAll(cfg.BundleDir) })

	p, err := newPipes()
	if err != nil {
		return nil, err
	}
	s.undo.Push("closing pipes", func(context.Context) error { p.closeOurs(); return nil })
	stderr := newTail(s.log)
	go stderr.drain(p.errR)

	// Registered before create: a create that fails half-way can leave
	// state behind, and delete --force of an unknown ID is harmless.
	s.undo.Push("deleting runsc sandbox", func(ctx context.Context) error {
		return ignoreUnknown(cfg.Runsc.Delete(ctx, cfg.ID))
	})
	t0 := time.Now()
	err = cfg.Runsc.Create(ctx, cfg.ID, runsc.CreateOpts{Bundle: cfg.BundleDir, Stdin: p.inR, Stdout: p.outW, Stderr: p.errW})
	p.closeTheirs()
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, stderr.text())
	}
	t1 := time.Now()
	if err := cfg.Runsc.Start(ctx, cfg.ID); err != nil {
		return nil, err
	}
	t2 := time.Now()

	conn, err := dialAgent(p.outR, p.inW, func() {
		s.mu.Lock()
		s.died = !s.stopped
		s.mu.Unlock()
		// The host's OOM kill is counted before the pipes close.
		if g := cfg.Cgroup; g != nil && s.Died() {
			if oom, _ := g.OOMKilled(); oom {
				s.mu.Lock()
				s.oom = true
				s.mu.Unlock()
				s.setReason("OOM_KILLED: the sandbox went over its memory limit and the host killed it")
			}
		}
		s.setReason("sandbox exited: " + stderr.lastLine())
		close(s.exited)
	})
	if err != nil {
		return nil, err
	}
	s.conn = conn
	s.agent = agentv1.NewAgentServiceClient(conn)
	s.undo.Push("closing agent connection", func(context.Context) error { return conn.Close() })

	ping := &agentv1.PingRequest{
		StartPython:        cfg.StartPython,
		PythonAddressSpace: cfg.PythonAddressSpace,
		CodeProcesses:      int64(cfg.Spec.CodeProcesses()),
	}
	if _, err := s.agent.Ping(ctx, ping); err != nil {
		return nil, fmt.Errorf("waiting for the sandbox agent: %w: %s", err, stderr.text())
	}
	t3 := time.Now()
	if cfg.Warmup != "" {
		if err := s.warmup(ctx, cfg.Warmup); err != nil {
			return nil, err
		}
	}
	s.log.Debug("sandbox booted", "create", t1.Sub(t0), "start", t2.Sub(t1), "agent_ready", t3.Sub(t2), "warmup", time.Since(t3))
	return s, nil
}

// writeBundle writes the OCI bundle (config.json) into a new directory that
// only root can read.
func writeBundle(dir string, p ocispec.Params) error {
	spec, err := ocispec.Build(p)
	if err != nil {
		return fmt.Errorf("building OCI spec: %w", err)
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("encoding OCI spec: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("creating bundle: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("writing bundle: %w", err)
	}
	return nil
}
