package manager

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sandboxd/sandboxd/policy"
	"github.com/sandboxd/sandboxd/runtime/ocispec"
	"github.com/sandboxd/sandboxd/runtime/runsc"
	"github.com/sandboxd/sandboxd/runtime/snapshot"
)

// snapshotsDir is where template images live under the state directory.
func (m *Manager) snapshotsDir() string { return filepath.Join(m.cfg.StateDir, "snapshots") }

// applySnapshots asks the store for the images of the policy in force.
// Calls are serialised and each reads the policy inside, so the last one
// applies the newest policy.
func (m *Manager) applySnapshots() {
	m.snapshotsMu.Lock()
	defer m.snapshotsMu.Unlock()
	p := m.Policy()
	var wants []snapshot.Want
	for name, t := range p.Templates {
		w := snapshot.Want{Template: name}
		if t.Snapshot {
			key, err := m.snapshotKey(t)
			if err != nil {
				m.log.Warn("cannot snapshot template; its sandboxes boot in full", "template", name, "err", err)
			} else {
				w.Key, w.Build = key, m.snapshotBuilder(t)
			}
		}
		wants = append(wants, w)
	}
	m.snapshots.Apply(wants)
}

// snapshotKey returns the image key of t: a hash of everything that shapes
// its image.
func (m *Manager) snapshotKey(t *policy.Template) (string, error) {
	cfg := m.sandboxConfig("", t)
	spec, err := ocispec.Build(cfg.Spec) // no cgroup path: it differs per sandbox
	if err != nil {
		return "", err
	}
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return "", err
	}
	runscDigest, err := snapshot.FileDigest(m.cfg.Runsc.Binary)
	if err != nil {
		return "", fmt.Errorf("hashing runsc: %w", err)
	}
	agentDigest, err := snapshot.FileDigest(m.cfg.AgentBinary)
	if err != nil {
		return "", fmt.Errorf("hashing the agent: %w", err)
	}
	rootfs, err := rootfsID(cfg.Spec.RootfsDir)
	if err != nil {
		return "", err
	}
	return snapshot.Key(snapshot.KeyInputs{
		RunscDigest:        runscDigest,
		AgentDigest:        agentDigest,
		Rootfs:             rootfs,
		Spec:               specJSON,
		RunscArgs:          cfg.Runsc.SandboxArgs(),
		CPU:                t.Limits.CPU,
		Memory:             t.Limits.Memory,
		PythonAddressSpace: t.Limits.PythonAddressSpace,
		CodeProcesses:      int64(cfg.Spec.CodeProcesses()),
		WarmImports:        t.WarmImports,
	}), nil
}

// rootfsID identifies a rootfs directory: its path (the built rootfs's
// path carries the hash of its build inputs) and the modification times of
// the directories a package install changes, so a rootfs edited in place
// is not restored from an image of its old self.
func rootfsID(dir string) (string, error) {
	id := dir
	for _, sub := range []string{".", "usr/lib", "usr/bin", "etc"} {
		st, err := os.Stat(filepath.Join(dir, sub))
		if err != nil {
			return "", fmt.Errorf("rootfs: %w", err)
		}
		id += fmt.Sprintf(" %s@%d", sub, st.ModTime().UnixNano())
	}
	return id, nil
}

// snapshotImage returns the image to restore a sandbox of t from, when its
// template snapshots, the image is ready and t's key is the template's (a
// sandbox with lowered boot-time limits has another).
func (m *Manager) snapshotImage(t *policy.Template) (string, bool) {
	if !t.Snapshot {
		return "", false
	}
	key, err := m.snapshotKey(t)
	if err != nil {
		return "", false
	}
	if image, ok := m.snapshots.Image(t.Name, key); ok {
		return image, true
	}
	m.checkSnapshotInputs(t.Name)
	return "", false
}

// checkSnapshotInputs rebuilds the images when what they were keyed on
// changed on disk since the policy was applied (the agent or runsc binary
// replaced under a running daemon, the rootfs edited): the template's key
// is then no longer the one its image was built for, and every sandbox
// would boot in full until the next reload.
func (m *Manager) checkSnapshotInputs(template string) {
	pt := m.Policy().Templates[template]
	if pt == nil || !pt.Snapshot {
		return
	}
	key, err := m.snapshotKey(pt)
	if err != nil || key == m.snapshots.WantedKey(template) {
		return
	}
	m.log.Info("the snapshot's inputs changed on disk (runsc, agent or rootfs); building new images", "template", template)
	m.applySnapshots()
}

// snapshotBuilder returns the function that builds t's image: it boots and
// warms a sandbox that no client ever gets and checkpoints it. The store
// builds one image at a time, for seconds; that sandbox is the daemon's
// own and not counted against host.max_sandboxes, so a host full of client
// sandboxes does not keep the snapshot from being built.
func (m *Manager) snapshotBuilder(t *policy.Template) snapshot.Builder {
	return func(ctx context.Context, dir string) error {
		sb, err := m.boot(ctx, t)
		if err != nil {
			return fmt.Errorf("booting the template sandbox: %w", err)
		}
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if err := sb.Destroy(dctx); err != nil {
				m.log.Warn("destroying the template sandbox", "template", t.Name, "err", err)
			}
		}()
		// Committed pages that are all zeros are left out: a smaller image
		// to write and to read at every restore.
		if err := sb.Checkpoint(ctx, dir, runsc.CheckpointOpts{ExcludeZeroPages: true}); err != nil {
			return err
		}
		return nil
	}
}

// Snapshot describes the snapshot image of a template.
func (m *Manager) Snapshot(template string) snapshot.Status {
	return m.snapshots.Status(template)
}
