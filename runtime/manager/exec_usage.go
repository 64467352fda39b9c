package manager

import (
	"log/slog"
	"sync"

	"google.golang.org/protobuf/types/known/durationpb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"github.com/sandboxd/sandboxd/runtime/cgroups"
	"github.com/sandboxd/sandboxd/runtime/sandbox"
)

// execUsage measures a sandbox's CPU time and peak memory during one Exec
// from its host cgroup, which the sandbox cannot forge.
type execUsage struct {
	log  *slog.Logger
	w    *cgroups.Window // nil: nothing to measure
	once sync.Once
	u    cgroups.Usage
	ok   bool
}

// measure starts measuring e's usage. A failure only costs the numbers.
func (m *Manager) measure(e *entry, sb *sandbox.Sandbox) *execUsage {
	x := &execUsage{log: m.log.With("sandbox", e.id)}
	if g := sb.Cgroup(); g != nil {
		w, err := g.StartWindow()
		if err != nil {
			x.log.Debug("not measuring the Exec's usage", "err", err)
		}
		x.w = w
	}
	return x
}

// end stops measuring; later calls do nothing.
func (x *execUsage) end() {
	x.once.Do(func() {
		if x.w == nil {
			return
		}
		u, err := x.w.End()
		if err != nil {
			// The sandbox died and its cgroup is gone, typically.
			x.log.Debug("reading the Exec's usage", "err", err)
			return
		}
		x.u, x.ok = u, true
	})
}

// wrap returns send with the usage filled into the result event.
func (x *execUsage) wrap(send func(*sandboxv1.ExecEvent) error) func(*sandboxv1.ExecEvent) error {
	return func(ev *sandboxv1.ExecEvent) error {
		if r := ev.GetResult(); r != nil {
			x.end()
			if x.ok {
				r.CpuTime = durationpb.New(x.u.CPU)
				r.PeakMemoryBytes = x.u.MemoryPeak
			}
		}
		return send(ev)
	}
}
