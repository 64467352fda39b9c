package manager

import (
	"context"
	"fmt"
	"time"
)

// reapInterval is how often lifetimes and idle timeouts are checked: their
// resolution is a second, plenty for limits of minutes.
const reapInterval = time.Second

// reap ends sandboxes past their lifetime or idle timeout, pauses those
// idle for their template's pause_after and forgets dead sandboxes after
// DeadRetention.
func (m *Manager) reap(ctx context.Context) {
	defer close(m.reaperDone)
	t := time.NewTicker(reapInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.reapOnce(ctx)
		}
	}
}

func (m *Manager) reapOnce(ctx context.Context) {
	n := now()
	m.mu.Lock()
	var expired, idle []*entry
	var reasons []string
	for id, e := range m.sandboxes {
		st, _ := e.status()
		switch {
		case st == StateDead:
			e.mu.Lock()
			gone := n.Sub(e.deadAt) > DeadRetention
			e.mu.Unlock()
			if gone {
				delete(m.sandboxes, id)
			}
		case n.After(e.expiresAt()):
			expired = append(expired, e)
			reasons = append(reasons, fmt.Sprintf("lifetime of %s reached", e.tmpl.Lifetime))
		case e.inflight.Load() == 0 && n.Sub(e.idleSince()) > e.tmpl.IdleTimeout:
			expired = append(expired, e)
			reasons = append(reasons, fmt.Sprintf("idle for more than %s", e.tmpl.IdleTimeout))
		case st == StateRunning && e.tmpl.PauseAfter > 0 && e.inflight.Load() == 0 && n.Sub(e.idleSince()) > e.tmpl.PauseAfter:
			idle = append(idle, e)
		}
	}
	m.mu.Unlock()
	for _, e := range idle {
		m.autoPause(ctx, e)
	}
	for i, e := range expired {
		if !e.markDead(reasons[i]) {
			continue
		}
		m.log.Info("sandbox expired", "sandbox", e.id, "reason", reasons[i])
		if err := m.finish(ctx, e); err != nil {
			m.log.Warn("destroying expired sandbox", "sandbox", e.id, "err", err)
		}
	}
}
