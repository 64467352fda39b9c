package manager

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sandboxd/sandboxd/policy"
	"github.com/sandboxd/sandboxd/runtime/egress"
	"github.com/sandboxd/sandboxd/runtime/identifiers"
	"github.com/sandboxd/sandboxd/runtime/tenant"
)

// recordVersion is the format of the state records; a record of another
// version is not adopted. Fields added since (Tenant, Egress) are optional:
// records written before them load as they were meant.
const recordVersion = 1

// maxRecord bounds a state record read back: a template, labels (bounded
// by identifiers.ValidateLabels) and a few times fit in a few KiB.
const maxRecord = 1 << 20

// recordSuffix ends the file name of every state record.
const recordSuffix = ".json"

// record is what the daemon needs to adopt a sandbox after a restart: the
// sandbox as its clients know it (template with the limits it runs with,
// labels, times, transfer counters) and whether it was running or paused.
type record struct {
	Version    int               `json:"version"`
	ID         string            `json:"id"`
	Template   *policy.Template  `json:"template"`
	Labels     map[string]string `json:"labels,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	Start      StartKind         `json:"start"`
	State      State             `json:"state"`
	PausedAt   time.Time         `json:"paused_at,omitzero"`
	LastUsed   time.Time         `json:"last_used"`
	Uploaded   int64             `json:"uploaded"`
	Downloaded int64             `json:"downloaded"`
	// Tenant owns the sandbox; empty in records written before tenants,
	// whose sandboxes are the local tenant's.
	Tenant string `json:"tenant,omitempty"`
	// Egress is the sandbox's egress; nil for a template without, and in
	// records written before egress (whose templates had none).
	Egress *recordEgress `json:"egress,omitempty"`
}

// recordEgress is a sandbox's egress in its record.
type recordEgress struct {
	// Allow is the allowlist in force, as canonical entries; each is
	// parsed again when the record is read, and one that does not parse
	// makes the record damaged.
	Allow egress.List `json:"allow"`
	// Bytes are the bytes relayed so far, counted against the byte cap.
	Bytes int64 `json:"bytes"`
}

// egress rebuilds the egress of the record's sandbox: the list and the
// bytes relayed that the record kept, or, in a record without them, its
// template's list and none.
func (r record) egress() *egressState {
	if r.Template.Network != policy.NetworkAllowlist {
		return nil
	}
	if r.Egress == nil {
		return newEgressState(r.Template, r.Template.Egress.Allow)
	}
	s := newEgressState(r.Template, r.Egress.Allow)
	s.budget.Charge(r.Egress.Bytes)
	return s
}

// owner is the tenant of the record's sandbox.
func (r record) owner() string {
	if r.Tenant == "" {
		return tenant.Local
	}
	return r.Tenant
}

// envelope is a record file: the record and the SHA-256 of its bytes, so
// that a torn or edited file is told from a valid one.
type envelope struct {
	SHA256 string          `json:"sha256"`
	Record json.RawMessage `json:"record"`
}

func (m *Manager) recordsDir() string { return filepath.Join(m.cfg.StateDir, "sandboxes") }

func (m *Manager) recordPath(id string) string {
	return filepath.Join(m.recordsDir(), id+recordSuffix)
}

// recordOf captures e as a record.
func recordOf(e *entry) record {
	e.mu.Lock()
	st, pausedAt := e.state, e.pausedAt
	e.mu.Unlock()
	var eg *recordEgress
	if e.egress != nil {
		eg = &recordEgress{Allow: e.egress.allow(), Bytes: e.egress.budget.Used()}
	}
	return record{
		Version: recordVersion, ID: e.id, Template: e.tmpl, Labels: e.labels,
		CreatedAt: e.createdAt, Start: e.start, State: st, PausedAt: pausedAt,
		LastUsed: e.idleSince(), Uploaded: e.uploaded.Load(), Downloaded: e.downloaded.Load(),
		Tenant: e.tenant, Egress: eg,
	}
}

// saveRecord writes e's record atomically (a temporary file renamed over
// the old one). The record of a paused sandbox is flushed to disk, like its
// image; that of a running one is not: it serves only to adopt the sandbox
// after a crash of the daemon, which the page cache survives, while a crash
// of the host ends the sandbox anyway (an fsync would add milliseconds to
// every create and transfer; BenchmarkWriteRecord). A failure is logged:
// the sandbox still serves, it only would not survive a restart.
func (m *Manager) saveRecord(e *entry) {
	e.recordMu.Lock()
	defer e.recordMu.Unlock()
	if e.recordGone {
		return // the sandbox ended: writing would bring its record back
	}
	r := recordOf(e)
	if err := writeRecord(m.recordsDir(), r, r.State == StatePaused); err != nil {
		m.log.Warn("saving the sandbox's state record", "sandbox", e.id, "err", err)
	}
}

// forgetRecord deletes e's record for good: a save still on its way
// writes nothing.
func (m *Manager) forgetRecord(e *entry) {
	e.recordMu.Lock()
	defer e.recordMu.Unlock()
	e.recordGone = true
	m.removeRecord(e.id)
}

// removeRecord deletes id's record; a missing one is fine.
func (m *Manager) removeRecord(id string) {
	if err := os.Remove(m.recordPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		m.log.Warn("removing the sandbox's state record", "sandbox", id, "err", err)
	}
}

// writeRecord writes r into dir atomically, flushed to disk with sync.
func writeRecord(dir string, r record, sync bool) error {
	body, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding record: %w", err)
	}
	sum := sha256.Sum256(body)
	data, err := json.Marshal(envelope{SHA256: hex.EncodeToString(sum[:]), Record: body})
	if err != nil {
		return fmt.Errorf("encoding record: %w", err)
	}
	tmp := filepath.Join(dir, "."+r.ID+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("writing record: %w", err)
	}
	_, err = f.Write(data)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, r.ID+recordSuffix))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing record: %w", err)
	}
	if !sync {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("flushing records directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("flushing records directory: %w", err)
	}
	return nil
}

// readRecord reads and checks the record file at path: the checksum must
// match, the version be known, the ID the file's name and valid, and the
// template present.
func readRecord(path string) (record, error) {
	var r record
	f, err := os.Open(path)
	if err != nil {
		return r, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecord+1))
	if err != nil {
		return r, err
	}
	if len(data) > maxRecord {
		return r, fmt.Errorf("record is over %d bytes", maxRecord)
	}
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return r, fmt.Errorf("torn or damaged record: %w", err)
	}
	sum := sha256.Sum256(env.Record)
	if hex.EncodeToString(sum[:]) != env.SHA256 {
		return r, errors.New("record does not match its checksum")
	}
	if err := json.Unmarshal(env.Record, &r); err != nil {
		return r, fmt.Errorf("decoding record: %w", err)
	}
	switch {
	case r.Version != recordVersion:
		return r, fmt.Errorf("record version %d, want %d", r.Version, recordVersion)
	case identifiers.ValidateID(r.ID) != nil || r.ID+recordSuffix != filepath.Base(path):
		return r, fmt.Errorf("record names sandbox %q", r.ID)
	case r.Template == nil:
		return r, errors.New("record has no template")
	case r.State != StateRunning && r.State != StatePaused:
		return r, fmt.Errorf("record state %q", r.State)
	}
	return r, nil
}

// scanRecords reads every record in dir. It returns the valid ones and,
// by sandbox ID, why the others are not (torn, damaged, unknown version):
// those sandboxes are cleaned up rather than adopted. Invalid files and
// the temporary files of interrupted writes are removed.
func scanRecords(dir string) (good []record, bad map[string]error, err error) {
	bad = map[string]error{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, de := range ents {
		name := de.Name()
		path := filepath.Join(dir, name)
		id, isRecord := strings.CutSuffix(name, recordSuffix)
		if !isRecord || strings.HasPrefix(name, ".") {
			os.Remove(path) // an interrupted write's temporary file
			continue
		}
		r, rerr := readRecord(path)
		if rerr != nil {
			if identifiers.ValidateID(id) == nil {
				bad[id] = rerr
			}
			os.Remove(path)
			continue
		}
		good = append(good, r)
	}
	return good, bad, nil
}
