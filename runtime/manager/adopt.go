package manager

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sandboxd/sandboxd/runtime/holder"
	"github.com/sandboxd/sandboxd/runtime/identifiers"
	"github.com/sandboxd/sandboxd/runtime/sandbox"
	"github.com/sandboxd/sandboxd/runtime/snapshot"
)

func (m *Manager) holdersDir() string { return filepath.Join(m.cfg.StateDir, "holders") }

// holderSocket is where the holder of sandbox id's pipes listens.
func (m *Manager) holderSocket(id string) string {
	return filepath.Join(m.holdersDir(), id+".sock")
}

// adoptTimeout bounds adopting one running sandbox (fetching its pipes,
// resynchronising, a Ping); it normally takes tens of milliseconds.
const adoptTimeout = 30 * time.Second

// adopt takes over the sandboxes an earlier run of the daemon left in the
// state directory, with their IDs, templates, limits, labels, times and
// counters, and returns their IDs (reconcile leaves them alone):
//   - a paused sandbox whose image is complete becomes paused again (its
//     image is verified in full at its first resume);
//   - a running sandbox whose holder still keeps its pipes (the daemon
//     crashed) becomes running again, reattached to its agent.
//
// Everything else is logged and left for reconcile to clean up: damaged
// records, running sandboxes whose holder or agent is gone, images without
// a record and half-written images.
func (m *Manager) adopt(ctx context.Context) (map[string]bool, error) {
	for _, dir := range []string{m.recordsDir(), m.pausedDir(), m.holdersDir()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating %s: %w", dir, err)
		}
	}
	good, bad, err := scanRecords(m.recordsDir())
	if err != nil {
		return nil, fmt.Errorf("reading state records: %w", err)
	}
	for id, why := range bad {
		m.log.Warn("damaged state record: the sandbox is not adopted and is cleaned up", "sandbox", id, "err", why)
	}
	adopted := map[string]bool{}
	for _, r := range good {
		if node, ok := identifiers.NodeOf(r.ID); ok && node != m.cfg.Node {
			m.log.Warn("adopting a sandbox whose ID names another node address: clients route its calls there, so it is unreachable until the daemon runs with that --node-address again",
				"sandbox", r.ID, "id_node", node, "node", m.cfg.Node)
		}
		if r.State == StateRunning {
			if err := m.adoptRunning(ctx, r); err != nil {
				m.log.Warn("sandbox was running when the daemon stopped and cannot be adopted: it is lost", "sandbox", r.ID, "template", r.Template.Name, "err", err)
				m.removeRecord(r.ID)
				continue
			}
			adopted[r.ID] = true
			continue
		}
		dir := filepath.Join(m.pausedDir(), r.ID)
		size, err := snapshot.ManifestBytes(dir)
		if err != nil {
			m.log.Warn("paused sandbox has no complete image: it is lost", "sandbox", r.ID, "err", err)
			m.removeRecord(r.ID)
			continue
		}
		e := &entry{
			id: r.ID, tenant: r.owner(), tmpl: r.Template, labels: r.Labels, createdAt: r.CreatedAt, start: r.Start,
			state: StatePaused, pausedAt: r.PausedAt, image: dir, imageBytes: size, egress: r.egress(),
		}
		e.lastUsed.Store(r.LastUsed.UnixNano())
		e.uploaded.Store(r.Uploaded)
		e.downloaded.Store(r.Downloaded)
		m.sandboxes[r.ID] = e
		m.paused.add(size)
		adopted[r.ID] = true
		m.log.Info("adopted paused sandbox", "sandbox", r.ID, "template", r.Template.Name, "paused_at", r.PausedAt, "image_bytes", size)
	}
	ents, err := os.ReadDir(m.pausedDir())
	if err != nil {
		return nil, fmt.Errorf("reading paused images: %w", err)
	}
	for _, de := range ents {
		if !adopted[de.Name()] {
			m.log.Info("removing a paused image no sandbox owns", "dir", de.Name())
			if err := os.RemoveAll(filepath.Join(m.pausedDir(), de.Name())); err != nil {
				return nil, fmt.Errorf("removing leftover paused image: %w", err)
			}
		}
	}
	m.enforcePausedCap(ctx)
	return adopted, nil
}

// adoptRunning reattaches to a sandbox that ran when the daemon died: its
// holder hands over the pipes, its cgroup is loaded, and the agent is
// resynchronised and pinged. It takes a host slot even over the limit (the
// sandbox exists either way); the idle clocks start again from now.
func (m *Manager) adoptRunning(ctx context.Context, r record) error {
	ctx, cancel := context.WithTimeout(ctx, adoptTimeout)
	defer cancel()
	files, err := holder.Get(ctx, m.holderSocket(r.ID))
	if err != nil {
		return err
	}
	group, err := m.cfg.Cgroups.Load(r.ID)
	if err != nil {
		for _, f := range files {
			f.Close()
		}
		return fmt.Errorf("loading its cgroup: %w", err)
	}
	cfg := m.sandboxConfig(r.ID, r.Template)
	cfg.Cgroup = group
	sb, err := sandbox.Adopt(ctx, cfg, files)
	if err != nil {
		return err
	}
	m.slots.acquireAnyway()
	e := &entry{
		id: r.ID, tenant: r.owner(), tmpl: r.Template, labels: r.Labels, createdAt: r.CreatedAt, start: r.Start,
		state: StateRunning, sb: sb, release: m.slots.Release, egress: r.egress(),
	}
	e.touch()
	e.uploaded.Store(r.Uploaded)
	e.downloaded.Store(r.Downloaded)
	m.sandboxes[r.ID] = e
	m.saveRecord(e)
	go m.watch(e, sb)
	m.startEgress(e, sb)
	m.log.Info("adopted running sandbox", "sandbox", r.ID, "template", r.Template.Name)
	return nil
}
