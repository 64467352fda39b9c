package bench

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requireBaselines skips the test unless the baselines can run for real
// (root, SANDBOXD_RUNSC, SANDBOXD_ROOTFS, as `make test` provides); under
// SANDBOXD_E2E=1 a missing prerequisite fails the test instead. It returns
// the runsc binary and the rootfs, and points TMPDIR at a fresh directory
// so that the test can see what bench leaves behind.
func requireBaselines(t *testing.T) (runsc, rootfs, tmp string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	runsc, rootfs = os.Getenv("SANDBOXD_RUNSC"), os.Getenv("SANDBOXD_ROOTFS")
	if runsc == "" {
		missing = append(missing, "SANDBOXD_RUNSC")
	}
	if rootfs == "" {
		missing = append(missing, "SANDBOXD_ROOTFS")
	}
	if len(missing) > 0 {
		msg := "the baselines need " + strings.Join(missing, ", ") + ": run `make test` as root"
		if os.Getenv("SANDBOXD_E2E") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// Short, unlike t.TempDir: runsc keeps sockets below it.
	tmp, err := os.MkdirTemp("", "bench")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	t.Setenv("TMPDIR", tmp)
	return runsc, rootfs, tmp
}

// wantNothingLeft fails the test if bench left files, mounts or processes
// in tmp.
func wantNothingLeft(t *testing.T, tmp string) {
	t.Helper()
	if ents, _ := os.ReadDir(tmp); len(ents) > 0 {
		t.Errorf("left in TMPDIR: %v", ents)
	}
	if mi, err := os.Open("/proc/self/mountinfo"); err == nil {
		if mps := mountsUnder(mi, tmp); len(mps) > 0 {
			t.Errorf("left mounted: %q", mps)
		}
		mi.Close()
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(tmp)) {
			t.Errorf("process left running: %s", bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
}

// TestBaselinesReal guarantees, with real runsc and runc, that every
// baseline runs and prints 1 each time, that the JSON names the runsc
// version, and that bench removes its containers, mounts (runsc's
// null-netns) and temporary directory.
func TestBaselinesReal(t *testing.T) {
	jsonPath := filepath.Join(t.TempDir(), "r.json") // before TMPDIR moves
	runsc, rootfs, tmp := requireBaselines(t)
	r := runOn(t, "", "--scenarios", "none", "--baselines", "-n", "2", "--warmup", "1",
		"--runsc", runsc, "--rootfs", rootfs, "--json", jsonPath)
	wantOK(t, r)
	rep := readBenchJSON(t, jsonPath)
	var names []string
	for _, res := range rep.Results {
		names = append(names, res.Name)
		if res.Kind != kindBaseline || res.Successes != 2 {
			t.Errorf("%s: kind %s, %d of %d runs succeeded: %q", res.Name, res.Kind, res.Successes, res.Runs, res.Errors)
		}
	}
	if got := strings.Join(names, ","); got != "runsc-run,runsc-run-imports,runsc-exec,runc-run,host-python" {
		t.Errorf("rows = %s", got)
	}
	b, _ := os.ReadFile(jsonPath)
	if !bytes.Contains(b, []byte(`"runsc_version": "runsc version`)) {
		t.Errorf("no runsc version in the JSON report")
	}
	t.Logf("table:\n%s", r.stdout)
	wantNothingLeft(t, tmp)
}

// TestBaselinesInterrupted guarantees that Ctrl-C in the middle of the
// baselines (a runsc run or the runsc-exec sandbox alive) leaves no
// container, mount, process or directory behind, and returns the
// context's error.
func TestBaselinesInterrupted(t *testing.T) {
	runsc, rootfs, tmp := requireBaselines(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(3*time.Second, cancel)
	r := runBench(ctx, t, "", "--scenarios", "none", "--baselines", "-n", "50",
		"--runsc", runsc, "--rootfs", rootfs)
	if !errors.Is(r.err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled\nstderr: %s", r.err, r.stderr)
	}
	wantNothingLeft(t, tmp)
}
