package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// manifestName is the file in an image directory that lists the image's
// files with their sizes and digests; an image without a valid manifest is
// incomplete.
const manifestName = "manifest.json"

// maxManifest bounds the manifest read back: a handful of files.
const maxManifest = 1 << 20

// manifest describes a complete image.
type manifest struct {
	Key     string        `json:"key"`
	BuiltAt time.Time     `json:"built_at"`
	Build   time.Duration `json:"build_ns"`
	Files   []imageFile   `json:"files"`
}

// imageFile is one file of an image.
type imageFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// bytes is the image's size on disk.
func (m *manifest) bytes() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// writeManifest lists and hashes the files runsc wrote into dir, makes
// them readable by root only and writes the manifest last.
func writeManifest(dir, key string, build time.Duration) (*manifest, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	m := &manifest{Key: key, BuiltAt: time.Now().UTC(), Build: build}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			return nil, fmt.Errorf("unexpected %s in image %s", e.Name(), dir)
		}
		path := filepath.Join(dir, e.Name())
		if err := os.Chmod(path, 0o600); err != nil {
			return nil, err
		}
		size, sum, err := hashFile(path)
		if err != nil {
			return nil, err
		}
		m.Files = append(m.Files, imageFile{Name: e.Name(), Size: size, SHA256: sum})
	}
	if len(m.Files) == 0 {
		return nil, errors.New("runsc wrote no image files")
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if err := writeSynced(filepath.Join(dir, manifestName), b); err != nil {
		return nil, err
	}
	return m, nil
}

// writeSynced writes a root-only file and flushes it to disk.
func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// verify reads dir's manifest and checks every file against it, content
// included: the files must be exactly those listed, with their sizes and
// digests. It returns the manifest and a fingerprint of the files' inodes
// for the cheap check before each restore.
func verify(dir, key string) (*manifest, fingerprint, error) {
	m, err := readManifest(dir)
	if err != nil {
		return nil, nil, err
	}
	if m.Key != key {
		return nil, nil, fmt.Errorf("image key %q, want %q", m.Key, key)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	var names []string
	for _, e := range ents {
		if e.Name() != manifestName {
			names = append(names, e.Name())
		}
	}
	var want []string
	for _, f := range m.Files {
		want = append(want, f.Name)
	}
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		return nil, nil, fmt.Errorf("image files %v, manifest lists %v", names, want)
	}
	for _, f := range m.Files {
		size, sum, err := hashFile(filepath.Join(dir, f.Name))
		if err != nil {
			return nil, nil, err
		}
		if size != f.Size || sum != f.SHA256 {
			return nil, nil, fmt.Errorf("%s: %d bytes with SHA-256 %s, manifest says %d bytes with %s", f.Name, size, sum[:12], f.Size, f.SHA256[:12])
		}
	}
	fp, err := takeFingerprint(dir, m)
	if err != nil {
		return nil, nil, err
	}
	return m, fp, nil
}

func readManifest(dir string) (*manifest, error) {
	f, err := os.Open(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, fmt.Errorf("incomplete image: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifest))
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("reading image manifest: %w", err)
	}
	for _, f := range m.Files {
		if f.Name != filepath.Base(f.Name) || f.Name == manifestName || f.Name == "." || f.Name == ".." {
			return nil, fmt.Errorf("image manifest names %q", f.Name)
		}
	}
	return &m, nil
}

func hashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("hashing %s: %w", path, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// fingerprint records each image file's identity when it was verified:
// inode, size and change time. Any write, truncation or replacement of a
// file changes one of them, so comparing it before a restore detects a
// tampered or damaged image in microseconds without rereading it.
type fingerprint map[string]fileID

type fileID struct {
	ino   uint64
	size  int64
	ctime syscall.Timespec
	mtime syscall.Timespec
}

func takeFingerprint(dir string, m *manifest) (fingerprint, error) {
	fp := fingerprint{}
	for _, f := range m.Files {
		id, err := statID(filepath.Join(dir, f.Name))
		if err != nil {
			return nil, err
		}
		fp[f.Name] = id
	}
	return fp, nil
}

func statID(path string) (fileID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileID{}, err
	}
	return fileID{ino: st.Ino, size: st.Size, ctime: st.Ctim, mtime: st.Mtim}, nil
}

// check compares dir's files with the fingerprint.
func (fp fingerprint) check(dir string) error {
	for name, want := range fp {
		got, err := statID(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%s changed since it was verified (%d bytes, was %d)", name, got.size, want.size)
		}
	}
	return nil
}
