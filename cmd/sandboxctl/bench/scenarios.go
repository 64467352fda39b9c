package bench

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// The code the scenarios run and what it must print.
const (
	printCode = "print(1)"
	printWant = "1\n"
	// warmImportsCode imports the warm_imports of the default policy's
	// python template (policy/default.yaml): the modules a pool sandbox
	// has imported before it is handed out.
	warmImportsCode = "import numpy, pandas, matplotlib.pyplot"
	execPythonCode  = "pass"
	execBashCode    = "true"
	// benchFilePath is where the files scenario writes, under /workspace.
	benchFilePath = "sandboxctl-bench.bin"
	// filesSandboxBudget is how many bytes the files scenario uploads into
	// one sandbox before it replaces the sandbox (untimed): the default
	// template allows 4 GiB of uploads over a sandbox's life
	// (upload_total), and staying at half of it leaves room for templates
	// that allow less.
	filesSandboxBudget = 2 << 30
)

// Rows of the scenarios that fill more than one.
const (
	rowExecPython    = "exec-python"
	rowExecBash      = "exec-bash"
	rowExecSession   = "exec-bash-session"
	rowFilesUpload   = "files-upload"
	rowFilesDownload = "files-download"
)

// items returns the selected scenarios, in run order.
func (d *daemonBench) items(o *Options) []*benchItem {
	var items []*benchItem
	for _, name := range o.scenarios {
		switch name {
		case scenarioWarm:
			items = append(items, d.createItem(scenarioWarm, fromPool, printCode, printWant))
		case scenarioCold:
			items = append(items, d.createItem(scenarioCold, bypassPool, printCode, printWant))
		case scenarioColdReady:
			items = append(items, d.createItem(scenarioColdReady, bypassPool, warmImportsCode, ""))
		case scenarioBoot:
			items = append(items, d.createItem(scenarioBoot, bypassSnapshot, printCode, printWant))
		case scenarioBootReady:
			items = append(items, d.createItem(scenarioBootReady, bypassSnapshot, warmImportsCode, ""))
		case scenarioExec:
			items = append(items, d.execItem())
		case scenarioResume:
			items = append(items, d.resumeItem())
		case scenarioFiles:
			items = append(items, d.filesItem(o.fileMiB<<20))
		case scenarioBurst:
			items = append(items, d.burstItem(o))
		case scenarioRefill:
			items = append(items, d.refillItem())
		case scenarioMemory:
			items = append(items, d.memoryItem(o))
		}
	}
	return items
}

// destroyDetached destroys id even when ctx is cancelled (Ctrl-C, a run's
// timeout): the destroy is cleanup, not part of the run.
func (d *daemonBench) destroyDetached(ctx context.Context, id string) {
	if id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	d.destroy(ctx, id)
}

// createItem is warm, cold, cold-ready, boot or boot-ready: each run
// creates a sandbox as mode says, runs code, and destroys the sandbox
// untimed. Cold runs are meant to be restores: their setup waits for the
// template's snapshot.
func (d *daemonBench) createItem(name string, mode createMode, code, want string) *benchItem {
	it := &benchItem{
		name: name, kind: kindScenario, rows: []string{name},
		round: func(ctx context.Context) []sample {
			s, id := d.createExec(ctx, name, mode, code, want)
			d.destroyDetached(ctx, id)
			return []sample{s}
		},
	}
	if mode == bypassPool {
		it.setup = func(ctx context.Context) error {
			d.awaitSnapshot(ctx)
			return nil
		}
	}
	return it
}

// execItem is exec: round trips of trivial Python and bash code, a fresh
// bash and the persistent bash session, in one sandbox created (untimed)
// at setup.
func (d *daemonBench) execItem() *benchItem {
	var id string
	return &benchItem{
		name: scenarioExec, kind: kindScenario, rows: []string{rowExecPython, rowExecBash, rowExecSession},
		setup: func(ctx context.Context) error {
			sb, err := d.create(ctx, fromPool)
			if err != nil {
				return err
			}
			id = sb.GetSandboxId()
			return nil
		},
		round: func(ctx context.Context) []sample {
			return []sample{
				d.timedExec(ctx, rowExecPython, id, sandboxv1.Language_LANGUAGE_PYTHON, execPythonCode),
				d.timedExec(ctx, rowExecBash, id, sandboxv1.Language_LANGUAGE_BASH, execBashCode),
				d.timedExec(ctx, rowExecSession, id, sandboxv1.Language_LANGUAGE_BASH_SESSION, execBashCode),
			}
		},
		close: func(ctx context.Context) error {
			if id != "" {
				d.destroy(ctx, id)
			}
			return nil
		},
	}
}

// timedExec times one Exec of code that prints nothing.
func (d *daemonBench) timedExec(ctx context.Context, row, id string, lang sandboxv1.Language, code string) sample {
	start := time.Now()
	out, err := d.exec(ctx, id, lang, code)
	s := sample{row: row, ms: msSince(start), err: err}
	if err == nil {
		s.err = out.check("")
	}
	return s
}

// filesItem is files: each run uploads size random bytes into one sandbox
// and downloads them again, each timed, and checks the sha256. The sandbox
// is created at setup and replaced (untimed) every filesSandboxBudget bytes.
func (d *daemonBench) filesItem(size int) *benchItem {
	var (
		data     []byte
		sum      [sha256.Size]byte
		id       string
		uploaded int64
	)
	replace := func(ctx context.Context) error {
		d.destroyDetached(ctx, id)
		id, uploaded = "", 0
		sb, err := d.create(ctx, fromPool)
		if err != nil {
			return err
		}
		id = sb.GetSandboxId()
		return nil
	}
	return &benchItem{
		name: scenarioFiles, kind: kindScenario, rows: []string{rowFilesUpload, rowFilesDownload},
		setup: func(ctx context.Context) error {
			data = make([]byte, size)
			rand.Read(data)
			sum = sha256.Sum256(data)
			return replace(ctx)
		},
		round: func(ctx context.Context) []sample {
			if id == "" || uploaded+int64(size) > filesSandboxBudget {
				if err := replace(ctx); err != nil {
					err = &stepError{"replacing the sandbox", err}
					return []sample{{row: rowFilesUpload, err: err}, {row: rowFilesDownload, err: err}}
				}
			}
			start := time.Now()
			err := d.upload(ctx, id, benchFilePath, data)
			up := sample{row: rowFilesUpload, ms: msSince(start), bytes: int64(size)}
			if err != nil {
				up.err = &stepError{"upload", err}
			}
			uploaded += int64(size)
			if err != nil {
				return []sample{up} // nothing to download
			}
			start = time.Now()
			n, got, err := d.download(ctx, id, benchFilePath)
			down := sample{row: rowFilesDownload, ms: msSince(start), bytes: int64(size)}
			if err != nil {
				down.err = &stepError{"download", err}
			} else if n != int64(size) || got != sum {
				down.err = fmt.Errorf("the download differs from the upload: %d bytes, sha256 %x, want %d bytes, sha256 %x", n, got[:8], size, sum[:8])
			}
			return []sample{up, down}
		},
		close: func(ctx context.Context) error {
			if id != "" {
				d.destroy(ctx, id)
			}
			return nil
		},
	}
}

// burstItem is burst: each run starts K create+exec runs at once and
// returns the latency of each. K is --concurrency, else burstSize of the
// template's pool; it is settled at setup, after the sandboxes of exec and
// files revealed the default template's name.
func (d *daemonBench) burstItem(o *Options) *benchItem {
	it := &benchItem{name: scenarioBurst, kind: kindScenario, rows: []string{scenarioBurst}}
	var k int
	it.setup = func(ctx context.Context) error {
		k = o.concurrency
		if k == 0 {
			k = d.defaultBurst(ctx)
		}
		d.mu.Lock()
		d.burstK = k
		d.mu.Unlock()
		it.runs, it.warmup = ceilDiv(o.runs, k), ceilDiv(o.warmup, k)
		d.notef("burst: %d concurrent creates per round, %d rounds (+%d warm-up)", k, it.runs, it.warmup)
		return nil
	}
	it.round = func(ctx context.Context) []sample {
		samples := make([]sample, k)
		ids := make([]string, k)
		release := make(chan struct{})
		var wg sync.WaitGroup
		for i := range k {
			wg.Go(func() {
				<-release
				samples[i], ids[i] = d.createExec(ctx, scenarioBurst, fromPool, printCode, printWant)
			})
		}
		close(release)
		wg.Wait()
		for _, id := range ids {
			wg.Go(func() { d.destroyDetached(ctx, id) })
		}
		wg.Wait()
		return samples
	}
	return it
}

// defaultBurst is K when --concurrency is not given: burstSize of the
// template's pool, or minBurst when the pool is unknown.
func (d *daemonBench) defaultBurst(ctx context.Context) int {
	pools, err := d.pools.list(ctx)
	template := d.templateName()
	if pool := findPool(pools, template); err == nil && pool != nil {
		return burstSize(pool)
	}
	if len(pools) > 0 {
		d.notef("burst: cannot tell which pool serves template %q: using %d sandboxes (set --concurrency)", template, minBurst)
	}
	return minBurst
}

// startNotes explains runs that did not start as their scenario meant:
// cold runs the daemon served from the pool (a daemon that ignores
// bypass_pool or predates cold_start), cold runs booted rather than
// restored (no usable snapshot), boot runs not booted (a daemon
// that ignores bypass_snapshot), and boot runs of a daemon that does not
// say how its sandboxes start.
func (d *daemonBench) startNotes(rows []*series) []string {
	var notes []string
	for _, s := range rows {
		if s.Kind != kindScenario || s.Creates == 0 {
			continue
		}
		cold := s.Name == scenarioCold || s.Name == scenarioColdReady
		boot := s.Name == scenarioBoot || s.Name == scenarioBootReady
		if !cold && !boot {
			continue
		}
		if warm := s.Creates - s.ColdStarts; warm > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d of %d sandboxes came with cold_start false: this daemon ignores bypass_pool or does not report cold_start, so these runs may be pool hits", s.Name, warm, s.Creates))
		}
		switch {
		case cold && s.Boots > 0:
			notes = append(notes, fmt.Sprintf("%s: %d of %d sandboxes were booted, not restored: the daemon had no usable snapshot of the template ('sandboxctl pools' shows its state)", s.Name, s.Boots, s.Creates))
		case boot && s.Pooled+s.Restores > 0:
			notes = append(notes, fmt.Sprintf("%s: %d of %d sandboxes were not booted (restored or from the pool): this daemon ignores bypass_snapshot", s.Name, s.Pooled+s.Restores, s.Creates))
		case boot && !s.startsKnown():
			notes = append(notes, fmt.Sprintf("%s: the daemon does not say how its sandboxes start (Sandbox.start): it predates snapshots, so these runs are plain cold starts", s.Name))
		}
	}
	return notes
}

// ceilDiv returns a/b rounded up, for b > 0.
func ceilDiv(a, b int) int { return (a + b - 1) / b }
