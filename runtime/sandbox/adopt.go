package sandbox

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/sandboxd/sandboxd/runtime/holder"
	"github.com/sandboxd/sandboxd/runtime/stdioconn"
)

// reattachTimeout bounds the resync with a running agent: the agent
// answers within milliseconds; ten seconds allow for a host busy adopting
// every sandbox at once.
const reattachTimeout = 10 * time.Second

// Adopt takes over a sandbox that an earlier run of the daemon started and
// that kept running when that daemon died: files are the daemon's ends of
// its pipes (stdin's write end, stdout's and stderr's read ends) as its
// holder kept them (cfg.HolderSocket). It signals the agent to drop its
// old connection (runsc kill USR2), resynchronises the pipes
// (stdioconn.Reattach), connects and pings. cfg.Cgroup is the sandbox's
// existing cgroup. On failure the sandbox is torn down (runsc state,
// cgroup, bundle, holder) before Adopt returns.
func Adopt(ctx context.Context, cfg Config, files []*os.File) (_ *Sandbox, retErr error) {
	if len(files) != 3 {
		for _, f := range files {
			f.Close()
		}
		return nil, fmt.Errorf("adopting sandbox %s: its holder kept %d files, want 3", cfg.ID, len(files))
	}
	s := &Sandbox{id: cfg.ID, log: cfg.Logger.With("sandbox", cfg.ID), cgroup: cfg.Cgroup, runsc: cfg.Runsc, exited: make(chan struct{})}
	defer func() {
		if retErr != nil {
			s.setReason("adoption failed")
			tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
			defer cancel()
			if err := s.undo.Run(tctx); err != nil {
				s.log.Warn("cleaning up a sandbox that could not be adopted", "err", err)
			}
		}
	}()
	if g := cfg.Cgroup; g != nil {
		s.undo.Push("deleting cgroup", func(context.Context) error { return g.Delete() })
	}
	s.undo.Push("removing bundle", func(context.Context) error { return os.RemoveAll(cfg.BundleDir) })
	p := &pipes{inW: files[0], outR: files[1], errR: files[2]}
	s.undo.Push("closing pipes", func(context.Context) error { p.closeOurs(); return nil })
	if sock := cfg.HolderSocket; sock != "" {
		s.undo.Push("releasing holder", func(ctx context.Context) error { return ignoreGone(holder.Release(ctx, sock)) })
	}
	s.undo.Push("deleting runsc sandbox", func(ctx context.Context) error {
		return ignoreUnknown(cfg.Runsc.Delete(ctx, cfg.ID))
	})
	stderr := newTail(s.log)
	go stderr.drain(p.errR)

	t0 := time.Now()
	if err := cfg.Runsc.Kill(ctx, cfg.ID, "USR2"); err != nil {
		return nil, fmt.Errorf("asking the agent to resynchronise: %w", err)
	}
	deadline := time.Now().Add(reattachTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := p.outR.SetReadDeadline(deadline); err != nil {
		return nil, fmt.Errorf("resynchronising with the agent: %w", err)
	}
	if err := p.inW.SetWriteDeadline(deadline); err != nil {
		return nil, fmt.Errorf("resynchronising with the agent: %w", err)
	}
	if err := stdioconn.Reattach(p.outR, p.inW, stdioconn.MaxResyncDiscard); err != nil {
		return nil, fmt.Errorf("resynchronising with the agent: %w: %s", err, stderr.text())
	}
	if err := p.outR.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	if err := p.inW.SetWriteDeadline(time.Time{}); err != nil {
		return nil, err
	}
	t1 := time.Now()
	if err := s.connect(ctx, cfg, p, stderr); err != nil {
		return nil, err
	}
	s.log.Info("sandbox adopted", "resync", t1.Sub(t0), "agent_ready", time.Since(t1))
	return s, nil
}
