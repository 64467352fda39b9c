// Package bench implements "sandboxctl bench": it measures how fast
// sandboxd gives code a place to run, from the client's side, against a
// live daemon (the scenarios), and optionally how fast runsc, runc and the
// host start the same code without sandboxd (the baselines), and reports
// the latencies as a table, JSON, CSV and a plot of their CDFs.
//
// sandboxctl registers the flags with AddFlags, prints Help, and calls Run
// with what it shares with its other verbs: the standard streams, the
// connection to the daemon and the way it renders errors (Env).
package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// Benchmark defaults.
const (
	// defaultBenchRuns is -n: enough runs for a stable p50 and p90 in a few
	// minutes on a 2-core host (a cold boot takes seconds); p99 needs more.
	defaultBenchRuns = 20
	// defaultBenchWarmup is --warmup: the first runs after a start pay for
	// cold page caches and lazy initialisation that no later run sees.
	defaultBenchWarmup = 2
	// defaultFileMiB is the size of the files scenario's file, in MiB:
	// large enough that the transfer rate, not the round trip, dominates.
	defaultFileMiB = 64
	// defaultPoolWait bounds the untimed wait for the warm pool to refill
	// before each run, and for the template's snapshot once: a refill
	// boots sandboxes one at a time, seconds each, and a snapshot build
	// boots, warms and checkpoints one sandbox.
	defaultPoolWait = time.Minute
	// minBurst is the smallest default burst: one sandbox is no burst.
	minBurst = 2
)

// The scenarios run against the daemon, in the order they run and report.
const (
	scenarioWarm      = "warm"
	scenarioCold      = "cold"
	scenarioColdReady = "cold-ready"
	scenarioBoot      = "boot"
	scenarioBootReady = "boot-ready"
	scenarioExec      = "exec"
	scenarioResume    = "resume"
	scenarioFiles     = "files"
	scenarioBurst     = "burst"
	scenarioRefill    = "refill"
	scenarioMemory    = "memory"
)

// allScenarios lists every scenario in run order.
var allScenarios = []string{
	scenarioWarm, scenarioCold, scenarioColdReady, scenarioBoot, scenarioBootReady,
	scenarioExec, scenarioResume, scenarioFiles, scenarioBurst, scenarioRefill,
	scenarioMemory,
}

// Options are the flags of bench, set by parsing the flag set that AddFlags
// registered them on.
type Options struct {
	scenarioList string   // --scenarios as given
	scenarios    []string // in allScenarios order, from scenarioList; empty for none
	runs         int      // -n
	warmup       int      // --warmup
	concurrency  int      // --concurrency; 0 means 2 x the pool's target_idle
	template     string
	baselines    bool
	jsonPath     string
	csvPath      string
	plotPath     string
	runsc        string
	rootfs       string
	fileMiB      int
	poolWait     time.Duration
}

// has reports whether scenario name was selected.
func (o *Options) has(name string) bool { return slices.Contains(o.scenarios, name) }

// Short describes bench in sandboxctl's list of verbs.
const Short = "benchmark sandbox start and exec latency"

// Help is the --help text of bench, after its usage line and before its
// flags.
const Help = `
Bench measures how fast sandboxd gives code a place to run, from the
client's side, against a live daemon, and optionally against baselines
measured the same way on the same host.

Scenarios (--scenarios, comma-separated; default all; "none" with
--baselines runs only the baselines):
  warm        CreateSandbox from the warm pool, then the first Exec print(1),
              until its result arrives with stdout "1\n". Before each run
              bench waits (untimed, at most --pool-wait) until ListPools
              shows the pools refilled, so that each run can be a pool hit;
              the notes give the share of runs the daemon served warm
              (cold_start false).
  cold        The same with bypass_pool: a sandbox made for the request,
              restored from the template's snapshot when it is ready, else
              booted. Before the first run bench waits (untimed, at most
              --pool-wait) until ListPools shows the template's snapshot no
              longer building; the notes say how many sandboxes were
              restored and how many booted (Sandbox.start).
  cold-ready  A cold create until an Exec of "import numpy, pandas,
              matplotlib.pyplot" (the default template's warm imports)
              completes: the time to the first pandas result.
  boot        Like cold with bypass_snapshot: a sandbox booted in full,
              neither from the pool nor from the snapshot.
  boot-ready  Like cold-ready with bypass_snapshot.
  exec        In one live sandbox, the round trip of a trivial Exec: rows
              exec-python ("pass"), exec-bash ("true" in a new bash) and
              exec-bash-session ("true" in the persistent bash session).
  resume      In one sandbox from the pool that ran "x = 1" (untimed), pause
              the sandbox (PauseSandbox, untimed; it must answer PAUSED),
              then time an Exec print(x) until its result arrives with
              stdout "1\n": the daemon resumes the sandbox, with its state,
              before it runs the code. The same sandbox is paused and resumed
              in every run; after a failed run bench replaces it (untimed).
              Under VS, resume is compared with cold, a restore of the
              template's snapshot.
  files       Upload, then Download, of a random file (--file-mib, 1 MiB
              chunks) in one live sandbox: rows files-upload and
              files-download, with MiB/s; a download that differs from the
              upload (sha256) is a failure.
  burst       K concurrent creates, each with its first Exec print(1): the
              latency of each of the K. K is --concurrency, by default twice
              the pool's target_idle (at least 2). Bench runs ceil(N/K)
              rounds (after ceil(W/K) warm-up rounds), so about N samples.
  refill      With the template's pool at its target, take sandboxes from it
              (held, untimed) until it is empty, and time from the first
              take until ListPools shows its idle back at target_idle; the
              notes give the refill rate in sandboxes/s (target_idle over
              that time). Waits for the snapshot like cold.
  memory      The memory of an idle sandbox, rows memory-restore (a
              bypass_pool create, which must be restored) and memory-boot
              (bypass_snapshot), measured 1.5 s after both were created:
              what the sandbox's host cgroup charges (GetSandbox usage) and
              the PSS of its host processes (runsc-sandbox and runsc-gofer,
              found by the sandbox ID in /proc/*/cmdline; needs root and the
              daemon's host, else left out with a note), in MiB at p50, and
              restore's over boot's. PSS divides each page shared with
              other processes (the runsc binary, other sandboxes restored
              from the same image) among them. -n runs, no warm-up.
Sandboxes are destroyed after each run (untimed) and carry the label
sandboxctl.bench=RUN, so leftovers of an interrupted run can be found with
'sandboxctl list --label sandboxctl.bench=RUN'.

Baselines (--baselines; needs root, runsc and the rootfs) run python3 -c
'print(1)' per request without sandboxd:
  runsc-run          runsc --network=none --overlay2=root:memory run of the
                     rootfs (user 1000, cwd /)
  runsc-run-imports  the same, importing numpy, pandas, matplotlib.pyplot first
  runsc-exec         runsc exec into one running sandbox
  runc-run           runc run of the rootfs, read-only: the container floor
                     without gVisor (Debian's runc, installed with apt-get
                     when missing)
  host-python        /usr/bin/python3 on the host: the process floor
The containers use private --root directories in a temporary directory that
bench removes, even when interrupted.

Every scenario and baseline gets --warmup untimed runs, then -n timed runs;
runs are interleaved (round i runs one run of each), so that a host that
drifts or gets busy affects all alike and the ratios hold. A failed run is
counted, not fatal. The table gives p50, p90, p99 (nearest rank: an observed
sample), max and mean in milliseconds and, under VS, the ratio of each
scenario to its baselines (warm, cold and boot vs runsc-run, runc-run and
host-python; cold-ready and boot-ready vs runsc-run-imports; exec-python
vs runsc-exec) and of resume to cold, shown whenever both rows ran; memory
has a section of its own.

--json FILE writes the results with every sample, the ratios and the host
(hostname, kernel, cores, memory, runsc version, date); --csv FILE one row
per scenario and baseline; --plot FILE the latency CDFs as .png or .svg.
Progress goes to stderr: a bar on a terminal, else one line per round.

Exit status:
  0    every scenario and baseline had at least one successful run
  1    some had none (the results are still written), or bench failed
  2    usage error
  130  interrupted by Ctrl-C (sandboxes and containers are cleaned up)`

// AddFlags registers the flags of bench on fs and returns the options
// they set once fs is parsed. runsc and rootfs are the defaults of --runsc
// and --rootfs: empty when sandboxctl does not know them, and then
// --baselines needs the flags.
func AddFlags(fs *flag.FlagSet, runsc, rootfs string) *Options {
	o := &Options{}
	fs.StringVar(&o.scenarioList, "scenarios", "all", "comma-separated `LIST` of "+strings.Join(allScenarios, ",")+", or all, or none")
	fs.IntVar(&o.runs, "n", defaultBenchRuns, "`N` timed runs of each scenario and baseline")
	fs.IntVar(&o.warmup, "warmup", defaultBenchWarmup, "`W` untimed warm-up runs before the timed ones")
	fs.IntVar(&o.concurrency, "concurrency", 0, "`K` sandboxes created at once by burst (default: 2 x the pool's target_idle, at least 2)")
	fs.StringVar(&o.template, "template", "", "policy template `NAME` to create sandboxes from (default: the policy's default template)")
	fs.BoolVar(&o.baselines, "baselines", false, "also measure the runsc, runc and host-process baselines (root)")
	fs.StringVar(&o.jsonPath, "json", "", "write the results, samples and host details as JSON to `FILE`")
	fs.StringVar(&o.csvPath, "csv", "", "write one CSV row per scenario and baseline to `FILE`")
	fs.StringVar(&o.plotPath, "plot", "", "draw the latency CDFs to `FILE` (.png or .svg)")
	fs.StringVar(&o.runsc, "runsc", runsc, "runsc binary `PATH` for the baselines")
	fs.StringVar(&o.rootfs, "rootfs", rootfs, "rootfs `DIR` for the baselines")
	fs.IntVar(&o.fileMiB, "file-mib", defaultFileMiB, "size of the files scenario's file in `MiB`")
	fs.DurationVar(&o.poolWait, "pool-wait", defaultPoolWait, "before each run, wait at most `DURATION` (untimed) for the warm pools to refill, and once for the template's snapshot; 0: do not wait")
	return o
}

// Env is what bench runs with: what sandboxctl's verbs share.
type Env struct {
	// Stdout receives the table; Stderr the progress (a bar when it is a
	// terminal) alongside the notes.
	Stdout, Stderr io.Writer
	// Client returns a client of the daemon. Bench calls it only when a
	// scenario is to run, so that the baselines alone need no daemon.
	Client func() (sandboxv1.SandboxServiceClient, error)
	// Address is the daemon's address, for the report.
	Address string
	// Describe renders an error as the one-line message that sandboxctl
	// prints for it.
	Describe func(error) string
	// Note prints msg on Stderr as a line of its own, marked as bench's.
	Note func(msg string)
}

// UsageError is a mistake in the flags of bench, found before anything
// runs: sandboxctl exits 2 on it.
type UsageError struct{ msg string }

func (e *UsageError) Error() string { return e.msg }

// usagef returns a UsageError with a formatted message.
func usagef(format string, args ...any) error {
	return &UsageError{fmt.Sprintf(format, args...)}
}

// Run checks o, runs the selected scenarios and baselines, prints the
// table to env.Stdout and writes the files asked for. Whatever happens, it
// destroys the sandboxes and containers it made before returning. It
// returns a *UsageError for bad flags, ctx's error once ctx is cancelled
// (with no report), and an error when a scenario or baseline had no
// successful run (after the report).
func Run(ctx context.Context, env Env, o *Options) error {
	var err error
	if o.scenarios, err = parseScenarios(o.scenarioList); err != nil {
		return err
	}
	if err := o.validate(); err != nil {
		return err
	}
	return run(ctx, env, o)
}

// parseScenarios reads --scenarios: names from allScenarios, "all" or
// "none", comma-separated. It returns the selection in run order.
func parseScenarios(s string) ([]string, error) {
	chosen := map[string]bool{}
	for _, name := range strings.Split(s, ",") {
		switch name = strings.TrimSpace(name); {
		case name == "all":
			for _, n := range allScenarios {
				chosen[n] = true
			}
		case name == "none":
		case slices.Contains(allScenarios, name):
			chosen[name] = true
		default:
			return nil, usagef("unknown scenario %q in --scenarios: want %s, all or none", name, strings.Join(allScenarios, ","))
		}
	}
	var out []string
	for _, n := range allScenarios {
		if chosen[n] {
			out = append(out, n)
		}
	}
	return out, nil
}

// validate checks the flags that need no daemon and no file system beyond
// a stat, so that a mistake fails at once rather than after the runs.
func (o *Options) validate() error {
	switch {
	case len(o.scenarios) == 0 && !o.baselines:
		return usagef("nothing to run: --scenarios none needs --baselines")
	case o.runs < 1:
		return usagef("-n must be at least 1")
	case o.warmup < 0:
		return usagef("--warmup must not be negative")
	case o.concurrency < 0:
		return usagef("--concurrency must not be negative")
	case o.fileMiB < 1:
		return usagef("--file-mib must be at least 1")
	case o.poolWait < 0:
		return usagef("--pool-wait must not be negative")
	}
	if o.plotPath != "" {
		switch strings.ToLower(filepath.Ext(o.plotPath)) {
		case ".png", ".svg":
		default:
			return usagef("--plot %s: the file name must end in .png or .svg", o.plotPath)
		}
	}
	for _, p := range []string{o.jsonPath, o.csvPath, o.plotPath} {
		if p == "" {
			continue
		}
		if !isDir(filepath.Dir(p)) {
			return fmt.Errorf("cannot write %s: %s is not a directory", p, filepath.Dir(p))
		}
	}
	if o.baselines {
		if o.runsc == "" {
			return usagef("--baselines needs runsc: pass --runsc PATH (a sandboxctl built by the Makefile knows it)")
		}
		if o.rootfs == "" {
			return usagef("--baselines needs the rootfs: pass --rootfs DIR (a sandboxctl built by the Makefile knows it)")
		}
		if os.Geteuid() != 0 {
			return errors.New("--baselines needs root: runsc and runc create namespaces and mounts (run with sudo)")
		}
	}
	return nil
}

// run runs the selected scenarios and baselines and writes the report.
// Whatever happens, it destroys the sandboxes and containers it made
// before returning.
func run(ctx context.Context, env Env, o *Options) error {
	started := time.Now()
	prog := newProgress(env.Stderr, env.Note)
	notef := func(format string, args ...any) { prog.note(fmt.Sprintf(format, args...)) }
	// Cleanup must run after Ctrl-C too, so it gets a context of its own.
	cleanupCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	}
	h := &harness{runs: o.runs, warmup: o.warmup, prog: prog, notef: notef, describe: env.Describe}
	var items []*benchItem

	var d *daemonBench
	if len(o.scenarios) > 0 {
		var err error
		if d, err = newDaemonBench(ctx, env, o, runID(started), notef); err != nil {
			return err
		}
		defer func() {
			cctx, cancel := cleanupCtx()
			defer cancel()
			d.destroyLeftovers(cctx)
		}()
		h.before = d.pools.settle
		items = append(items, d.items(o)...)
	}
	if o.baselines {
		bl, err := newBaselineEnv(ctx, o.runsc, o.rootfs, notef)
		if err != nil {
			return err
		}
		defer func() {
			cctx, cancel := cleanupCtx()
			defer cancel()
			if err := bl.close(cctx); err != nil {
				notef("cleaning up the baselines: %v", err)
			}
		}()
		items = append(items, bl.items()...)
	}

	h.run(ctx, items)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	rep := newReport(h.results(), machineInfoFor(o.runsc, started), reportConfig(o, d, env.Address))
	if d != nil {
		rep.Pools = d.pools.infos()
		for _, n := range d.startNotes(h.results()) {
			notef("%s", n)
		}
	}
	return writeReport(env.Stdout, o, rep)
}

// runID names one benchmark run in the labels of its sandboxes: its start
// and the process, unique on a host.
func runID(started time.Time) string {
	return fmt.Sprintf("%s-%d", started.UTC().Format("20060102T150405Z"), os.Getpid())
}

// writeReport prints the table, writes the files asked for, and fails when
// a row had no successful run.
func writeReport(stdout io.Writer, o *Options, rep *benchReport) error {
	rep.FinishedAt = time.Now().UTC().Format(time.RFC3339)
	if err := writeTable(stdout, rep); err != nil {
		return err
	}
	if err := rep.writeFiles(o); err != nil {
		return err
	}
	if failed := rep.withoutSuccess(); len(failed) > 0 {
		return fmt.Errorf("no successful run of %s (see the errors above)", strings.Join(failed, ", "))
	}
	return nil
}

// isDir reports whether p is a directory, or a symbolic link to one.
func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
