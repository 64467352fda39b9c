package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/sandboxd/sandboxd/policy"
)

// reloadDebounce groups the several events an editor's save makes (write,
// rename, chmod) into one reload.
const reloadDebounce = 200 * time.Millisecond

// reloader re-reads the policy file on SIGHUP and when the file changes.
// An invalid file is rejected with the reason logged and the policy in
// force keeps running.
type reloader struct {
	path    string
	log     *slog.Logger
	current *policy.Policy
	apply   func(*policy.Policy)
	// watcher watches the directories of the policy file and of its
	// tenants_file; nil when watching failed.
	watcher *fsnotify.Watcher
}

// watchTenants adds the directory of the policy's tenants_file, if any, to
// the watch (adding a directory twice is harmless).
func (r *reloader) watchTenants() {
	if r.watcher == nil || r.current.TenantsFile == "" {
		return
	}
	if err := r.watcher.Add(filepath.Dir(r.current.TenantsFile)); err != nil {
		r.log.Warn("not watching the tenants file; reload with SIGHUP", "path", r.current.TenantsFile, "err", err)
	}
}

// run watches until ctx ends. path "" (embedded default policy) only logs
// SIGHUPs: there is nothing to re-read.
func (r *reloader) run(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var events <-chan fsnotify.Event
	if r.path != "" {
		// Watch the directories: editors and config managers replace a
		// file by renaming, which drops a watch on the file itself.
		w, err := fsnotify.NewWatcher()
		if err == nil {
			err = w.Add(filepath.Dir(r.path))
		}
		if err != nil {
			r.log.Warn("not watching the policy file; reload with SIGHUP", "err", err)
		} else {
			defer w.Close()
			events = w.Events
			r.watcher = w
			r.watchTenants()
		}
	}
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.reload("SIGHUP")
		case ev := <-events:
			if r.concerns(ev.Name) && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
				debounce = time.After(reloadDebounce)
			}
		case <-debounce:
			debounce = nil
			r.reload("file changed")
		}
	}
}

// kubeDataLink is the symlink through which Kubernetes serves a mounted
// ConfigMap or Secret: an update writes a new directory and renames a new
// ..data link over the old one, so the policy file's own name sees no
// event.
const kubeDataLink = "..data"

// concerns reports whether a change to the directory entry name may have
// changed the policy file or its tenants_file.
func (r *reloader) concerns(name string) bool {
	name = filepath.Clean(name)
	for _, f := range []string{r.path, r.current.TenantsFile} {
		if f != "" && (name == f || (filepath.Dir(name) == filepath.Dir(f) && filepath.Base(name) == kubeDataLink)) {
			return true
		}
	}
	return false
}

func (r *reloader) reload(why string) {
	if r.path == "" {
		r.log.Info("SIGHUP ignored: running the embedded default policy (start with --policy FILE to reload)")
		return
	}
	p, err := policy.Load(r.path)
	if err != nil {
		r.log.Error("policy reload rejected; the old policy stays in force", "trigger", why, "err", err)
		return
	}
	if p.Host.Socket != r.current.Host.Socket || p.Host.ListenTCP != r.current.Host.ListenTCP || p.Host.MetricsListen != r.current.Host.MetricsListen {
		r.log.Warn("listener settings (host.socket, host.listen_tcp, host.metrics_listen) change only at restart")
	}
	r.log.Info("reloading policy", "trigger", why, "path", r.path)
	r.current = p
	r.watchTenants()
	r.apply(p)
}
