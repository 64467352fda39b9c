package manager

import (
	"context"
	"fmt"
	"slices"

	"github.com/sandboxd/sandboxd/policy"
	"github.com/sandboxd/sandboxd/runtime/errdefs"
	"github.com/sandboxd/sandboxd/runtime/tenant"
)

// owner is the tenant a call acts for: the one its context carries, or
// tenant.Local for calls that carry none (the daemon's own, and every
// call when the policy has no tenants).
func owner(ctx context.Context) string {
	if name := tenant.FromContext(ctx); name != "" {
		return name
	}
	return tenant.Local
}

// admitTenant checks that the tenant of ctx may create a sandbox of tmpl,
// lowers tmpl's limits to the tenant's (the template as the request
// lowered it already) and holds a place in the tenant's quota: done gives
// it back, to be called once the sandbox is registered (it then counts as
// the tenant's) or its creation failed. atBoot says a limit fixed at boot
// was lowered.
func (m *Manager) admitTenant(ctx context.Context, tmpl *policy.Template) (_ *policy.Template, atBoot bool, done func(), _ error) {
	name := owner(ctx)
	t := m.Policy().Tenants[name]
	if t == nil {
		return tmpl, false, func() {}, nil // the implicit local tenant: no quota
	}
	if len(t.Templates) > 0 && !slices.Contains(t.Templates, tmpl.Name) {
		return nil, false, nil, fmt.Errorf("tenant %q may not use template %q (policy tenants.%s.templates: %v): %w", name, tmpl.Name, name, t.Templates, errdefs.ErrPermissionDenied)
	}
	tmpl, atBoot, err := lower(tmpl, tenantCaps(tmpl, t.Limits))
	if err != nil {
		return nil, false, nil, fmt.Errorf("the limits of tenant %q (policy tenants.%s.limits) do not fit template: %w", name, name, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if t.MaxSandboxes > 0 {
		n := m.pendingByTenant[name]
		for _, e := range m.sandboxes {
			if e.tenant == name && e.counts() {
				n++
			}
		}
		if n >= t.MaxSandboxes {
			return nil, false, nil, fmt.Errorf("tenant %q has %d sandboxes, its quota (policy tenants.%s.max_sandboxes): destroy one first: %w", name, n, name, errdefs.ErrResourceExhausted)
		}
	}
	m.pendingByTenant[name]++
	done = func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.pendingByTenant[name]--; m.pendingByTenant[name] <= 0 {
			delete(m.pendingByTenant, name)
		}
	}
	return tmpl, atBoot, done, nil
}

// counts reports whether e counts against its tenant's quota: running or
// paused, not dead.
func (e *entry) counts() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return !e.gone && e.state != StateDead
}

// tenantCaps returns the overrides that lower t's limits to a tenant's
// caps: only the caps that are set and below t's value, so that a cap
// above a template's is no error (lower() refuses raises).
func tenantCaps(t *policy.Template, caps policy.Limits) Limits {
	l := t.Limits
	var o Limits
	below := func(limit, tmpl int64) int64 {
		if limit > 0 && limit < tmpl {
			return limit
		}
		return 0
	}
	if caps.CPU > 0 && caps.CPU < l.CPU {
		o.CPU = caps.CPU
	}
	o.Memory = below(caps.Memory, l.Memory)
	o.Disk = below(caps.Disk, l.Disk)
	o.FileSize = below(caps.FileSize, l.FileSize)
	o.Output = below(caps.Output, l.Output)
	o.UploadFile = below(caps.UploadFile, l.UploadFile)
	o.UploadTotal = below(caps.UploadTotal, l.UploadTotal)
	o.DownloadFile = below(caps.DownloadFile, l.DownloadFile)
	o.DownloadTotal = below(caps.DownloadTotal, l.DownloadTotal)
	if l.PythonAddressSpace == 0 {
		o.PythonAddressSpace = caps.PythonAddressSpace // no cap in the template: any cap lowers it
	} else {
		o.PythonAddressSpace = below(caps.PythonAddressSpace, l.PythonAddressSpace)
	}
	o.Images.Bytes = below(caps.Images.Bytes, l.Images.Bytes)
	o.Processes = int(below(int64(caps.Processes), int64(l.Processes)))
	o.OpenFiles = int(below(int64(caps.OpenFiles), int64(l.OpenFiles)))
	o.Images.Count = int(below(int64(caps.Images.Count), int64(l.Images.Count)))
	o.EgressBytes = below(caps.EgressBytes, l.EgressBytes)
	o.EgressConnections = int(below(int64(caps.EgressConnections), int64(l.EgressConnections)))
	return o
}

// dropTenants destroys the sandboxes of tenants that p no longer has
// (a reload removed them). The implicit local tenant is never removed.
func (m *Manager) dropTenants(ctx context.Context, p *policy.Policy) {
	m.mu.Lock()
	var gone []*entry
	for _, e := range m.sandboxes {
		if e.tenant == tenant.Local {
			continue
		}
		if _, ok := p.Tenants[e.tenant]; !ok {
			gone = append(gone, e)
		}
	}
	m.mu.Unlock()
	for _, e := range gone {
		m.log.Warn("destroying the sandbox of a tenant the policy no longer has", "sandbox", e.id, "tenant", e.tenant)
		m.Destroy(tenant.NewContext(ctx, e.tenant), e.id)
	}
}
