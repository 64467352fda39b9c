package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeMetrics records what the store reports.
type fakeMetrics struct {
	mu    sync.Mutex
	built int
	bytes map[string]int64
}

func (m *fakeMetrics) SnapshotBuilt(string, time.Duration) {
	m.mu.Lock()
	m.built++
	m.mu.Unlock()
}

func (m *fakeMetrics) SnapshotBytes(template string, n int64) {
	m.mu.Lock()
	if m.bytes == nil {
		m.bytes = map[string]int64{}
	}
	m.bytes[template] = n
	m.mu.Unlock()
}

// fakeBuilder writes an image the way runsc does (a few files) and counts
// its builds; fail makes it fail.
type fakeBuilder struct {
	builds atomic.Int32
	fail   atomic.Bool
}

func (b *fakeBuilder) build(_ context.Context, dir string) error {
	b.builds.Add(1)
	if b.fail.Load() {
		return errors.New("warm import failed")
	}
	for name, size := range map[string]int{"checkpoint.img": 700, "pages.img": 64 << 10, "pages_meta.img": 100} {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func openStore(t *testing.T, dir string) (*Store, *fakeMetrics) {
	t.Helper()
	m := &fakeMetrics{}
	s, err := Open(dir, slog.New(slog.NewTextHandler(io.Discard, nil)), m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, m
}

// waitState polls until template's image is in state want.
func waitState(t *testing.T, s *Store, template string, want State) Status {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := s.Status(template)
		if st.State == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("template %s: state %v (%s), want %v", template, st.State, st.LastError, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestStoreBuildsVerifiesAndReuses guarantees the image life cycle: a
// wanted key is built into a root-only directory with a manifest, served by
// Image only for the template's own key, and reused by a store reopened on
// the same directory without a rebuild.
func TestStoreBuildsVerifiesAndReuses(t *testing.T) {
	dir := t.TempDir()
	s, m := openStore(t, dir)
	b := &fakeBuilder{}
	s.Apply([]Want{{Template: "python", Key: "k1", Build: b.build}, {Template: "off"}})
	st := waitState(t, s, "python", StateReady)
	if st.Bytes != 700+64<<10+100 || st.BuiltAt.IsZero() {
		t.Fatalf("status %+v", st)
	}
	if got := s.Status("off").State; got != StateDisabled {
		t.Fatalf("a template without a key: %v, want disabled", got)
	}
	path, ok := s.Image("python", "k1")
	if !ok || path != filepath.Join(dir, "k1") {
		t.Fatalf("Image = %q, %v", path, ok)
	}
	if _, ok := s.Image("python", "other-key"); ok {
		t.Fatal("Image served a sandbox whose key is not the template's")
	}
	if fi, err := os.Stat(filepath.Join(path, "pages.img")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("image file mode %v, %v; want 0600", fi.Mode(), err)
	}
	if m.bytes["python"] != st.Bytes || m.built != 1 {
		t.Fatalf("metrics %+v", m)
	}
	s.Close()

	s2, _ := openStore(t, dir)
	b2 := &fakeBuilder{}
	s2.Apply([]Want{{Template: "python", Key: "k1", Build: b2.build}})
	again := waitState(t, s2, "python", StateReady)
	if b2.builds.Load() != 0 || !again.BuiltAt.Equal(st.BuiltAt) {
		t.Fatalf("reopened store rebuilt the image (%d builds, built at %v then %v)", b2.builds.Load(), st.BuiltAt, again.BuiltAt)
	}
}

// TestStoreRebuildsDamagedImage guarantees that an image whose file was
// truncated after verification is never served: Image reports none and the
// image is rebuilt; and that a damaged image found at start is rebuilt too.
func TestStoreRebuildsDamagedImage(t *testing.T) {
	dir := t.TempDir()
	s, _ := openStore(t, dir)
	b := &fakeBuilder{}
	s.Apply([]Want{{Template: "python", Key: "k1", Build: b.build}})
	first := waitState(t, s, "python", StateReady)
	if err := os.Truncate(filepath.Join(dir, "k1", "pages.img"), 10); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Image("python", "k1"); ok {
		t.Fatal("Image served a truncated image")
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.builds.Load() < 2 || s.Status("python").State != StateReady {
		if time.Now().After(deadline) {
			t.Fatalf("not rebuilt: %d builds, %+v", b.builds.Load(), s.Status("python"))
		}
		time.Sleep(2 * time.Millisecond)
	}
	if _, ok := s.Image("python", "k1"); !ok {
		t.Fatal("the rebuilt image is not served")
	}
	s.Close()

	// Damage that a restart finds: same size, other bytes.
	pages := filepath.Join(dir, "k1", "pages.img")
	if err := os.WriteFile(pages, append([]byte{1}, make([]byte, 64<<10-1)...), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, _ := openStore(t, dir)
	b2 := &fakeBuilder{}
	s2.Apply([]Want{{Template: "python", Key: "k1", Build: b2.build}})
	if st := waitState(t, s2, "python", StateReady); b2.builds.Load() != 1 || !st.BuiltAt.After(first.BuiltAt) {
		t.Fatalf("a damaged image at start: %d builds, %+v", b2.builds.Load(), st)
	}
}

// TestStoreDeletesUnwantedImages guarantees that images of keys no
// template wants any more, and unfinished builds of an earlier run, are
// deleted.
func TestStoreDeletesUnwantedImages(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, buildPrefix+"k0-123"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "stale-key"), 0o700); err != nil {
		t.Fatal(err)
	}
	s, _ := openStore(t, dir)
	b := &fakeBuilder{}
	s.Apply([]Want{{Template: "python", Key: "k1", Build: b.build}})
	waitState(t, s, "python", StateReady)
	s.Apply([]Want{{Template: "python", Key: "k2", Build: b.build}})
	waitState(t, s, "python", StateReady)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "k2" {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("store holds %v, want only k2", names)
	}
}

// TestStoreRetriesFailedBuilds guarantees that a failed build is reported
// as FAILED with its error, serves no image, and is retried.
func TestStoreRetriesFailedBuilds(t *testing.T) {
	s, _ := openStore(t, t.TempDir())
	b := &fakeBuilder{}
	b.fail.Store(true)
	s.Apply([]Want{{Template: "python", Key: "k1", Build: b.build}})
	st := waitState(t, s, "python", StateFailed)
	if st.LastError != "warm import failed" {
		t.Fatalf("last error %q", st.LastError)
	}
	if _, ok := s.Image("python", "k1"); ok {
		t.Fatal("a failed build served an image")
	}
	b.fail.Store(false)
	// The retry comes after minBuildBackoff.
	deadline := time.Now().Add(minBuildBackoff + 10*time.Second)
	for s.Status("python").State != StateReady {
		if time.Now().After(deadline) {
			t.Fatalf("failed build not retried: %+v", s.Status("python"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStoreSuspectsImageAfterRepeatedRestoreFailures guarantees that a run
// of failed restores makes the store verify the image again (and keep it
// when it is intact), while a single failure does not.
func TestStoreSuspectsImageAfterRepeatedRestoreFailures(t *testing.T) {
	s, _ := openStore(t, t.TempDir())
	b := &fakeBuilder{}
	s.Apply([]Want{{Template: "python", Key: "k1", Build: b.build}})
	waitState(t, s, "python", StateReady)
	for range maxRestoreFailures - 1 {
		s.RestoreFailed("python", errors.New("restore: out of memory"))
	}
	if st := s.Status("python"); st.State != StateReady || st.LastError == "" {
		t.Fatalf("after %d failures: %+v, want still ready with the error", maxRestoreFailures-1, st)
	}
	s.RestoreFailed("python", errors.New("restore: out of memory"))
	waitState(t, s, "python", StateReady)
	if b.builds.Load() != 1 {
		t.Fatalf("an intact image was rebuilt (%d builds)", b.builds.Load())
	}
}

// TestManifestRejectsPathsOutsideTheImage guarantees that a manifest naming
// a file outside its directory is refused, so verification never reads or
// trusts another path.
func TestManifestRejectsPathsOutsideTheImage(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"../etc/passwd", "a/b", manifestName, ".."} {
		m := manifest{Key: "k", Files: []imageFile{{Name: name, Size: 1, SHA256: "00"}}}
		data, _ := json.Marshal(m)
		if err := os.WriteFile(filepath.Join(dir, manifestName), data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := verify(dir, "k"); err == nil {
			t.Errorf("manifest naming %q verified", name)
		}
	}
}

// TestKeyChangesWithEveryInput guarantees that every input that shapes an
// image changes the key, and that equal inputs give equal keys.
func TestKeyChangesWithEveryInput(t *testing.T) {
	base := KeyInputs{
		RunscDigest: "r", AgentDigest: "a", Rootfs: "/rootfs", Spec: json.RawMessage(`{"v":1}`),
		RunscArgs: []string{"--overlay2=root:memory,size=1"}, CPU: 1, Memory: 1 << 30,
		PythonAddressSpace: 0, CodeProcesses: 256, WarmImports: []string{"numpy"},
	}
	if Key(base) != Key(base) {
		t.Fatal("equal inputs, different keys")
	}
	for name, change := range map[string]func(*KeyInputs){
		"runsc":         func(k *KeyInputs) { k.RunscDigest = "r2" },
		"agent":         func(k *KeyInputs) { k.AgentDigest = "a2" },
		"rootfs":        func(k *KeyInputs) { k.Rootfs = "/other" },
		"spec":          func(k *KeyInputs) { k.Spec = json.RawMessage(`{"v":2}`) },
		"runsc flags":   func(k *KeyInputs) { k.RunscArgs = []string{"--overlay2=root:memory,size=2"} },
		"cpu":           func(k *KeyInputs) { k.CPU = 0.5 },
		"memory":        func(k *KeyInputs) { k.Memory = 1 << 29 },
		"address space": func(k *KeyInputs) { k.PythonAddressSpace = 1 << 28 },
		"processes":     func(k *KeyInputs) { k.CodeProcesses = 128 },
		"warm imports":  func(k *KeyInputs) { k.WarmImports = []string{"numpy", "pandas"} },
	} {
		in := base
		change(&in)
		if Key(in) == Key(base) {
			t.Errorf("changing the %s kept the key", name)
		}
	}
}
