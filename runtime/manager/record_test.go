package manager

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/policy"
	"github.com/sandboxd/sandboxd/runtime/egress"
)

func testRecord(id string) record {
	t, _ := policy.Default().Template("")
	return record{
		Version: recordVersion, ID: id, Template: t, Labels: map[string]string{"a": "b"},
		CreatedAt: time.Unix(1000, 0).UTC(), Start: StartPool, State: StatePaused,
		PausedAt: time.Unix(2000, 0).UTC(), LastUsed: time.Unix(1500, 0).UTC(), Uploaded: 10, Downloaded: 20,
	}
}

// TestRecordRoundTrip guarantees that a written record reads back equal,
// template and counters included.
func TestRecordRoundTrip(t *testing.T) {
	dir := t.TempDir()
	id := strings.Repeat("a", 32)
	want := testRecord(id)
	if err := writeRecord(dir, want, true); err != nil {
		t.Fatal(err)
	}
	got, bad, err := scanRecords(dir)
	if err != nil || len(bad) != 0 || len(got) != 1 {
		t.Fatalf("scanRecords = %v, %v, %v", got, bad, err)
	}
	r := got[0]
	if r.ID != id || r.State != StatePaused || r.Uploaded != 10 || r.Downloaded != 20 || !r.PausedAt.Equal(want.PausedAt) ||
		!r.LastUsed.Equal(want.LastUsed) || r.Template.Limits != want.Template.Limits || r.Template.IdleTimeout != want.Template.IdleTimeout || r.Labels["a"] != "b" {
		t.Errorf("read back %+v, want %+v", r, want)
	}
}

// TestDamagedRecordsAreNotAdopted guarantees that a torn, edited, foreign
// or renamed record is reported as bad (its sandbox is cleaned up, never
// half-adopted) and removed, and that a temporary file of an interrupted
// write is removed without a report.
func TestDamagedRecordsAreNotAdopted(t *testing.T) {
	id := strings.Repeat("b", 32)
	for _, tc := range []struct {
		name   string
		damage func(path string, data []byte) []byte
		want   string
	}{
		{"torn", func(_ string, d []byte) []byte { return d[:len(d)/2] }, "torn or damaged"},
		{"counter edited", func(_ string, d []byte) []byte {
			return []byte(strings.Replace(string(d), `"uploaded":10`, `"uploaded":99`, 1))
		}, "checksum"},
		{"value edited", func(_ string, d []byte) []byte { return []byte(strings.Replace(string(d), "paused", "runnin", 1)) }, "checksum"},
		{"empty", func(string, []byte) []byte { return nil }, "torn or damaged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := writeRecord(dir, testRecord(id), true); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, id+recordSuffix)
			data, _ := os.ReadFile(path)
			os.WriteFile(path, tc.damage(path, data), 0o600)
			good, bad, err := scanRecords(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(good) != 0 || bad[id] == nil {
				t.Fatalf("good %v, bad %v: want the record reported bad", good, bad)
			}
			if tc.want != "" && !strings.Contains(bad[id].Error(), tc.want) {
				t.Errorf("error %q, want %q", bad[id], tc.want)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("the bad record was left in place")
			}
		})
	}
	t.Run("renamed", func(t *testing.T) {
		dir := t.TempDir()
		other := strings.Repeat("c", 32)
		writeRecord(dir, testRecord(id), true)
		os.Rename(filepath.Join(dir, id+recordSuffix), filepath.Join(dir, other+recordSuffix))
		_, bad, _ := scanRecords(dir)
		if bad[other] == nil || !strings.Contains(bad[other].Error(), "names sandbox") {
			t.Errorf("bad = %v, want the renamed record refused", bad)
		}
	})
	t.Run("temporary file", func(t *testing.T) {
		dir := t.TempDir()
		tmp := filepath.Join(dir, "."+id+".tmp")
		os.WriteFile(tmp, []byte("{"), 0o600)
		good, bad, _ := scanRecords(dir)
		if len(good) != 0 || len(bad) != 0 {
			t.Errorf("good %v bad %v, want nothing", good, bad)
		}
		if _, err := os.Stat(tmp); !os.IsNotExist(err) {
			t.Errorf("temporary file left")
		}
	})
}

// egressTemplate is a template with egress, as a test policy has it.
func egressTemplate(t *testing.T) *policy.Template {
	t.Helper()
	tmpl, _ := policy.Default().Template("")
	web := *tmpl
	list, err := egress.ParseList([]string{"127.0.0.2/32:443", "egress-ok.sandboxd.test:443"})
	if err != nil {
		t.Fatal(err)
	}
	web.Name, web.Network, web.Egress.Allow = "web", policy.NetworkAllowlist, list
	web.Limits.EgressBytes = 1000
	return &web
}

// TestRecordKeepsEgress guarantees that a sandbox's egress survives a
// restart: the allowlist in force (narrowed, or closed by an empty
// update), its template's list, and the bytes relayed, which its budget
// starts from.
func TestRecordKeepsEgress(t *testing.T) {
	web := egressTemplate(t)
	for _, allow := range [][]string{{"127.0.0.2/32:443"}, {}} {
		dir := t.TempDir()
		list, _ := egress.ParseList(allow)
		e := &entry{id: strings.Repeat("e", 32), tmpl: web, state: StateRunning, egress: newEgressState(web, list)}
		e.egress.budget.Charge(300)
		if err := writeRecord(dir, recordOf(e), false); err != nil {
			t.Fatal(err)
		}
		good, bad, err := scanRecords(dir)
		if err != nil || len(bad) != 0 || len(good) != 1 {
			t.Fatalf("scanRecords = %v, %v, %v", good, bad, err)
		}
		eg := good[0].egress()
		if eg == nil || !slices.Equal(eg.allow().Strings(), allow) || eg.budget.Used() != 300 {
			t.Fatalf("egress read back %v, want list %q and 300 bytes used", eg, allow)
		}
		if got := good[0].Template.Egress.Allow.Strings(); !slices.Equal(got, web.Egress.Allow.Strings()) {
			t.Errorf("template list read back %q, want %q", got, web.Egress.Allow.Strings())
		}
	}
}

// TestRecordsOfEarlierDaemonsLoad guarantees compatibility with records
// written before egress (no egress of the sandbox, no Egress in its
// template): they load and their sandboxes have no egress; and a record of
// a template with egress that lacks the sandbox's own list gives it the
// template's.
func TestRecordsOfEarlierDaemonsLoad(t *testing.T) {
	for _, tmpl := range []*policy.Template{testRecord("").Template, egressTemplate(t)} {
		dir := t.TempDir()
		id := strings.Repeat("f", 32)
		r := testRecord(id)
		r.Template = tmpl
		body, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var old map[string]any
		json.Unmarshal(body, &old)
		delete(old, "egress")
		if tmpl.Network == policy.NetworkNone {
			delete(old["template"].(map[string]any), "Egress")
		}
		body, _ = json.Marshal(old)
		sum := sha256.Sum256(body)
		data, _ := json.Marshal(envelope{SHA256: hex.EncodeToString(sum[:]), Record: body})
		if err := os.WriteFile(filepath.Join(dir, id+recordSuffix), data, 0o600); err != nil {
			t.Fatal(err)
		}
		good, bad, err := scanRecords(dir)
		if err != nil || len(bad) != 0 || len(good) != 1 {
			t.Fatalf("%s: scanRecords = %v, %v, %v", tmpl.Name, good, bad, err)
		}
		eg := good[0].egress()
		switch tmpl.Network {
		case policy.NetworkNone:
			if eg != nil {
				t.Errorf("a sandbox without egress got %q", eg.allow().Strings())
			}
		default:
			if eg == nil || !slices.Equal(eg.allow().Strings(), tmpl.Egress.Allow.Strings()) || eg.budget.Used() != 0 {
				t.Errorf("a record without the sandbox's list: got %v, want the template's %q", eg, tmpl.Egress.Allow.Strings())
			}
		}
	}
}

// BenchmarkWriteRecord measures a state record write, flushed to disk (a
// pause) or not (a create or a transfer).
func BenchmarkWriteRecord(b *testing.B) {
	for _, sync := range []bool{false, true} {
		b.Run(map[bool]string{false: "nosync", true: "sync"}[sync], func(b *testing.B) {
			dir := b.TempDir()
			r := testRecord(strings.Repeat("d", 32))
			for b.Loop() {
				if err := writeRecord(dir, r, sync); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
