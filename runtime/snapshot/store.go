package snapshot

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// State is where a template's image stands.
type State int

const (
	// StateDisabled: the template has snapshot: false.
	StateDisabled State = iota
	// StateBuilding: being built or verified; sandboxes boot meanwhile.
	StateBuilding
	// StateReady: restores use it.
	StateReady
	// StateFailed: the last build failed; retried with back-off.
	StateFailed
)

func (s State) String() string {
	return [...]string{"disabled", "building", "ready", "failed"}[s]
}

// Build retry back-off: a template whose build fails (a broken warm import,
// a full disk) must not boot and checkpoint in a loop on a 2-core host, and
// a passing fault should heal within minutes.
const (
	minBuildBackoff = 5 * time.Second
	maxBuildBackoff = 5 * time.Minute
)

// maxRestoreFailures is how many restores of an image may fail in a row
// before the image is verified again in full: a restore can fail for
// reasons of the moment (the host is out of memory), so one failure does
// not condemn an image, but a run of them makes it suspect.
const maxRestoreFailures = 3

// buildTimeout bounds one build: a boot with warm imports (~3 s) and a
// checkpoint (~0.2 s) on an idle host; ten minutes means a stuck build.
const buildTimeout = 10 * time.Minute

// buildPrefix starts the names of temporary build directories.
const buildPrefix = ".build-"

// Builder boots and warms a sandbox of the image's template and checkpoints
// it into dir (empty, existing); it destroys the sandbox before returning.
type Builder func(ctx context.Context, dir string) error

// Want asks for a template's image.
type Want struct {
	// Template names the template.
	Template string
	// Key is the image key (see Key); "" when the template has snapshots
	// disabled.
	Key string
	// Build builds the image of Key; unused when Key is "".
	Build Builder
}

// Status describes a template's image.
type Status struct {
	State State
	// Bytes is the image's size on disk, when ready.
	Bytes int64
	// BuiltAt is when the ready image was built.
	BuiltAt time.Time
	// LastError is the last build or restore failure, "" if none.
	LastError string
}

// Metrics receives the store's measurements.
type Metrics interface {
	// SnapshotBuilt: an image of template was built in d.
	SnapshotBuilt(template string, d time.Duration)
	// SnapshotBytes: template's ready image has this size (0: none).
	SnapshotBytes(template string, bytes int64)
}

// Store keeps the images under one directory. It is safe for concurrent
// use.
type Store struct {
	dir     string
	log     *slog.Logger
	metrics Metrics
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	sem     chan struct{} // one build or verification at a time

	mu        sync.Mutex
	images    map[string]*image // by key
	templates map[string]string // template -> key; "" disabled
	closed    bool
}

// image is one key's image and its build.
type image struct {
	key      string
	state    State
	man      *manifest
	fp       fingerprint
	lastErr  string
	build    Builder
	working  bool // a build or verification runs
	wanted   bool // some template of the policy in force uses it
	backoff  time.Duration
	failures int // restores failed in a row
}

// Open opens the store in dir (created root-only if missing) and removes
// the temporary directories of builds a previous run left unfinished.
func Open(dir string, log *slog.Logger, metrics Metrics) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating snapshot directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), buildPrefix) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return nil, fmt.Errorf("removing an unfinished snapshot build: %w", err)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Store{
		dir: dir, log: log, metrics: metrics, ctx: ctx, cancel: cancel, sem: make(chan struct{}, 1),
		images: map[string]*image{}, templates: map[string]string{},
	}, nil
}

func (s *Store) path(key string) string { return filepath.Join(s.dir, key) }

// Apply makes the wanted images those of wants: new keys are verified (an
// image left by an earlier run) or built in the background, images no
// template wants any more are deleted, and so is any other directory in
// the store.
func (s *Store) Apply(wants []Want) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.templates = map[string]string{}
	keep := map[string]bool{}
	for _, w := range wants {
		s.templates[w.Template] = w.Key
		if w.Key == "" {
			s.metrics.SnapshotBytes(w.Template, 0)
			continue
		}
		keep[w.Key] = true
		img, ok := s.images[w.Key]
		if !ok {
			img = &image{key: w.Key, state: StateBuilding, build: w.Build}
			s.images[w.Key] = img
			s.startLocked(img, true)
		}
		img.wanted = true
		if img.state == StateReady {
			s.metrics.SnapshotBytes(w.Template, img.man.bytes())
		}
	}
	for key, img := range s.images {
		if !keep[key] {
			img.wanted = false
			if !img.working {
				s.deleteLocked(img)
			}
		}
	}
	// Images of earlier runs' keys that nobody wants.
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		s.log.Warn("listing snapshots", "err", err)
		return
	}
	for _, e := range ents {
		if _, known := s.images[e.Name()]; !known && !strings.HasPrefix(e.Name(), buildPrefix) {
			s.log.Info("deleting snapshot image of a key no longer in the policy", "key", e.Name())
			if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
				s.log.Warn("deleting snapshot image", "key", e.Name(), "err", err)
			}
		}
	}
}

// deleteLocked forgets an image nobody wants and deletes its files.
func (s *Store) deleteLocked(img *image) {
	delete(s.images, img.key)
	if err := os.RemoveAll(s.path(img.key)); err != nil {
		s.log.Warn("deleting snapshot image", "key", img.key, "err", err)
	}
	s.log.Info("snapshot image deleted", "key", img.key)
}

// startLocked starts verifying (reuse true: an image on disk may be reused)
// or building img in the background.
func (s *Store) startLocked(img *image, reuse bool) {
	img.working = true
	img.state = StateBuilding
	s.wg.Go(func() { s.work(img, reuse) })
}

// work verifies an existing image or builds a new one, then records the
// outcome; a failed build is retried after a back-off while still wanted.
func (s *Store) work(img *image, reuse bool) {
	select {
	case s.sem <- struct{}{}:
	case <-s.ctx.Done():
		return
	}
	var (
		man *manifest
		fp  fingerprint
		err error
	)
	dir := s.path(img.key)
	if _, statErr := os.Stat(dir); reuse && statErr == nil {
		start := time.Now()
		if man, fp, err = verify(dir, img.key); err == nil {
			s.log.Info("snapshot image verified and reused", "key", img.key, "bytes", man.bytes(), "took", time.Since(start).Round(time.Millisecond))
		} else {
			s.log.Warn("snapshot image is damaged; deleting and rebuilding it", "key", img.key, "err", err)
			if rmErr := os.RemoveAll(dir); rmErr != nil {
				s.log.Warn("deleting damaged snapshot image", "key", img.key, "err", rmErr)
			}
		}
	}
	if man == nil {
		man, fp, err = s.buildOne(img)
	}
	<-s.sem

	s.mu.Lock()
	defer s.mu.Unlock()
	img.working = false
	if s.closed {
		return
	}
	if !img.wanted {
		s.deleteLocked(img)
		return
	}
	if err != nil {
		img.state, img.lastErr = StateFailed, err.Error()
		img.backoff = min(max(2*img.backoff, minBuildBackoff), maxBuildBackoff)
		s.log.Warn("snapshot build failed; sandboxes boot in full until it succeeds", "key", img.key, "retry_in", img.backoff, "err", err)
		wait := img.backoff
		time.AfterFunc(wait, func() { s.retry(img) })
		return
	}
	img.state, img.man, img.fp, img.backoff, img.failures = StateReady, man, fp, 0, 0
	for t, k := range s.templates {
		if k == img.key {
			s.metrics.SnapshotBytes(t, man.bytes())
		}
	}
}

// retry rebuilds a failed image that is still wanted.
func (s *Store) retry(img *image) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.images[img.key] != img || !img.wanted || img.working {
		return
	}
	s.startLocked(img, false)
}

// buildOne builds img into a temporary directory and renames it into place
// once complete and hashed.
func (s *Store) buildOne(img *image) (*manifest, fingerprint, error) {
	tmp, err := os.MkdirTemp(s.dir, buildPrefix+img.key+"-")
	if err != nil {
		return nil, nil, fmt.Errorf("creating build directory: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	ctx, cancel := context.WithTimeout(s.ctx, buildTimeout)
	defer cancel()
	start := time.Now()
	if err := img.build(ctx, tmp); err != nil {
		return nil, nil, err
	}
	took := time.Since(start)
	// runsc may leave the directory with another mode: root only.
	if err := os.Chmod(tmp, 0o700); err != nil {
		return nil, nil, err
	}
	man, err := writeManifest(tmp, img.key, took)
	if err != nil {
		return nil, nil, fmt.Errorf("writing image manifest: %w", err)
	}
	final := s.path(img.key)
	if err := os.RemoveAll(final); err != nil {
		return nil, nil, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, nil, fmt.Errorf("moving the image into place: %w", err)
	}
	fp, err := takeFingerprint(final, man)
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	for t, k := range s.templates {
		if k == img.key {
			s.metrics.SnapshotBuilt(t, took)
		}
	}
	s.mu.Unlock()
	s.log.Info("snapshot image built", "key", img.key, "bytes", man.bytes(), "took", took.Round(time.Millisecond))
	return man, fp, nil
}

// Image returns the directory of template's image when the policy's key
// for it is key (a sandbox with other boot-time limits than the template's
// has another key), it is ready and its files are as verified. An image
// whose files changed is deleted and rebuilt, and Image reports none.
func (s *Store) Image(template, key string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if key == "" || s.templates[template] != key {
		return "", false
	}
	img := s.images[key]
	if img == nil || img.state != StateReady {
		return "", false
	}
	dir := s.path(img.key)
	if err := img.fp.check(dir); err != nil {
		s.log.Warn("snapshot image was altered or damaged; deleting and rebuilding it", "key", img.key, "err", err)
		img.lastErr = "image damaged: " + err.Error()
		s.invalidateLocked(img)
		return "", false
	}
	return dir, true
}

// invalidateLocked deletes a ready image and rebuilds it.
func (s *Store) invalidateLocked(img *image) {
	img.man, img.fp = nil, nil
	if err := os.RemoveAll(s.path(img.key)); err != nil {
		s.log.Warn("deleting snapshot image", "key", img.key, "err", err)
	}
	for t, k := range s.templates {
		if k == img.key {
			s.metrics.SnapshotBytes(t, 0)
		}
	}
	s.startLocked(img, false)
}

// WantedKey returns the key the policy in force wants for template's image
// ("" if none).
func (s *Store) WantedKey(template string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.templates[template]
}

// RestoreFailed records that a restore from template's image failed. After
// maxRestoreFailures in a row the image is verified again in full, and
// rebuilt if damaged.
func (s *Store) RestoreFailed(template string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img := s.images[s.templates[template]]
	if img == nil || img.state != StateReady {
		return
	}
	img.lastErr = "restore failed: " + err.Error()
	img.failures++
	if img.failures >= maxRestoreFailures {
		s.log.Warn("restores keep failing; verifying the snapshot image again", "key", img.key, "failures", img.failures)
		img.failures = 0
		img.man, img.fp = nil, nil
		s.startLocked(img, true)
	}
}

// RestoreSucceeded records a successful restore from template's image.
func (s *Store) RestoreSucceeded(template string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if img := s.images[s.templates[template]]; img != nil {
		img.failures = 0
	}
}

// Status describes template's image.
func (s *Store) Status(template string) Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	key, ok := s.templates[template]
	if !ok || key == "" {
		return Status{State: StateDisabled}
	}
	img := s.images[key]
	if img == nil {
		return Status{State: StateDisabled}
	}
	st := Status{State: img.state, LastError: img.lastErr}
	if img.state == StateReady {
		st.Bytes, st.BuiltAt = img.man.bytes(), img.man.BuiltAt
	}
	return st
}

// Close stops the builds and waits for them; images on disk stay for the
// next run.
func (s *Store) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}
