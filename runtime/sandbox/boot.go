package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	agentv1 "github.com/sandboxd/sandboxd/proto/agent/v1"
	"github.com/sandboxd/sandboxd/runtime/holder"
	"github.com/sandboxd/sandboxd/runtime/ocispec"
	"github.com/sandboxd/sandboxd/runtime/runsc"
)

// teardownTimeout bounds how long tearing down a failed or destroyed sandbox
// may take; runsc delete normally takes ~10 ms.
const teardownTimeout = 30 * time.Second

// Boot creates, starts and connects to a sandbox. On failure everything it
// acquired is released before it returns. ctx bounds the whole boot.
func Boot(ctx context.Context, cfg Config) (*Sandbox, error) {
	return launch(ctx, cfg, func(s *Sandbox, p *pipes, stderr *tail) error {
		t0 := time.Now()
		err := cfg.Runsc.Create(ctx, cfg.ID, runsc.CreateOpts{Bundle: cfg.BundleDir, Stdin: p.inR, Stdout: p.outW, Stderr: p.errW})
		p.closeTheirs()
		if err != nil {
			return fmt.Errorf("%w: %s", err, stderr.text())
		}
		t1 := time.Now()
		if err := cfg.Runsc.Start(ctx, cfg.ID); err != nil {
			return err
		}
		t2 := time.Now()
		if err := s.connect(ctx, cfg, p, stderr); err != nil {
			return err
		}
		t3 := time.Now()
		if code := warmupCode(cfg.WarmImports); code != "" {
			if err := s.warmup(ctx, code); err != nil {
				return err
			}
		}
		s.log.Debug("sandbox booted", "create", t1.Sub(t0), "start", t2.Sub(t1), "agent_ready", t3.Sub(t2), "warmup", time.Since(t3))
		return nil
	})
}

// Restore makes a sandbox from a checkpoint image of a warmed sandbox of
// the same template (same spec but for the cgroup, same runsc flags): runsc
// restores it on fresh pipes, the agent serves the new connection, the
// clone reseeds what the template's processes had seeded, and the same
// readiness probe as a boot's (the warm imports are loaded) must pass. On
// failure everything it acquired is released before it returns.
func Restore(ctx context.Context, cfg Config, image string) (*Sandbox, error) {
	return launch(ctx, cfg, func(s *Sandbox, p *pipes, stderr *tail) error {
		restore, agentReady, err := s.restoreImage(ctx, cfg, image, p, stderr)
		if err != nil {
			return err
		}
		t := time.Now()
		if err := s.warmup(ctx, restoreProbe(cfg.WarmImports, cfg.Prefault)); err != nil {
			return err
		}
		s.log.Debug("sandbox restored", "restore", restore, "agent_ready", agentReady, "reseed", time.Since(t))
		return nil
	})
}

// Resume restores a paused sandbox from the image its Checkpoint wrote: the
// same sandbox again, with its ID, memory, processes and files. Unlike
// Restore it runs no probe and reseeds nothing (a client's seeded random
// generators must go on where they were); the agent's Ping is the
// readiness check. On failure everything it acquired is released before
// it returns.
func Resume(ctx context.Context, cfg Config, image string) (*Sandbox, error) {
	return launch(ctx, cfg, func(s *Sandbox, p *pipes, stderr *tail) error {
		restore, agentReady, err := s.restoreImage(ctx, cfg, image, p, stderr)
		if err != nil {
			return err
		}
		s.log.Debug("sandbox resumed", "restore", restore, "agent_ready", agentReady)
		return nil
	})
}

// restoreImage restores image into the sandbox on the fresh pipes p (runsc
// restore --background rebinds the agent's stdio to them) and connects to
// the agent, which serves the new connection. It returns how long each of
// the two took.
func (s *Sandbox) restoreImage(ctx context.Context, cfg Config, image string, p *pipes, stderr *tail) (restore, agentReady time.Duration, _ error) {
	s.restored = true
	t0 := time.Now()
	err := cfg.Runsc.Restore(ctx, cfg.ID, runsc.RestoreOpts{
		CreateOpts: runsc.CreateOpts{Bundle: cfg.BundleDir, Stdin: p.inR, Stdout: p.outW, Stderr: p.errW},
		ImagePath:  image,
		Background: true,
	})
	p.closeTheirs()
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %s", err, stderr.text())
	}
	t1 := time.Now()
	if err := s.connect(ctx, cfg, p, stderr); err != nil {
		return 0, 0, err
	}
	return t1.Sub(t0), time.Since(t1), nil
}

// launch prepares what every sandbox needs (cgroup clean-up, bundle, stdio
// pipes), then runs start, which brings the sandbox up and connects to it.
// On failure everything acquired is released before it returns.
func launch(ctx context.Context, cfg Config, start func(*Sandbox, *pipes, *tail) error) (_ *Sandbox, retErr error) {
	s := &Sandbox{id: cfg.ID, log: cfg.Logger.With("sandbox", cfg.ID), cgroup: cfg.Cgroup, runsc: cfg.Runsc, exited: make(chan struct{})}
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
	if sock := cfg.HolderSocket; sock != "" {
		if _, err := holder.Spawn(ctx, sock, []*os.File{p.inW, p.outR, p.errR}); err != nil {
			return nil, err
		}
		// Released before the pipes close (the stack runs in reverse), so
		// nothing keeps the sandbox's stdio open once it is torn down.
		s.undo.Push("releasing holder", func(ctx context.Context) error { return ignoreGone(holder.Release(ctx, sock)) })
	}
	stderr := newTail(s.log)
	go stderr.drain(p.errR)

	// Registered before create: a create that fails half-way can leave
	// state behind, and delete --force of an unknown ID is harmless.
	s.undo.Push("deleting runsc sandbox", func(ctx context.Context) error {
		return ignoreUnknown(cfg.Runsc.Delete(ctx, cfg.ID))
	})
	if err := start(s, p, stderr); err != nil {
		return nil, err
	}
	return s, nil
}

// connect runs the gRPC client over the sandbox's pipes and waits until
// the agent answers a Ping.
func (s *Sandbox) connect(ctx context.Context, cfg Config, p *pipes, stderr *tail) error {
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
		return err
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
		return fmt.Errorf("waiting for the sandbox agent: %w: %s", err, stderr.text())
	}
	return nil
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
