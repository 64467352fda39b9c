package manager

import (
	"context"
	"maps"
	"slices"
	"strings"
)

// Get describes one sandbox of the tenant of ctx.
func (m *Manager) Get(ctx context.Context, id string) (Info, error) {
	if err := m.checkID(id); err != nil {
		return Info{}, err
	}
	e, err := m.lookup(ctx, id)
	if err != nil {
		return Info{}, err
	}
	info := e.info()
	if sb := e.sandbox(); sb != nil && sb.Cgroup() != nil && info.State == StateRunning {
		g := sb.Cgroup()
		if st, err := g.Stats(); err == nil {
			info.Usage = &Usage{CPU: st.CPUUsage, Memory: st.MemoryCurrent}
		}
	}
	return info, nil
}

// List describes the sandboxes of the tenant of ctx that carry all labels
// of selector, oldest first.
func (m *Manager) List(ctx context.Context, selector map[string]string) []Info {
	m.mu.Lock()
	entries := slices.Collect(maps.Values(m.sandboxes))
	m.mu.Unlock()
	out := make([]Info, 0, len(entries))
	who := owner(ctx)
	for _, e := range entries {
		if e.tenant == who && matches(e.labels, selector) {
			out = append(out, e.info())
		}
	}
	slices.SortFunc(out, func(a, b Info) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

func matches(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Destroy removes a sandbox of the tenant of ctx and frees everything it
// held. An unknown ID is not an error: destroy is idempotent (an ID of
// another node is NotFound, so a misrouted call does not pass). Another
// tenant's sandbox is answered as an unknown one (and left alone).
func (m *Manager) Destroy(ctx context.Context, id string) error {
	if err := m.checkID(id); err != nil {
		return err
	}
	m.mu.Lock()
	e, ok := m.sandboxes[id]
	if ok && e.tenant != owner(ctx) {
		ok = false
	}
	if ok {
		delete(m.sandboxes, id)
	}
	m.mu.Unlock()
	if !ok {
		return nil
	}
	e.mu.Lock()
	e.gone = true
	e.mu.Unlock()
	m.log.Info("sandbox destroyed", "sandbox", id)
	return m.finish(context.WithoutCancel(ctx), e)
}
