// Package snapshot keeps the checkpoint images of warmed templates: one
// image per key, where the key hashes everything that shapes the image
// (runsc, agent, rootfs, the sandbox's spec and runsc flags, the template's
// environment, warm imports and boot-time limits). It builds images in the
// background through a Builder the manager supplies, writes each into a
// temporary directory renamed when complete, verifies images before use
// (a truncated or altered image is deleted and rebuilt, never restored),
// reuses them across daemon restarts and deletes those of keys no longer
// wanted.
package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
)

// KeyInputs is everything that shapes a template's image. Two templates
// with equal inputs share one image.
type KeyInputs struct {
	// RunscDigest, AgentDigest: SHA-256 of the runsc and agent binaries. The
	// image format is runsc's own, and the image holds the running agent.
	RunscDigest string
	AgentDigest string
	// Rootfs identifies the root file system (its cache path carries the
	// hash of its build inputs).
	Rootfs string
	// Spec is the sandbox's OCI spec with nothing sandbox-specific in it
	// (no cgroup path): the fields runsc requires to match at restore.
	Spec json.RawMessage
	// RunscArgs are runsc's global flags (platform, network, overlay size):
	// restore must repeat them.
	RunscArgs []string
	// CPU and Memory are the cgroup limits the sentry sizes itself from at
	// boot (CPU count, memory size in /proc/meminfo).
	CPU    float64
	Memory int64
	// PythonAddressSpace and CodeProcesses are the Python worker's limits,
	// set when it started.
	PythonAddressSpace int64
	CodeProcesses      int64
	// WarmImports are imported before the checkpoint.
	WarmImports []string
}

// Key returns the image key of in: a hex SHA-256 of its canonical JSON.
func Key(in KeyInputs) string {
	b, err := json.Marshal(in)
	if err != nil {
		panic(fmt.Sprintf("encoding snapshot key inputs: %v", err)) // plain data: cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// FileDigest returns the hex SHA-256 of a file, cached by path, size and
// modification time so a daemon reload does not hash large binaries again.
func FileDigest(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	ck := digestCacheKey{path, st.Size(), st.ModTime().UnixNano()}
	digestMu.Lock()
	d, ok := digestCache[ck]
	digestMu.Unlock()
	if ok {
		return d, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	d = hex.EncodeToString(h.Sum(nil))
	digestMu.Lock()
	digestCache[ck] = d
	digestMu.Unlock()
	return d, nil
}

type digestCacheKey struct {
	path  string
	size  int64
	mtime int64
}

var (
	digestMu    sync.Mutex
	digestCache = map[digestCacheKey]string{}
)
