package manager

import (
	"context"
	"reflect"
	"slices"
	"sync"

	"github.com/sandboxd/sandboxd/policy"
	"github.com/sandboxd/sandboxd/runtime/pool"
)

// poolSet is the immutable set of pools of one policy; a reload swaps it.
type poolSet struct {
	byTemplate map[string]*pool.Pool
	templates  map[string]*policy.Template // what each pool boots
}

func (m *Manager) poolFor(template string) *pool.Pool {
	return m.pools.Load().byTemplate[template]
}

// UpdatePolicy puts a new (validated) policy in force: pools grow or shrink
// toward their new sizes, pools whose template changed are replaced, live
// sandboxes keep running as they are.
func (m *Manager) UpdatePolicy(p *policy.Policy) {
	m.policy.Store(p)
	m.slots.setMax(p.Host.MaxSandboxes)
	m.applySnapshots()
	m.applyPools(p)
	m.dropTenants(context.Background(), p)
	m.narrowEgress()
	m.log.Info("policy applied", "source", p.Source, "templates", len(p.Templates), "pools", len(p.Pools))
}

// applyPools makes the running pools match p.
func (m *Manager) applyPools(p *policy.Policy) {
	m.poolsMu.Lock()
	defer m.poolsMu.Unlock()
	old := m.pools.Load()
	next := &poolSet{byTemplate: map[string]*pool.Pool{}, templates: map[string]*policy.Template{}}
	var retired []*pool.Pool
	for _, pc := range p.Pools {
		tmpl := p.Templates[pc.Template]
		cfg := pool.Config{TargetIdle: pc.Idle, MaxTotal: pc.MaxTotal, MaxBooting: pc.MaxBooting}
		if cur, ok := old.byTemplate[pc.Template]; ok && reflect.DeepEqual(old.templates[pc.Template], tmpl) {
			cur.Resize(cfg)
			next.byTemplate[pc.Template], next.templates[pc.Template] = cur, tmpl
			continue
		}
		next.byTemplate[pc.Template] = pool.New(pc.Template, cfg, m.booter(tmpl, false), m.slots, m.log)
		next.templates[pc.Template] = tmpl
	}
	for name, cur := range old.byTemplate {
		if next.byTemplate[name] != cur {
			retired = append(retired, cur)
		}
	}
	m.pools.Store(next)
	// Retired pools destroy their idle sandboxes; sandboxes they handed out
	// stay with their clients.
	for _, r := range retired {
		go r.Close()
	}
}

// booter returns the function a pool makes its sandboxes with: restored
// from the template's snapshot when ready, unless bypassSnapshot, else
// booted.
func (m *Manager) booter(t *policy.Template, bypassSnapshot bool) pool.Booter {
	return func(ctx context.Context, idle bool) (pool.Sandbox, error) {
		sb, err := m.start(ctx, t, bypassSnapshot, idle)
		if err != nil {
			return nil, err
		}
		return sb, nil
	}
}

// Pools describes the pools in force, sorted by template.
func (m *Manager) Pools() []pool.Status {
	set := m.pools.Load()
	out := make([]pool.Status, 0, len(set.byTemplate))
	for _, p := range set.byTemplate {
		out = append(out, p.Status())
	}
	slices.SortFunc(out, func(a, b pool.Status) int {
		if a.Template < b.Template {
			return -1
		}
		if a.Template > b.Template {
			return 1
		}
		return 0
	})
	return out
}

// closePools stops every pool and destroys its idle sandboxes.
func (m *Manager) closePools() {
	m.poolsMu.Lock()
	set := m.pools.Load()
	m.pools.Store(&poolSet{})
	m.poolsMu.Unlock()
	var wg sync.WaitGroup
	for _, p := range set.byTemplate {
		wg.Go(p.Close)
	}
	wg.Wait()
}
