package manager

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sandboxd/sandboxd/runtime/snapshot"
)

func (m *Manager) holdersDir() string { return filepath.Join(m.cfg.StateDir, "holders") }

// holderSocket is where the holder of sandbox id's pipes listens.
func (m *Manager) holderSocket(id string) string {
	return filepath.Join(m.holdersDir(), id+".sock")
}

// adopt takes over the sandboxes an earlier run of the daemon left in the
// state directory: each valid state record of a paused sandbox whose image
// is complete becomes a paused sandbox again, with its ID, template,
// limits, labels, times and counters (its image is verified in full at its
// first resume). Everything else is cleaned up and logged: damaged
// records, records of sandboxes that were running (they died with the
// daemon), images without a record and half-written images.
func (m *Manager) adopt() error {
	for _, dir := range []string{m.recordsDir(), m.pausedDir(), m.holdersDir()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
	}
	good, bad, err := scanRecords(m.recordsDir())
	if err != nil {
		return fmt.Errorf("reading state records: %w", err)
	}
	for id, why := range bad {
		m.log.Warn("damaged state record: the sandbox is not adopted and is cleaned up", "sandbox", id, "err", why)
	}
	adopted := map[string]bool{}
	for _, r := range good {
		if r.State != StatePaused {
			m.log.Warn("sandbox was running when the daemon stopped without pausing it: it is lost", "sandbox", r.ID, "template", r.Template.Name)
			m.removeRecord(r.ID)
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
			id: r.ID, tmpl: r.Template, labels: r.Labels, createdAt: r.CreatedAt, start: r.Start,
			state: StatePaused, pausedAt: r.PausedAt, image: dir, imageBytes: size,
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
		return fmt.Errorf("reading paused images: %w", err)
	}
	for _, de := range ents {
		if !adopted[de.Name()] {
			m.log.Info("removing a paused image no sandbox owns", "dir", de.Name())
			if err := os.RemoveAll(filepath.Join(m.pausedDir(), de.Name())); err != nil {
				return fmt.Errorf("removing leftover paused image: %w", err)
			}
		}
	}
	m.enforcePausedCap(context.Background())
	return nil
}
