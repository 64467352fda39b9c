package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// TestPoolsSettled guarantees when bench stops waiting for the pools: every
// pool at its target of idle sandboxes (or full up to max_total) and none
// booting; no pools at all is settled.
func TestPoolsSettled(t *testing.T) {
	pool := func(idle, inUse, booting, target, maxTotal int32) *sandboxv1.Pool {
		return &sandboxv1.Pool{Idle: idle, InUse: inUse, Booting: booting, TargetIdle: target, MaxTotal: maxTotal}
	}
	for _, tc := range []struct {
		name  string
		pools []*sandboxv1.Pool
		want  bool
	}{
		{"no pools", nil, true},
		{"at target", []*sandboxv1.Pool{pool(2, 0, 0, 2, 8)}, true},
		{"above target", []*sandboxv1.Pool{pool(3, 0, 0, 2, 8)}, true},
		{"below target", []*sandboxv1.Pool{pool(1, 0, 0, 2, 8)}, false},
		{"refilling", []*sandboxv1.Pool{pool(1, 0, 1, 2, 8)}, false},
		{"at target but booting", []*sandboxv1.Pool{pool(2, 0, 1, 2, 8)}, false},
		{"full to max_total", []*sandboxv1.Pool{pool(1, 7, 0, 2, 8)}, true},
		{"no target", []*sandboxv1.Pool{pool(0, 0, 0, 0, 0)}, true},
		{"one of two not refilled", []*sandboxv1.Pool{pool(2, 0, 0, 2, 8), pool(0, 0, 0, 1, 4)}, false},
	} {
		if got := poolsSettled(tc.pools); got != tc.want {
			t.Errorf("%s: poolsSettled = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestBurstDefault guarantees burst's default K: twice the target_idle of
// the template's pool, at least 2; the pool found by name, or as the only
// pool when the template is the (unnamed) default.
func TestBurstDefault(t *testing.T) {
	py := &sandboxv1.Pool{Template: "python", TargetIdle: 3}
	big := &sandboxv1.Pool{Template: "big", TargetIdle: 0}
	if p := findPool([]*sandboxv1.Pool{py, big}, "big"); p != big {
		t.Errorf("findPool by name = %v", p)
	}
	if p := findPool([]*sandboxv1.Pool{py}, ""); p != py {
		t.Errorf("findPool of the only pool = %v", p)
	}
	if p := findPool([]*sandboxv1.Pool{py, big}, ""); p != nil {
		t.Errorf("findPool of an unknown default among two = %v, want nil", p)
	}
	if p := findPool([]*sandboxv1.Pool{py}, "other"); p != nil {
		t.Errorf("findPool of a template without pool = %v, want nil", p)
	}
	if k := burstSize(py); k != 6 {
		t.Errorf("burstSize(target 3) = %d, want 6", k)
	}
	if k := burstSize(big); k != 2 {
		t.Errorf("burstSize(target 0) = %d, want 2", k)
	}
}

// TestParseScenarios guarantees --scenarios: names in run order whatever
// the order given, all, none, duplicates ignored, unknown names a usage
// error.
func TestParseScenarios(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"all", allScenarios},
		{"burst,warm", []string{"warm", "burst"}},
		{"cold, cold ,exec", []string{"cold", "exec"}},
		{"none", nil},
		{"files,none", []string{"files"}},
	} {
		got, err := parseScenarios(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("parseScenarios(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	var ue *UsageError
	if _, err := parseScenarios("warm,hot"); !errors.As(err, &ue) || !strings.Contains(err.Error(), `"hot"`) {
		t.Errorf("unknown scenario: err = %v, want a usage error naming it", err)
	}
}

// TestBaselineSpec guarantees the baseline containers run like sandboxes:
// the given command as uid/gid 1000 in /, no terminal, no capabilities, own
// network namespace, the root writable for runsc (its overlay protects the
// rootfs) and read-only for runc, and only mount points a Debian rootfs has.
func TestBaselineSpec(t *testing.T) {
	args := []string{"/usr/bin/python3", "-c", "print(1)"}
	for _, readonly := range []bool{false, true} {
		s := baselineSpec("/rootfs", readonly, args)
		if s.Root.Path != "/rootfs" || s.Root.Readonly != readonly {
			t.Errorf("root = %+v, want /rootfs readonly %v", s.Root, readonly)
		}
		p := s.Process
		if !slices.Equal(p.Args, args) || p.Terminal || p.User.UID != 1000 || p.User.GID != 1000 || p.Cwd != "/" {
			t.Errorf("process = args %q terminal %v user %+v cwd %q", p.Args, p.Terminal, p.User, p.Cwd)
		}
		if len(p.Capabilities.Bounding)+len(p.Capabilities.Effective)+len(p.Capabilities.Permitted) != 0 || !p.NoNewPrivileges {
			t.Errorf("process keeps privileges: %+v", p.Capabilities)
		}
		if !slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.NetworkNamespace }) {
			t.Errorf("no network namespace: %v", s.Linux.Namespaces)
		}
		for _, m := range s.Mounts {
			if top := "/" + strings.Split(m.Destination, "/")[1]; !slices.Contains([]string{"/proc", "/dev", "/sys", "/tmp"}, top) {
				t.Errorf("mount at %s, outside the directories every rootfs has", m.Destination)
			}
		}
	}
}

// TestWriteBundle guarantees that a bundle is a directory with the spec as
// config.json.
func TestWriteBundle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "b")
	if err := writeBundle(dir, baselineSpec("/r", false, []string{"x"})); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil || !bytes.Contains(b, []byte(`"path": "/r"`)) || !bytes.Contains(b, []byte(`"ociVersion"`)) {
		t.Errorf("config.json = %s (%v)", b, err)
	}
}

// TestMountsUnder guarantees which mounts are unmounted before the
// temporary directory is removed: those at or below it (octal escapes
// decoded), deepest first, and none elsewhere, not even a sibling that
// shares the prefix.
func TestMountsUnder(t *testing.T) {
	info := strings.Join([]string{
		`22 1 0:21 / /proc rw - proc proc rw`,
		`159 26 0:4 net:[4026532630] /tmp/b/runsc-root/null-netns rw - nsfs nsfs rw`,
		`160 26 0:4 net:[4026532630] /tmp/b/runsc-root/null-netns rw - nsfs nsfs rw`,
		`161 26 0:50 / /tmp/b rw - tmpfs tmpfs rw`,
		`162 26 0:51 / /tmp/bb rw - tmpfs tmpfs rw`,
		`163 26 0:52 / /tmp/b/with\040space rw - tmpfs tmpfs rw`,
		`short line`,
	}, "\n")
	got := mountsUnder(strings.NewReader(info), "/tmp/b/")
	want := []string{"/tmp/b/runsc-root/null-netns", "/tmp/b/runsc-root/null-netns", "/tmp/b/with space", "/tmp/b"}
	if !slices.Equal(got, want) {
		t.Errorf("mountsUnder = %q\nwant %q", got, want)
	}
}

// TestWritePlot guarantees that --plot writes a decodable PNG or an SVG by
// extension, skipping rows without samples, and fails when no row has one.
func TestWritePlot(t *testing.T) {
	dir := t.TempDir()
	rows := []*series{
		{Name: "warm", Kind: kindScenario, Samples: []float64{40, 45, 50}},
		{Name: "cold", Kind: kindScenario},
		{Name: "exec-python", Kind: kindScenario, Samples: []float64{1.2}},
		{Name: "host-python", Kind: kindBaseline, Samples: []float64{15, 16, 0}},
	}
	pngPath := filepath.Join(dir, "cdf.png")
	if err := writePlot(pngPath, rows); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if img, err := png.Decode(f); err != nil || img.Bounds().Dx() < 500 {
		t.Errorf("PNG: %v, %v", err, img)
	}
	svgPath := filepath.Join(dir, "cdf.svg")
	if err := writePlot(svgPath, rows); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(svgPath)
	if !bytes.Contains(b, []byte("<svg")) || !bytes.Contains(b, []byte("warm")) || bytes.Contains(b, []byte(">cold<")) {
		t.Errorf("SVG lacks the plot or the warm legend entry, or shows cold:\n%.300s", b)
	}
	if err := writePlot(filepath.Join(dir, "none.png"), rows[1:2]); err == nil {
		t.Error("plot without samples succeeded")
	}
}

// TestLogTicks guarantees the x axis ticks: labels at 1, 2 and 5 per decade
// within the range, unlabelled ticks at the other digits.
func TestLogTicks(t *testing.T) {
	var labels []string
	n := 0
	for _, tk := range (logTicks{}).Ticks(1.5, 60) {
		n++
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
		if tk.Value < 1.5 || tk.Value > 60 {
			t.Errorf("tick %v outside [1.5, 60]", tk.Value)
		}
	}
	if got := strings.Join(labels, " "); got != "2 5 10 20 50" {
		t.Errorf("labels = %q, want 2 5 10 20 50", got)
	}
	if n != 8+6 { // 2..9 and 10..60
		t.Errorf("%d ticks, want 14", n)
	}
}

// recProgress records progress calls for tests.
type recProgress struct {
	lineProgress
	steps []string
}

func (p *recProgress) step(item string, round, _ int, warm bool) {
	p.steps = append(p.steps, fmt.Sprintf("%s%d%s", item, round, map[bool]string{true: "w"}[warm]))
}

// TestHarnessInterleaves guarantees the harness's method: round i runs one
// run of every item that has rounds left, in item order; warm-up runs are
// not recorded; an item whose setup fails keeps its rows with the error and
// no runs; failures are counted, not fatal; every item is closed.
func TestHarnessInterleaves(t *testing.T) {
	var calls, closed []string
	item := func(name string, runs, warmup int, setupErr error, fail bool) *benchItem {
		n := 0
		return &benchItem{
			name: name, kind: kindScenario, rows: []string{name}, runs: runs, warmup: warmup,
			setup: func(context.Context) error { return setupErr },
			round: func(context.Context) []sample {
				n++
				calls = append(calls, fmt.Sprintf("%s%d", name, n))
				s := sample{row: name, ms: float64(n)}
				if fail && n%2 == 0 {
					s.err = errors.New("even runs fail")
				}
				return []sample{s}
			},
			close: func(context.Context) error { closed = append(closed, name); return nil },
		}
	}
	var notes []string
	prog := &recProgress{lineProgress: lineProgress{printNote: func(s string) { notes = append(notes, s) }}}
	h := &harness{runs: 3, warmup: 1, prog: prog, describe: func(err error) string { return err.Error() },
		notef: func(f string, a ...any) { notes = append(notes, fmt.Sprintf(f, a...)) }}
	h.run(context.Background(), []*benchItem{
		item("a", 0, 0, nil, false), // the harness's 3 runs + 1 warm-up
		item("b", 1, 0, nil, true),
		item("c", 0, 0, errors.New("no runc"), false),
		item("d", 0, 0, nil, true),
	})
	if got := strings.Join(calls, " "); got != "a1 b1 d1 a2 d2 a3 d3 a4 d4" {
		t.Errorf("run order = %q", got)
	}
	if got := strings.Join(closed, " "); got != "a b c d" {
		t.Errorf("closed = %q, want every item", got)
	}
	res := map[string]*series{}
	for _, s := range h.results() {
		res[s.Name] = s
	}
	if a := res["a"]; a.Runs != 3 || !slices.Equal(a.Samples, []float64{2, 3, 4}) {
		t.Errorf("a = %+v, want runs 2-4 recorded, the warm-up not", a)
	}
	if b := res["b"]; b.Runs != 1 || len(b.Samples) != 1 {
		t.Errorf("b = %+v, want its single run", b)
	}
	if c := res["c"]; c.Runs != 0 || len(c.Errors) != 1 || !strings.Contains(c.Errors[0], "no runc") {
		t.Errorf("c = %+v, want no runs and the setup error", c)
	}
	if d := res["d"]; d.Runs != 3 || len(d.Samples) != 1 || len(d.Errors) != 1 {
		t.Errorf("d = %+v, want 3 runs, 1 success (run 3), one distinct error", d)
	}
	if !slices.Contains(prog.steps, "a0w") || !slices.Contains(prog.steps, "a1") {
		t.Errorf("progress steps = %q, want a0 marked warm-up", prog.steps)
	}
}

// TestSandboxPSS guarantees how memory finds a sandbox's host processes
// and sums their PSS: processes whose command line has the ID as a word
// (not a longer ID that starts with it), their smaps_rollup Pss in bytes,
// the Pss lines of smaps where smaps_rollup is missing, processes that
// vanished skipped, other entries of /proc ignored, and no processes when
// none carries the ID.
func TestSandboxPSS(t *testing.T) {
	root := t.TempDir()
	proc := func(pid, cmdline string, files map[string]string) {
		dir := filepath.Join(root, pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		files["cmdline"] = cmdline
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	const id = "sb-abc"
	rollup := "55d0c0a00000-7ffc2b5fe000 ---p 00000000 00:00 0 [rollup]\nRss: 2048 kB\nPss: 1000 kB\nPss_Anon: 900 kB\nPss_File: 100 kB\n"
	proc("100", "runsc-sandbox\x00--root=/r\x00boot\x00--bundle=/b/sb-abc\x00sb-abc\x00", map[string]string{"smaps_rollup": rollup})
	proc("101", "runsc-gofer\x00gofer\x00--bundle\x00/b/sb-abc\x00", map[string]string{
		"smaps": "7f00-7f01 r-xp 0 0:0 0 /x\nPss: 10 kB\n7f02-7f03 rw-p 0 0:0 0\nPss: 20 kB\nPss_Dirty: 5 kB\n",
	})
	proc("102", "runsc-sandbox\x00--bundle=/b/sb-abcd\x00", map[string]string{"smaps_rollup": rollup})            // another sandbox
	proc("103", "/usr/bin/runsc\x00--root=/r\x00state\x00sb-abc\x00", map[string]string{})                        // exited: no maps
	proc("self", "runsc-sandbox\x00sb-abc\x00", map[string]string{"smaps_rollup": rollup})                        // not a PID
	proc(strconv.Itoa(os.Getpid()), "sandboxctl\x00get\x00sb-abc\x00", map[string]string{"smaps_rollup": rollup}) // bench itself

	pss, procs, err := sandboxPSS(root, id)
	if err != nil || pss != (1000+10+20)<<10 || !slices.Equal(procs, []string{"runsc-sandbox", "runsc-gofer"}) {
		t.Errorf("sandboxPSS = %d, %q, %v; want %d bytes of runsc-sandbox and runsc-gofer", pss, procs, err, (1000+10+20)<<10)
	}
	if pss, procs, err := sandboxPSS(root, "sb-none"); err != nil || pss != 0 || len(procs) != 0 {
		t.Errorf("sandboxPSS of an unknown sandbox = %d, %q, %v; want no processes", pss, procs, err)
	}
	proc("104", "runsc-sandbox\x00sb-bad\x00", map[string]string{"smaps_rollup": "Pss: lots\n"})
	if _, _, err := sandboxPSS(root, "sb-bad"); err == nil || !strings.Contains(err.Error(), `bad Pss line "Pss: lots"`) {
		t.Errorf("unparsable smaps_rollup: err = %v", err)
	}
	if os.Geteuid() != 0 { // root reads any file whatever its mode
		proc("105", "runsc-sandbox\x00sb-root\x00", map[string]string{"smaps_rollup": rollup})
		os.Chmod(filepath.Join(root, "105", "smaps_rollup"), 0)
		if _, _, err := sandboxPSS(root, "sb-root"); !errors.Is(err, fs.ErrPermission) {
			t.Errorf("unreadable smaps_rollup: err = %v, want permission denied", err)
		}
	}
}

// TestHasWord guarantees that a sandbox ID is found in a command line only
// as a whole: between separators ('/', '=', NUL, '.', the ends), not as
// part of a longer ID.
func TestHasWord(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"sb-1", true},
		{"--bundle=/b/sb-1\x00", true},
		{"x\x00sb-1.log", true},
		{"sb-12", false},
		{"xsb-1", false},
		{"sb-1_x", false},
		{"a-sb-1", false},
		{"sb-12\x00sb-1", true}, // a later whole occurrence counts
		{"", false},
	} {
		if got := hasWord([]byte(tc.s), "sb-1"); got != tc.want {
			t.Errorf("hasWord(%q, sb-1) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

// TestSnapshotPools guarantees which snapshots bench waits for before cold
// runs: the template's pool's, every pool's for the unnamed default
// template when it cannot tell which serves it, none for a template
// without a pool; and that only BUILDING is waited for.
func TestSnapshotPools(t *testing.T) {
	snap := func(s sandboxv1.SnapshotState) *sandboxv1.Snapshot { return &sandboxv1.Snapshot{State: s} }
	py := &sandboxv1.Pool{Template: "python", Snapshot: snap(sandboxv1.SnapshotState_SNAPSHOT_STATE_READY)}
	big := &sandboxv1.Pool{Template: "big", Snapshot: snap(sandboxv1.SnapshotState_SNAPSHOT_STATE_BUILDING)}
	pools := []*sandboxv1.Pool{py, big}
	if got := snapshotPools(pools, "python"); len(got) != 1 || got[0] != py {
		t.Errorf("snapshotPools(python) = %v", got)
	}
	if got := snapshotPools(pools, ""); len(got) != 2 {
		t.Errorf("snapshotPools(default among two) = %v, want both", got)
	}
	if got := snapshotPools(pools, "other"); len(got) != 0 {
		t.Errorf("snapshotPools(other) = %v, want none", got)
	}
	if snapshotBuilding([]*sandboxv1.Pool{py}) || !snapshotBuilding(pools) || snapshotBuilding([]*sandboxv1.Pool{{Template: "old"}}) {
		t.Error("snapshotBuilding: want true only with a BUILDING snapshot (none for a daemon without snapshots)")
	}
	for _, s := range []sandboxv1.SnapshotState{sandboxv1.SnapshotState_SNAPSHOT_STATE_FAILED, sandboxv1.SnapshotState_SNAPSHOT_STATE_DISABLED} {
		if snapshotBuilding([]*sandboxv1.Pool{{Snapshot: snap(s)}}) {
			t.Errorf("snapshotBuilding(%s) = true", s)
		}
	}
	if got := snapshotName(big.GetSnapshot()); got != "building" {
		t.Errorf("snapshotName = %q", got)
	}
}
