package snapshot

import "fmt"

// Sealed is a checkpoint image outside the store (a paused sandbox's):
// its files are listed and hashed in its manifest under the owner's key,
// and their identity is fingerprinted for the cheap check before a
// restore.
type Sealed struct {
	// Bytes is the image's size on disk.
	Bytes int64
	fp    fingerprint
}

// Seal writes the manifest of the image runsc wrote into dir, binding it
// to key (e.g. the paused sandbox's ID), and fingerprints its files.
func Seal(dir, key string) (*Sealed, error) {
	m, err := writeManifest(dir, key, 0)
	if err != nil {
		return nil, fmt.Errorf("sealing image %s: %w", dir, err)
	}
	fp, err := takeFingerprint(dir, m)
	if err != nil {
		return nil, fmt.Errorf("sealing image %s: %w", dir, err)
	}
	return &Sealed{Bytes: m.bytes(), fp: fp}, nil
}

// Verify checks the image in dir against its manifest in full (every
// file's size and SHA-256, and the key it was sealed with): for an image
// found on disk, e.g. after a restart.
func Verify(dir, key string) (*Sealed, error) {
	m, fp, err := verify(dir, key)
	if err != nil {
		return nil, fmt.Errorf("verifying image %s: %w", dir, err)
	}
	return &Sealed{Bytes: m.bytes(), fp: fp}, nil
}

// ManifestBytes returns the size the manifest in dir lists, without
// checking the files: to account for an image before it is verified.
func ManifestBytes(dir string) (int64, error) {
	m, err := readManifest(dir)
	if err != nil {
		return 0, err
	}
	return m.bytes(), nil
}

// Check tells whether the image's files in dir are still the ones sealed
// or verified (same inodes, sizes and times): microseconds, no reading.
func (s *Sealed) Check(dir string) error { return s.fp.check(dir) }
