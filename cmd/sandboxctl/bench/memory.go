package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// The memory scenario.
const (
	rowMemoryRestore = "memory-restore"
	rowMemoryBoot    = "memory-boot"
	// hostProcRoot is where bench looks for a sandbox's host processes.
	hostProcRoot = "/proc"
)

// memorySettle is how long the memory scenario leaves its sandboxes idle
// before it reads their memory, so that what it reads is the sandbox at
// rest, not the tail of its start. On the development VM the cgroup's
// usage of a restored and of a booted sandbox moved by under 0.5 MiB
// (0.5%) from the create's answer to 4 s later; 1.5 s leaves a margin for
// slower hosts. A variable, so that tests can shorten it.
var memorySettle = 1500 * time.Millisecond

// memoryItem is memory: each run creates an idle restored sandbox
// (bypass_pool, which must come back restored) and a booted one
// (bypass_snapshot), lets both settle for memorySettle, and reads the
// memory of each: its host cgroup's usage (GetSandbox) and the PSS of its
// host processes. Nothing is timed, so there are no warm-up runs. Setup
// waits for the snapshot, so that the restore can be one.
func (d *daemonBench) memoryItem(o *Options) *benchItem {
	return &benchItem{
		name: scenarioMemory, kind: kindMemory, rows: []string{rowMemoryRestore, rowMemoryBoot},
		runs: o.runs, warmup: 0,
		setup: func(ctx context.Context) error {
			d.awaitSnapshot(ctx)
			return nil
		},
		round: func(ctx context.Context) []sample {
			restored, rid := d.createIdle(ctx, rowMemoryRestore, bypassPool)
			defer d.destroyDetached(ctx, rid)
			booted, bid := d.createIdle(ctx, rowMemoryBoot, bypassSnapshot)
			defer d.destroyDetached(ctx, bid)
			select {
			case <-ctx.Done():
			case <-time.After(memorySettle):
			}
			d.measureMemory(ctx, &restored, rid)
			d.measureMemory(ctx, &booted, bid)
			return []sample{restored, booted}
		},
	}
}

// createIdle creates the sandbox of a memory row and checks that it
// started as the row says: restored for bypassPool, booted for
// bypassSnapshot. It returns the sandbox's ID ("" if none) for the caller
// to destroy.
func (d *daemonBench) createIdle(ctx context.Context, row string, mode createMode) (sample, string) {
	sb, err := d.create(ctx, mode)
	if err != nil {
		return sample{row: row, err: &stepError{"create", err}}, ""
	}
	s := createdSample(row, sb)
	switch st := sb.GetStart(); {
	case mode == bypassPool && st == sandboxv1.StartKind_START_KIND_UNSPECIFIED:
		s.err = errors.New("the daemon does not say how the sandbox started (Sandbox.start): it predates snapshots, so there is no restored sandbox to measure")
	case mode == bypassPool && st != sandboxv1.StartKind_START_KIND_RESTORE:
		s.err = fmt.Errorf("the sandbox was not restored but started %s: the daemon has no usable snapshot of the template ('sandboxctl pools' shows its state)", startName(st))
	case mode == bypassSnapshot && (st == sandboxv1.StartKind_START_KIND_RESTORE || st == sandboxv1.StartKind_START_KIND_POOL):
		s.err = fmt.Errorf("the sandbox was not booted but started %s: this daemon ignores bypass_snapshot", startName(st))
	}
	return s, sb.GetSandboxId()
}

// startName is a start kind without its enum prefix, lower case
// ("restore").
func startName(k sandboxv1.StartKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "START_KIND_"))
}

// measureMemory reads the memory of sandbox id into s, unless s already
// failed: its cgroup's usage from GetSandbox, and the PSS of its host
// processes, -1 when those cannot be read (noted once).
func (d *daemonBench) measureMemory(ctx context.Context, s *sample, id string) {
	if s.err != nil {
		return
	}
	sb, err := d.client.GetSandbox(ctx, &sandboxv1.GetSandboxRequest{SandboxId: id})
	if err != nil {
		s.err = &stepError{"get", err}
		return
	}
	if sb.GetUsage() == nil {
		s.err = errors.New("the daemon reports no memory usage for the sandbox (GetSandbox usage)")
		return
	}
	m := &memSample{cgroup: sb.GetUsage().GetMemoryBytes(), pss: -1}
	pss, procs, err := sandboxPSS(hostProcRoot, id)
	switch {
	case err != nil:
		d.notePSS("cannot read the PSS of sandbox %s's host processes (%v): PSS needs root on the daemon's host; reporting the cgroup's memory only", id, err)
	case len(procs) == 0:
		d.notePSS("no process on this host carries sandbox %s in its command line: the daemon runs on another host or in another PID namespace; reporting the cgroup's memory only", id)
	default:
		m.pss = pss
		d.notePSS("the PSS of a sandbox sums its host processes %s", strings.Join(procs, ", "))
	}
	s.mem = m
}

// notePSS notes, as "memory: MSG", the first word on PSS: how it is
// measured, or why it cannot be.
func (d *daemonBench) notePSS(format string, args ...any) {
	d.mu.Lock()
	noted := d.pssNoted
	d.pssNoted = true
	d.mu.Unlock()
	if !noted {
		d.notef("%s: %s", scenarioMemory, fmt.Sprintf(format, args...))
	}
}

// sandboxPSS sums the proportional set size of the host processes of
// sandbox id: those whose command line has the ID as a word (runsc-sandbox
// and runsc-gofer carry it in their bundle path), this process excepted.
// It returns the sum in bytes and the processes' names (argv[0]); none
// when no process carries the ID. A process that cannot be read for lack
// of permission fails it (bench is not root); one that exits meanwhile is
// skipped.
func sandboxPSS(procRoot, id string) (int64, []string, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return 0, nil, fmt.Errorf("listing processes: %w", err)
	}
	self := strconv.Itoa(os.Getpid())
	var (
		total int64
		procs []string
	)
	for _, e := range entries {
		pid := e.Name()
		if _, err := strconv.Atoi(pid); err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join(procRoot, pid, "cmdline"))
		if err != nil || !hasWord(cmdline, id) {
			continue // gone, or not the sandbox's
		}
		pss, err := processPSS(filepath.Join(procRoot, pid))
		switch {
		case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH):
			continue // exited since
		case err != nil:
			return 0, nil, err
		}
		total += pss
		procs = append(procs, filepath.Base(string(bytes.SplitN(cmdline, []byte{0}, 2)[0])))
	}
	return total, procs, nil
}

// processPSS returns the PSS of the process whose /proc directory is dir,
// in bytes: the Pss line of smaps_rollup, or the sum of those of smaps on
// kernels before 4.14, which have no smaps_rollup.
func processPSS(dir string) (int64, error) {
	f, err := os.Open(filepath.Join(dir, "smaps_rollup"))
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(dir); serr == nil {
			f, err = os.Open(filepath.Join(dir, "smaps"))
		}
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var kib int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Pss:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("reading %s: bad Pss line %q", f.Name(), sc.Text())
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("reading %s: bad Pss line %q", f.Name(), sc.Text())
		}
		kib += n
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	return kib << 10, nil
}

// hasWord reports whether s contains word with no ID character (letters,
// digits, '-', '_') right before or after it, so that sandbox sb-a is not
// found in the command line of sb-ab.
func hasWord(s []byte, word string) bool {
	for i := 0; ; {
		j := bytes.Index(s[i:], []byte(word))
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(word)
		if (start == 0 || !isIDChar(s[start-1])) && (end == len(s) || !isIDChar(s[end])) {
			return true
		}
		i = start + 1
	}
}

// isIDChar reports whether c may be part of a sandbox ID, or close enough
// to one (upper case, '_') that an ID next to it is not a word.
func isIDChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}
