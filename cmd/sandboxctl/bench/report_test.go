package bench

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// reportFixture is a small report: two scenarios (one with pool data, one
// transfer row), one that never succeeded, two baselines, then a boot row
// with start kinds, a refill row and the two memory rows (one run of
// memory-restore without PSS).
func reportFixture() *benchReport {
	rows := []*series{
		{Name: scenarioWarm, Kind: kindScenario, Runs: 4, Samples: []float64{40, 10, 30, 20}, Creates: 4, ColdStarts: 1, Errors: []string{}},
		{Name: scenarioCold, Kind: kindScenario, Runs: 2, Errors: []string{"create: boom (internal)"}, Creates: 0},
		{Name: rowFilesUpload, Kind: kindScenario, Runs: 2, Samples: []float64{500, 1000}, Bytes: 64 << 20},
		{Name: baselineRunscRun, Kind: kindBaseline, Runs: 2, Samples: []float64{5, 15}},
		{Name: baselineHostPython, Kind: kindBaseline, Runs: 1, Samples: []float64{2}},
		{Name: scenarioBoot, Kind: kindScenario, Runs: 2, Samples: []float64{3000, 4000}, Creates: 2, ColdStarts: 2, Boots: 2},
		{Name: scenarioRefill, Kind: kindScenario, Runs: 2, Samples: []float64{500, 1000}, Sandboxes: 2},
		{Name: rowMemoryRestore, Kind: kindMemory, Runs: 2, Memory: []memSample{{100 << 20, 80 << 20}, {120 << 20, -1}}, Creates: 2, ColdStarts: 2, Restores: 2},
		{Name: rowMemoryBoot, Kind: kindMemory, Runs: 1, Memory: []memSample{{250 << 20, 200 << 20}}, Creates: 1, ColdStarts: 1, Boots: 1},
	}
	m := machineInfo{Hostname: "h", Kernel: "6.1", OS: "Debian", NProc: 2, MemoryBytes: 3 << 30, Date: "2026-01-02T03:04:05Z"}
	return newReport(rows, m, benchConfig{Runs: 4, Warmup: 1, Scenarios: []string{"warm", "cold", "files"}, PercentileMethod: percentileMethod})
}

// TestReportResults guarantees the per-row statistics of the report:
// counts, success rate, nearest-rank percentiles, null statistics for a row
// without success, pool counts, and transfer rates from the size.
func TestReportResults(t *testing.T) {
	rep := reportFixture()
	warm := rep.Results[0]
	if warm.Runs != 4 || warm.Successes != 4 || warm.Failures != 0 || *warm.SuccessRate != 1 {
		t.Errorf("warm counts = %+v", warm)
	}
	if *warm.P50MS != 20 || *warm.P90MS != 40 || *warm.MinMS != 10 || *warm.MaxMS != 40 || *warm.MeanMS != 25 {
		t.Errorf("warm stats = p50 %v p90 %v min %v max %v mean %v", *warm.P50MS, *warm.P90MS, *warm.MinMS, *warm.MaxMS, *warm.MeanMS)
	}
	if *warm.Creates != 4 || *warm.ColdStarts != 1 || *warm.PoolHitRatio != 0.75 {
		t.Errorf("warm creates/cold starts/hit ratio = %d/%d/%v", *warm.Creates, *warm.ColdStarts, *warm.PoolHitRatio)
	}
	cold := rep.Results[1]
	if cold.Successes != 0 || cold.Failures != 2 || *cold.SuccessRate != 0 || cold.P50MS != nil || cold.Creates != nil {
		t.Errorf("cold = %+v, want no statistics", cold)
	}
	up := rep.Results[2]
	if up.MiBPerSecP50 == nil || *up.MiBPerSecP50 != 128 || *up.MiBPerSecMean != 64*1000/750.0 {
		t.Errorf("files-upload rates = %v, %v; want 128 (64 MiB in 500 ms) and 85.3", up.MiBPerSecP50, up.MiBPerSecMean)
	}
	if got := strings.Join(rep.withoutSuccess(), ","); got != "cold" {
		t.Errorf("withoutSuccess = %q, want cold", got)
	}
	if warm.Restores != nil || warm.Boots != nil {
		t.Errorf("warm restores/boots = %v/%v, want none from a daemon without start kinds", warm.Restores, warm.Boots)
	}
	if boot := rep.Results[5]; deref(boot.Restores) != 0 || deref(boot.Boots) != 2 {
		t.Errorf("boot restores/boots = %v/%v, want 0/2", deref(boot.Restores), deref(boot.Boots))
	}
	refill := rep.Results[6]
	if refill.Sandboxes != 2 || deref(refill.SandboxesPerSecP50) != 4 || deref(refill.SandboxesPerSecMean) != 2/0.75 {
		t.Errorf("refill rates = %v, %v; want 4 (2 in 500 ms) and 2.67", deref(refill.SandboxesPerSecP50), deref(refill.SandboxesPerSecMean))
	}
	restore, boot := rep.Results[7], rep.Results[8]
	if restore.Successes != 2 || restore.P50MS != nil || len(restore.SamplesMS) != 0 ||
		deref(restore.CgroupMiBP50) != 100 || deref(restore.PSSMiBP50) != 80 || len(restore.PSSBytes) != 1 {
		t.Errorf("memory-restore = %+v, want 2 successes, no latency, cgroup p50 100 MiB, PSS 80 MiB of the one run that had it", restore)
	}
	if boot.Successes != 1 || deref(boot.CgroupMiBP50) != 250 || deref(boot.PSSMiBP50) != 200 {
		t.Errorf("memory-boot = %+v", boot)
	}
}

// TestReportComparisons guarantees the VS ratios: scenario over baseline for
// the documented pairs whose rows both ran, null when a side has no success.
func TestReportComparisons(t *testing.T) {
	rep := reportFixture()
	var got []string
	for _, c := range rep.VS {
		got = append(got, c.Scenario+"/"+c.Baseline+"="+fmtRatio(c.P50Ratio)+","+fmtRatio(c.MeanRatio))
	}
	want := []string{
		"warm/runsc-run=4.00x,2.50x", // p50 20/5 (nearest rank of {5, 15}), mean 25/10
		"warm/host-python=10.0x,12.5x",
		"cold/runsc-run=-,-", // cold never succeeded
		"cold/host-python=-,-",
		"boot/runsc-run=600.0x,350.0x",
		"boot/host-python=1500.0x,1750.0x",
	} // no runc-run, cold-ready and boot-ready rows: those pairs are left out
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("VS = %q\nwant %q", got, want)
	}
}

// TestReportResumeVsCold guarantees the one ratio of two scenarios: resume
// over cold, reported whenever both ran (also without baselines) and shown
// under VS; resume alone has none.
func TestReportResumeVsCold(t *testing.T) {
	rows := []*series{
		{Name: scenarioCold, Kind: kindScenario, Runs: 2, Samples: []float64{200, 300}, Creates: 2, ColdStarts: 2, Restores: 2},
		{Name: scenarioResume, Kind: kindScenario, Runs: 2, Samples: []float64{100, 200}},
	}
	rep := newReport(rows, machineInfo{}, benchConfig{Runs: 2})
	if len(rep.VS) != 1 {
		t.Fatalf("VS = %+v, want resume / cold alone", rep.VS)
	}
	if c := rep.VS[0]; c.Scenario != scenarioResume || c.Baseline != scenarioCold || deref(c.P50Ratio) != 0.5 || deref(c.MeanRatio) != 0.6 {
		t.Errorf("VS = %+v (p50 %v, mean %v), want resume / cold 0.50x, 0.60x", c, deref(c.P50Ratio), deref(c.MeanRatio))
	}
	var b bytes.Buffer
	if err := writeTable(&b, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "resume / cold  0.50x      0.60x") {
		t.Errorf("table lacks resume / cold:\n%s", b.String())
	}
	if rep := newReport(rows[1:], machineInfo{}, benchConfig{Runs: 2}); len(rep.VS) != 0 {
		t.Errorf("VS without cold = %+v, want none", rep.VS)
	}
}

// TestWriteTable guarantees the text report: the host line, a SCENARIO and a
// BASELINE section with a row each and the documented columns, notes for
// pool hits, rates and failures, and the VS section.
func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := writeTable(&b, reportFixture()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, s := range []string{
		"host h: Debian, kernel 6.1, 2 CPUs, 3.0 GiB memory",
		"2026-01-02 03:04 UTC",
		"4 timed runs after 1 warm-up runs each",
		"nearest rank",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && rows[f[0]] == nil {
			rows[f[0]] = f // the first line of each name: VS lines come last
		}
	}
	for _, h := range []string{"SCENARIO", "BASELINE"} {
		if got := strings.Join(rows[h], " "); got != h+" RUNS OK P50 P90 P99 MAX MEAN NOTES" {
			t.Errorf("%s header = %q", h, got)
		}
	}
	if got := strings.Join(rows["warm"], " "); got != "warm 4 4 20.0 40.0 40.0 40.0 25.0 pool hits 3/4" {
		t.Errorf("warm row = %q", got)
	}
	if got := strings.Join(rows["cold"], " "); got != "cold 2 0 - - - - - 2 failed" {
		t.Errorf("cold row = %q", got)
	}
	if got := strings.Join(rows["files-upload"], " "); !strings.Contains(got, "128.0 MiB/s at p50") {
		t.Errorf("files-upload row = %q, want its rate", got)
	}
	if got := strings.Join(rows["host-python"], " "); got != "host-python 1 1 2.00 2.00 2.00 2.00 2.00 -" {
		t.Errorf("host-python row = %q", got)
	}
	if got := strings.Join(rows["VS"], " "); got != "VS P50 RATIO MEAN RATIO" {
		t.Errorf("VS header = %q", got)
	}
	if !strings.Contains(out, "warm / host-python  10.0x") {
		t.Errorf("VS lacks warm / host-python 10.0x:\n%s", out)
	}
	if got := strings.Join(rows["boot"], " "); got != "boot 2 2 3000 4000 4000 4000 3500 booted 2/2" {
		t.Errorf("boot row = %q", got)
	}
	if got := strings.Join(rows["refill"], " "); got != "refill 2 2 500 1000 1000 1000 750 4.00 sandboxes/s at p50 (2 a refill)" {
		t.Errorf("refill row = %q", got)
	}
	if got := strings.Join(rows["MEMORY"], " "); got != "MEMORY RUNS OK CGROUP MiB PSS MiB NOTES" {
		t.Errorf("MEMORY header = %q", got)
	}
	if got := strings.Join(rows["memory-restore"], " "); got != "memory-restore 2 2 100 80.0 restored 2/2; 0.40x memory-boot's cgroup, 0.40x its PSS" {
		t.Errorf("memory-restore row = %q", got)
	}
	if got := strings.Join(rows["memory-boot"], " "); got != "memory-boot 1 1 250 200 booted 1/1" {
		t.Errorf("memory-boot row = %q", got)
	}
	if strings.Index(out, "MEMORY") < strings.Index(out, "BASELINE") || strings.Index(out, "MEMORY") > strings.Index(out, "VS") {
		t.Errorf("MEMORY is not between BASELINE and VS:\n%s", out)
	}
}

// TestWriteJSON guarantees the JSON report's schema as documented: the
// top-level keys, snake_case row fields with every sample, null statistics
// for a row without success, and the vs section.
func TestWriteJSON(t *testing.T) {
	var b bytes.Buffer
	if err := reportFixture().writeJSON(&b); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, b.String())
	}
	for _, k := range []string{"schema", "machine", "config", "pools", "finished_at", "results", "vs"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("no top-level %q", k)
		}
	}
	if doc["schema"] != benchSchema {
		t.Errorf("schema = %v", doc["schema"])
	}
	machine := doc["machine"].(map[string]any)
	for _, k := range []string{"hostname", "kernel", "nproc", "memory_bytes", "runsc_version", "date"} {
		if _, ok := machine[k]; !ok {
			t.Errorf("machine has no %q", k)
		}
	}
	results := doc["results"].([]any)
	warm := results[0].(map[string]any)
	for _, k := range []string{"name", "kind", "runs", "successes", "failures", "success_rate", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms", "samples_ms", "errors"} {
		if _, ok := warm[k]; !ok {
			t.Errorf("result has no %q: %v", k, warm)
		}
	}
	if s := warm["samples_ms"].([]any); len(s) != 4 || s[0] != 40.0 {
		t.Errorf("samples_ms = %v, want the 4 samples in run order", s)
	}
	cold := results[1].(map[string]any)
	if cold["p50_ms"] != nil || cold["samples_ms"] == nil || len(cold["samples_ms"].([]any)) != 0 {
		t.Errorf("cold p50_ms = %v, samples_ms = %v; want null and []", cold["p50_ms"], cold["samples_ms"])
	}
	if _, ok := warm["restores"]; ok {
		t.Errorf("warm has restores from a daemon without start kinds: %v", warm)
	}
	if boot := results[5].(map[string]any); boot["restores"] != 0.0 || boot["boots"] != 2.0 {
		t.Errorf("boot restores = %v, boots = %v; want 0 and 2", boot["restores"], boot["boots"])
	}
	if refill := results[6].(map[string]any); refill["sandboxes"] != 2.0 || refill["sandboxes_per_s_p50"] != 4.0 {
		t.Errorf("refill = %v", refill)
	}
	restore := results[7].(map[string]any)
	if restore["kind"] != "memory" || restore["p50_ms"] != nil || restore["cgroup_mib_p50"] != 100.0 || restore["pss_mib_p50"] != 80.0 ||
		len(restore["cgroup_bytes"].([]any)) != 2 || len(restore["pss_bytes"].([]any)) != 1 {
		t.Errorf("memory-restore = %v", restore)
	}
	vs := doc["vs"].([]any)
	first := vs[0].(map[string]any)
	if first["scenario"] != "warm" || first["baseline"] != "runsc-run" || first["p50_ratio"] != 4.0 {
		t.Errorf("vs[0] = %v", first)
	}
}

// TestWriteCSV guarantees one CSV row per scenario and baseline under the
// documented header, with empty cells for unknown values.
func TestWriteCSV(t *testing.T) {
	var b bytes.Buffer
	if err := reportFixture().writeCSV(&b); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 10 {
		t.Fatalf("%d records, want a header and 9 rows", len(recs))
	}
	if got := strings.Join(recs[0], ","); got != strings.Join(csvHeader, ",") || !strings.HasPrefix(got, "name,kind,runs,successes,failures,success_rate,min_ms,p50_ms,p90_ms,p99_ms,max_ms,mean_ms") {
		t.Errorf("header = %q", got)
	}
	col := func(rec []string, name string) string {
		for i, h := range csvHeader {
			if h == name {
				return rec[i]
			}
		}
		t.Fatalf("no column %s", name)
		return ""
	}
	if col(recs[1], "name") != "warm" || col(recs[1], "p50_ms") != "20.000" || col(recs[1], "cold_starts") != "1" || col(recs[1], "pool_hit_ratio") != "0.750" {
		t.Errorf("warm record = %q", recs[1])
	}
	if col(recs[2], "p50_ms") != "" || col(recs[2], "failures") != "2" {
		t.Errorf("cold record = %q, want empty statistics", recs[2])
	}
	if col(recs[3], "bytes") != "67108864" || col(recs[3], "mib_per_s_p50") != "128.000" {
		t.Errorf("files-upload record = %q", recs[3])
	}
	if col(recs[1], "restores") != "" || col(recs[6], "restores") != "0" || col(recs[6], "boots") != "2" {
		t.Errorf("warm record = %q, boot record = %q; want start kinds only for boot", recs[1], recs[6])
	}
	if col(recs[7], "sandboxes") != "2" || col(recs[7], "sandboxes_per_s_p50") != "4.000" {
		t.Errorf("refill record = %q", recs[7])
	}
	if col(recs[8], "kind") != "memory" || col(recs[8], "p50_ms") != "" || col(recs[8], "cgroup_mib_p50") != "100.000" || col(recs[8], "pss_mib_p50") != "80.000" {
		t.Errorf("memory-restore record = %q", recs[8])
	}
}

// TestFormatting guarantees the latency and ratio formats of the table:
// about three significant digits, "-" for unknown.
func TestFormatting(t *testing.T) {
	for _, tc := range []struct {
		ms   float64
		want string
	}{{0.123, "0.12"}, {1.5, "1.50"}, {12.34, "12.3"}, {123.4, "123"}, {2345.6, "2346"}} {
		if got := fmtMS(tc.ms); got != tc.want {
			t.Errorf("fmtMS(%v) = %q, want %q", tc.ms, got, tc.want)
		}
	}
	if got := fmtMSp(nil); got != "-" {
		t.Errorf("fmtMSp(nil) = %q", got)
	}
	for _, tc := range []struct {
		r    *float64
		want string
	}{{nil, "-"}, {ptr(3.519), "3.52x"}, {ptr(0.5), "0.50x"}, {ptr(42.0), "42.0x"}} {
		if got := fmtRatio(tc.r); got != tc.want {
			t.Errorf("fmtRatio = %q, want %q", got, tc.want)
		}
	}
}

// TestRoundLine guarantees the plain progress line of a round: one entry
// per row in order, several samples as "Nx p50", failures marked.
func TestRoundLine(t *testing.T) {
	boom := errors.New("boom")
	got := roundLine(2, 5, false, []sample{
		{row: "warm", ms: 41.26},
		{row: "cold", err: boom},
		{row: "burst", ms: 800}, {row: "burst", ms: 900}, {row: "burst", err: boom},
	})
	want := "round 3/5: warm 41.3 ms, cold failed, burst 3x p50 800 ms (1 failed)"
	if got != want {
		t.Errorf("roundLine = %q\nwant %q", got, want)
	}
	got = roundLine(0, 1, false, []sample{
		{row: rowMemoryRestore, mem: &memSample{cgroup: 94 << 20, pss: -1}},
		{row: rowMemoryBoot, mem: &memSample{cgroup: 250 << 20, pss: 200 << 20}},
	})
	if want := "round 1/1: memory-restore 94.0 MiB, memory-boot 250 MiB"; got != want {
		t.Errorf("roundLine of memory = %q\nwant %q", got, want)
	}
	if got := roundLine(0, 5, true, nil); got != "round 1/5 (warm-up): nothing ran" {
		t.Errorf("empty warm-up round = %q", got)
	}
}
