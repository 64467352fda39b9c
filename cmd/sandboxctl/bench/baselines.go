package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The baselines, in run order.
const (
	baselineRunscRun        = "runsc-run"
	baselineRunscRunImports = "runsc-run-imports"
	baselineRunscExec       = "runsc-exec"
	baselineRuncRun         = "runc-run"
	baselineHostPython      = "host-python"
)

const (
	// hostPython is the interpreter, the same path on the host and in the
	// rootfs (both Debian).
	hostPython = "/usr/bin/python3"
	// sleepSeconds keeps runsc-exec's sandbox alive: its init sleeps
	// longer (11 days) than any benchmark runs; close deletes it.
	sleepSeconds = "1000000"
	// commandWaitDelay is how long a cancelled baseline command gets
	// between SIGTERM (which runsc and runc pass on to the container) and
	// SIGKILL.
	commandWaitDelay = 10 * time.Second
	// aptTimeout bounds installing runc with apt-get: a download of a few
	// MiB, or a hung mirror.
	aptTimeout = 5 * time.Minute
	// runscOverlay keeps the rootfs untouched, as the daemon does: the
	// root's upper layer lives in the sandbox's memory.
	runscOverlay = "root:memory"
)

// baselineEnv is what the baselines share: the binaries, a temporary
// directory with their bundles and private runsc and runc state roots, and
// the sandbox of runsc-exec.
type baselineEnv struct {
	runsc, runc, rootfs string
	dir                 string // the temporary directory; all below is in it
	runscRoot, runcRoot string
	seq                 int // containers started so far
	notef               func(format string, args ...any)

	runcErr error  // why runc-run cannot run, if it cannot
	execID  string // the container of runsc-exec, once created
}

// Bundle names, directories of baselineEnv.dir.
const (
	bundleRunscPrint   = "bundle-runsc-print"
	bundleRunscImports = "bundle-runsc-imports"
	bundleRunscSleep   = "bundle-runsc-sleep"
	bundleRuncPrint    = "bundle-runc-print"
)

// newBaselineEnv checks runsc and the rootfs, finds (or installs) runc and
// writes the bundles. The caller must close the environment.
func newBaselineEnv(ctx context.Context, runsc, rootfs string, notef func(string, ...any)) (*baselineEnv, error) {
	runsc, err := filepath.Abs(runsc)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(runsc); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("--runsc %s is not an executable file (pass --runsc PATH)", runsc)
	}
	if rootfs, err = filepath.Abs(rootfs); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(rootfs, hostPython)); err != nil {
		return nil, fmt.Errorf("--rootfs %s has no %s: not a sandbox rootfs (pass --rootfs DIR)", rootfs, hostPython)
	}
	dir, err := os.MkdirTemp("", "sandboxctl-bench-")
	if err != nil {
		return nil, err
	}
	e := &baselineEnv{
		runsc: runsc, rootfs: rootfs, dir: dir, notef: notef,
		runscRoot: filepath.Join(dir, "runsc-root"),
		runcRoot:  filepath.Join(dir, "runc-root"),
	}
	e.runc, e.runcErr = findRunc(ctx, notef)
	python := func(code string) []string { return []string{hostPython, "-c", code} }
	bundles := []struct {
		name     string
		readonly bool
		args     []string
	}{
		{bundleRunscPrint, false, python(printCode)},
		{bundleRunscImports, false, python(warmImportsCode + "; " + printCode)},
		{bundleRunscSleep, false, []string{"/bin/sleep", sleepSeconds}},
		{bundleRuncPrint, true, python(printCode)},
	}
	for _, b := range bundles {
		if err := writeBundle(filepath.Join(dir, b.name), baselineSpec(rootfs, b.readonly, b.args)); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	return e, nil
}

// debianRunc is where Debian's runc package installs runc: a PATH without
// the sbin directories (sudo without -i) does not find it there.
const debianRunc = "/usr/sbin/runc"

// findRunc returns the path of runc, installing Debian's package when it is
// missing.
func findRunc(ctx context.Context, notef func(string, ...any)) (string, error) {
	look := func() (string, error) {
		if p, err := exec.LookPath("runc"); err == nil {
			return p, nil
		}
		return exec.LookPath(debianRunc)
	}
	if p, err := look(); err == nil {
		return p, nil
	}
	notef("runc is missing: installing Debian's runc (apt-get install -y runc)")
	// An apt-get killed halfway leaves dpkg broken: Ctrl-C waits for it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), aptTimeout)
	defer cancel()
	install := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // out of reach of the terminal's Ctrl-C
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get %s: %v: %s", strings.Join(args, " "), err, lastLine(string(out)))
		}
		return nil
	}
	err := install("install", "-y", "runc")
	if err != nil {
		// Often only the package lists are missing.
		if err = install("update"); err == nil {
			err = install("install", "-y", "runc")
		}
	}
	if err != nil {
		return "", fmt.Errorf("cannot install runc: %w", err)
	}
	return look()
}

// items returns the baselines, in run order.
func (e *baselineEnv) items() []*benchItem {
	bundle := func(name string) string { return filepath.Join(e.dir, name) }
	runscRun := func(row, b string) *benchItem {
		return &benchItem{
			name: row, kind: kindBaseline, rows: []string{row},
			round: func(ctx context.Context) []sample {
				return []sample{e.timed(ctx, row, e.runsc, e.runscArgs("run", "--bundle="+bundle(b), e.nextID())...)}
			},
		}
	}
	return []*benchItem{
		runscRun(baselineRunscRun, bundleRunscPrint),
		runscRun(baselineRunscRunImports, bundleRunscImports),
		{
			name: baselineRunscExec, kind: kindBaseline, rows: []string{baselineRunscExec},
			setup: e.startExecSandbox,
			round: func(ctx context.Context) []sample {
				return []sample{e.timed(ctx, baselineRunscExec, e.runsc, e.runscArgs("exec", e.execID, hostPython, "-c", printCode)...)}
			},
		},
		{
			name: baselineRuncRun, kind: kindBaseline, rows: []string{baselineRuncRun},
			setup: func(context.Context) error { return e.runcErr },
			round: func(ctx context.Context) []sample {
				return []sample{e.timed(ctx, baselineRuncRun, e.runc, "--root="+e.runcRoot, "run", "--bundle="+bundle(bundleRuncPrint), e.nextID())}
			},
		},
		{
			name: baselineHostPython, kind: kindBaseline, rows: []string{baselineHostPython},
			setup: func(context.Context) error {
				_, err := os.Stat(hostPython)
				return err
			},
			round: func(ctx context.Context) []sample {
				return []sample{e.timed(ctx, baselineHostPython, hostPython, "-c", printCode)}
			},
		},
	}
}

// runscArgs returns the arguments of a runsc subcommand with the global
// flags of every baseline: the private root, no network and the memory
// overlay, as the brief of the baselines and the daemon have it.
func (e *baselineEnv) runscArgs(sub string, args ...string) []string {
	return append([]string{"--root=" + e.runscRoot, "--network=none", "--overlay2=" + runscOverlay, sub}, args...)
}

// nextID returns a fresh container ID.
func (e *baselineEnv) nextID() string {
	e.seq++
	return fmt.Sprintf("bench-%d", e.seq)
}

// baselineCommand returns a command set up for the baselines: its own process group,
// so that the terminal's Ctrl-C reaches only sandboxctl, which then stops
// it with SIGTERM (cancelling ctx) and cleans up.
func baselineCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = commandWaitDelay
	return cmd
}

// timed runs name with args, timing it from start to exit, and checks that
// it printed printWant and exited 0.
func (e *baselineEnv) timed(ctx context.Context, row, name string, args ...string) sample {
	cmd := baselineCommand(ctx, name, args...)
	if name == hostPython {
		cmd.Env = baselineEnvVars
		cmd.Dir = baselineCwd
	}
	var stdout, stderr cappedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	s := sample{row: row, ms: msSince(start)}
	switch {
	case err != nil && stderr.Len() > 0:
		s.err = fmt.Errorf("%s: %v: %s", filepath.Base(name), err, lastLine(stderr.String()))
	case err != nil:
		s.err = fmt.Errorf("%s: %v", filepath.Base(name), err)
	case stdout.String() != printWant:
		s.err = fmt.Errorf("stdout %q, want %q", stdout.String(), printWant)
	}
	return s
}

// startExecSandbox creates and starts the sandbox that runsc-exec execs
// into, untimed.
func (e *baselineEnv) startExecSandbox(ctx context.Context) error {
	id := e.nextID()
	// runsc create hands its stdio to the container's init, which keeps
	// them: a pipe would never close, so errors go to a file.
	errFile, err := os.CreateTemp(e.dir, "runsc-create-*.log")
	if err != nil {
		return err
	}
	defer errFile.Close()
	for _, args := range [][]string{
		e.runscArgs("create", "--bundle="+filepath.Join(e.dir, bundleRunscSleep), id),
		e.runscArgs("start", id),
	} {
		cmd := baselineCommand(ctx, e.runsc, args...)
		cmd.Stderr = errFile
		if err := cmd.Run(); err != nil {
			msg, _ := os.ReadFile(errFile.Name())
			return fmt.Errorf("runsc %s: %v: %s", args[3], err, lastLine(string(msg)))
		}
	}
	e.execID = id
	return nil
}

// close deletes every container in the private roots, unmounts what runsc
// left mounted and removes the temporary directory.
func (e *baselineEnv) close(ctx context.Context) error {
	var errs []error
	sweep := func(bin string, list, del func(id string) []string) {
		out, err := baselineCommand(ctx, bin, list("")...).Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) && len(bytes.TrimSpace(ee.Stderr)) > 0 {
				err = fmt.Errorf("%v: %s", err, lastLine(string(ee.Stderr)))
			}
			errs = append(errs, fmt.Errorf("%s list: %w", filepath.Base(bin), err))
			return
		}
		for _, id := range strings.Fields(string(out)) {
			if out, err := baselineCommand(ctx, bin, del(id)...).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("%s delete %s: %v: %s", filepath.Base(bin), id, err, lastLine(string(out))))
			}
		}
	}
	if isDir(e.runscRoot) {
		sweep(e.runsc,
			func(string) []string { return e.runscArgs("list", "--quiet") },
			func(id string) []string { return e.runscArgs("delete", "--force", id) })
	}
	if e.runc != "" && isDir(e.runcRoot) {
		sweep(e.runc,
			func(string) []string { return []string{"--root=" + e.runcRoot, "list", "--quiet"} },
			func(id string) []string { return []string{"--root=" + e.runcRoot, "delete", "--force", id} })
	}
	// runsc pins a network namespace at <root>/null-netns to speed up later
	// boots; concurrent boots can stack several mounts there.
	for unix.Unmount(filepath.Join(e.runscRoot, "null-netns"), unix.MNT_DETACH) == nil {
	}
	// Anything else still mounted below the directory must not be reached
	// by RemoveAll.
	if err := unmountAll(e.dir); err != nil {
		errs = append(errs, err)
		return errors.Join(errs...) // removing now could cross into a mount
	}
	if err := os.RemoveAll(e.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
