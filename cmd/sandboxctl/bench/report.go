package bench

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"math"
	"os"
	"strconv"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// benchSchema names the layout of the JSON report; it changes when a field
// changes meaning or goes away (new fields may appear without a change).
const benchSchema = "sandboxctl-bench/1"

// percentileMethod documents in the JSON how percentiles were computed.
const percentileMethod = "nearest-rank"

// benchComparisons are the ratios the report gives: each scenario row
// against the baselines that do the same work without sandboxd, and
// resume against cold: a paused sandbox brought back to run code against
// a new one restored from the template's snapshot (cold's setup waits for
// the snapshot, so its runs are restores when it is ready; startNotes says
// when they were not). A pair is reported when both rows ran.
var benchComparisons = []struct{ scenario, baseline string }{
	{scenarioWarm, baselineRunscRun},
	{scenarioWarm, baselineRuncRun},
	{scenarioWarm, baselineHostPython},
	{scenarioCold, baselineRunscRun},
	{scenarioCold, baselineRuncRun},
	{scenarioCold, baselineHostPython},
	{scenarioColdReady, baselineRunscRunImports},
	{scenarioBoot, baselineRunscRun},
	{scenarioBoot, baselineRuncRun},
	{scenarioBoot, baselineHostPython},
	{scenarioBootReady, baselineRunscRunImports},
	{rowExecPython, baselineRunscExec},
	{scenarioResume, scenarioCold},
}

// benchReport is the outcome of a benchmark: the JSON report (--json), and
// what the table, the CSV file and the plot are made from.
type benchReport struct {
	Schema     string        `json:"schema"`
	Machine    machineInfo   `json:"machine"`
	Config     benchConfig   `json:"config"`
	Pools      []poolInfo    `json:"pools"` // at the start; null without ListPools
	FinishedAt string        `json:"finished_at"`
	Results    []benchResult `json:"results"`
	VS         []comparison  `json:"vs"`

	rows []*series // the raw rows, for the plot
}

// benchConfig is what was asked for.
type benchConfig struct {
	Socket           string   `json:"socket,omitempty"` // empty when only baselines ran
	Scenarios        []string `json:"scenarios"`
	Baselines        bool     `json:"baselines"`
	Runs             int      `json:"runs"`
	Warmup           int      `json:"warmup"`
	Template         string   `json:"template"`                    // as given; empty is the default
	BurstConcurrency int      `json:"burst_concurrency,omitempty"` // K, when burst ran
	FileBytes        int64    `json:"file_bytes,omitempty"`        // when files ran
	Runsc            string   `json:"runsc,omitempty"`             // when baselines ran
	Rootfs           string   `json:"rootfs,omitempty"`
	PercentileMethod string   `json:"percentile_method"`
}

// poolInfo is a warm pool as ListPools described it at the start.
type poolInfo struct {
	Template   string `json:"template"`
	TargetIdle int32  `json:"target_idle"`
	MaxTotal   int32  `json:"max_total"`
	Idle       int32  `json:"idle"`
	InUse      int32  `json:"in_use"`
	Booting    int32  `json:"booting"`
	// Snapshot is the state of the template's snapshot ("ready",
	// "building", "failed", "disabled"), SnapshotBytes its image's size;
	// empty and 0 from a daemon that predates snapshots.
	Snapshot      string `json:"snapshot,omitempty"`
	SnapshotBytes int64  `json:"snapshot_bytes,omitempty"`
}

// benchResult is one row: a scenario, a baseline, or a memory row (whose
// latency statistics are null). Statistics are null when no run
// succeeded.
type benchResult struct {
	Name        string    `json:"name"`
	Kind        string    `json:"kind"` // "scenario", "baseline" or "memory"
	Runs        int       `json:"runs"`
	Successes   int       `json:"successes"`
	Failures    int       `json:"failures"`
	SuccessRate *float64  `json:"success_rate"` // successes/runs; null for no runs
	MinMS       *float64  `json:"min_ms"`
	P50MS       *float64  `json:"p50_ms"`
	P90MS       *float64  `json:"p90_ms"`
	P99MS       *float64  `json:"p99_ms"`
	MaxMS       *float64  `json:"max_ms"`
	MeanMS      *float64  `json:"mean_ms"`
	SamplesMS   []float64 `json:"samples_ms"` // successful runs, in run order; empty for memory rows
	// Sandbox creation (warm, cold, cold-ready, boot, boot-ready, burst,
	// memory): runs whose CreateSandbox answered, and those whose response
	// said cold_start. PoolHitRatio is the share of them served warm
	// (cold_start false). Restores and Boots count those whose response
	// said start RESTORE and BOOT, when the daemon reports start kinds.
	Creates      *int     `json:"creates,omitempty"`
	ColdStarts   *int     `json:"cold_starts,omitempty"`
	PoolHitRatio *float64 `json:"pool_hit_ratio,omitempty"`
	Restores     *int     `json:"restores,omitempty"`
	Boots        *int     `json:"boots,omitempty"`
	// Transfers (files-upload, files-download): bytes per run, and the rate
	// at the median and at the mean latency.
	Bytes         int64    `json:"bytes,omitempty"`
	MiBPerSecP50  *float64 `json:"mib_per_s_p50,omitempty"`
	MiBPerSecMean *float64 `json:"mib_per_s_mean,omitempty"`
	// Refill: the sandboxes the pool refilled per run (its target_idle),
	// and the rate at the median and at the mean time of a refill.
	Sandboxes           int      `json:"sandboxes,omitempty"`
	SandboxesPerSecP50  *float64 `json:"sandboxes_per_s_p50,omitempty"`
	SandboxesPerSecMean *float64 `json:"sandboxes_per_s_mean,omitempty"`
	// Memory rows (memory-restore, memory-boot): per successful run, the
	// bytes the idle sandbox's host cgroup charged and the PSS of its host
	// processes (runs whose PSS could not be read left out), and the
	// median of each in MiB.
	CgroupBytes  []int64  `json:"cgroup_bytes,omitempty"`
	CgroupMiBP50 *float64 `json:"cgroup_mib_p50,omitempty"`
	PSSBytes     []int64  `json:"pss_bytes,omitempty"`
	PSSMiBP50    *float64 `json:"pss_mib_p50,omitempty"`
	Errors       []string `json:"errors"` // distinct failures, the first few
}

// comparison is a scenario's latency over a baseline's: 3.5 means the
// scenario took 3.5 times as long. Null when either had no success.
// Baseline names the row the scenario is measured against: a baseline, or
// for resume the cold scenario.
type comparison struct {
	Scenario  string   `json:"scenario"`
	Baseline  string   `json:"baseline"`
	P50Ratio  *float64 `json:"p50_ratio"`
	MeanRatio *float64 `json:"mean_ratio"`
}

// newReport summarizes rows into a report.
func newReport(rows []*series, m machineInfo, cfg benchConfig) *benchReport {
	rep := &benchReport{Schema: benchSchema, Machine: m, Config: cfg, rows: rows, Results: []benchResult{}, VS: []comparison{}}
	byName := map[string]*benchResult{}
	for _, s := range rows {
		rep.Results = append(rep.Results, resultOf(s))
	}
	for i := range rep.Results {
		byName[rep.Results[i].Name] = &rep.Results[i]
	}
	for _, c := range benchComparisons {
		sc, bl := byName[c.scenario], byName[c.baseline]
		if sc == nil || bl == nil || sc.Kind != kindScenario || (bl.Kind != kindBaseline && bl.Kind != kindScenario) {
			continue
		}
		rep.VS = append(rep.VS, comparison{
			Scenario: c.scenario, Baseline: c.baseline,
			P50Ratio:  ratioOf(sc.P50MS, bl.P50MS),
			MeanRatio: ratioOf(sc.MeanMS, bl.MeanMS),
		})
	}
	return rep
}

// resultOf computes the statistics of a row.
func resultOf(s *series) benchResult {
	r := benchResult{
		Name: s.Name, Kind: s.Kind, Runs: s.Runs,
		Successes: s.successes(), Failures: s.Runs - s.successes(),
		SamplesMS: append([]float64{}, s.Samples...),
		Errors:    append([]string{}, s.Errors...),
		Bytes:     s.Bytes,
	}
	if s.Runs > 0 {
		r.SuccessRate = ptr(float64(r.Successes) / float64(s.Runs))
	}
	if s.Creates > 0 {
		r.Creates, r.ColdStarts = ptr(s.Creates), ptr(s.ColdStarts)
		r.PoolHitRatio = ptr(float64(s.Creates-s.ColdStarts) / float64(s.Creates))
		if s.startsKnown() {
			r.Restores, r.Boots = ptr(s.Restores), ptr(s.Boots)
		}
	}
	for _, m := range s.Memory {
		r.CgroupBytes = append(r.CgroupBytes, m.cgroup)
		if m.pss >= 0 {
			r.PSSBytes = append(r.PSSBytes, m.pss)
		}
	}
	r.CgroupMiBP50, r.PSSMiBP50 = medianMiB(r.CgroupBytes), medianMiB(r.PSSBytes)
	if sum := summarize(s.Samples); sum.N > 0 {
		r.MinMS, r.P50MS, r.P90MS, r.P99MS, r.MaxMS, r.MeanMS =
			ptr(sum.Min), ptr(sum.P50), ptr(sum.P90), ptr(sum.P99), ptr(sum.Max), ptr(sum.Mean)
		if s.Bytes > 0 {
			r.MiBPerSecP50 = ptr(mibPerSec(s.Bytes, sum.P50))
			r.MiBPerSecMean = ptr(mibPerSec(s.Bytes, sum.Mean))
		}
		if s.Sandboxes > 0 {
			r.Sandboxes = s.Sandboxes
			r.SandboxesPerSecP50 = ptr(perSec(s.Sandboxes, sum.P50))
			r.SandboxesPerSecMean = ptr(perSec(s.Sandboxes, sum.Mean))
		}
	}
	return r
}

// mibPerSec is the rate of moving n bytes in ms milliseconds, in MiB/s.
func mibPerSec(n int64, ms float64) float64 {
	return float64(n) / (1 << 20) / (ms / 1000)
}

// perSec is the rate of n things in ms milliseconds, per second.
func perSec(n int, ms float64) float64 { return float64(n) / (ms / 1000) }

// medianMiB is the nearest-rank median of byte counts in MiB; nil for
// none.
func medianMiB(bytes []int64) *float64 {
	if len(bytes) == 0 {
		return nil
	}
	mib := make([]float64, len(bytes))
	for i, b := range bytes {
		mib[i] = float64(b) / (1 << 20)
	}
	return ptr(summarize(mib).P50)
}

// ratioOf is ratio for optional values: nil when either is unknown.
func ratioOf(a, b *float64) *float64 {
	if a == nil || b == nil {
		return nil
	}
	if r := ratio(*a, *b); !math.IsNaN(r) {
		return &r
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// reportConfig records the options of the run and, when scenarios ran (d
// is set), the daemon's address.
func reportConfig(o *Options, d *daemonBench, address string) benchConfig {
	cfg := benchConfig{
		Scenarios: append([]string{}, o.scenarios...),
		Baselines: o.baselines,
		Runs:      o.runs, Warmup: o.warmup,
		Template:         o.template,
		PercentileMethod: percentileMethod,
	}
	if d != nil {
		cfg.Socket = address
		d.mu.Lock()
		cfg.BurstConcurrency = d.burstK
		d.mu.Unlock()
	}
	if o.has(scenarioFiles) {
		cfg.FileBytes = int64(o.fileMiB) << 20
	}
	if o.baselines {
		cfg.Runsc, cfg.Rootfs = o.runsc, o.rootfs
	}
	return cfg
}

// poolInfos converts ListPools' answer for the report.
func poolInfos(pools []*sandboxv1.Pool) []poolInfo {
	out := []poolInfo{}
	for _, p := range pools {
		out = append(out, poolInfo{
			Template: p.GetTemplate(), TargetIdle: p.GetTargetIdle(), MaxTotal: p.GetMaxTotal(),
			Idle: p.GetIdle(), InUse: p.GetInUse(), Booting: p.GetBooting(),
			Snapshot: snapshotName(p.GetSnapshot()), SnapshotBytes: p.GetSnapshot().GetImageBytes(),
		})
	}
	return out
}

// withoutSuccess names the rows that had no successful run.
func (rep *benchReport) withoutSuccess() []string {
	var names []string
	for _, r := range rep.Results {
		if r.Successes == 0 {
			names = append(names, r.Name)
		}
	}
	return names
}

// writeFiles writes the --json, --csv and --plot files that were asked for.
func (rep *benchReport) writeFiles(o *Options) error {
	if o.jsonPath != "" {
		var b bytes.Buffer
		if err := rep.writeJSON(&b); err != nil {
			return err
		}
		if err := os.WriteFile(o.jsonPath, b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	if o.csvPath != "" {
		var b bytes.Buffer
		if err := rep.writeCSV(&b); err != nil {
			return err
		}
		if err := os.WriteFile(o.csvPath, b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	if o.plotPath != "" {
		return writePlot(o.plotPath, rep.rows)
	}
	return nil
}

// writeJSON writes the report as indented JSON.
func (rep *benchReport) writeJSON(w io.Writer) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// csvHeader is the first line of --csv; the columns mean what the JSON
// fields of the same names mean.
var csvHeader = []string{
	"name", "kind", "runs", "successes", "failures", "success_rate",
	"min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms",
	"creates", "cold_starts", "pool_hit_ratio", "bytes", "mib_per_s_p50", "mib_per_s_mean",
	"restores", "boots", "sandboxes", "sandboxes_per_s_p50", "sandboxes_per_s_mean",
	"cgroup_mib_p50", "pss_mib_p50",
}

// writeCSV writes one row per scenario and baseline; unknown values are
// empty cells.
func (rep *benchReport) writeCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write(csvHeader)
	num := func(v *float64) string {
		if v == nil {
			return ""
		}
		return strconv.FormatFloat(*v, 'f', 3, 64)
	}
	count := func(v *int) string {
		if v == nil {
			return ""
		}
		return strconv.Itoa(*v)
	}
	for _, r := range rep.Results {
		bytesCell, sandboxesCell := "", ""
		if r.Bytes > 0 {
			bytesCell = strconv.FormatInt(r.Bytes, 10)
		}
		if r.Sandboxes > 0 {
			sandboxesCell = strconv.Itoa(r.Sandboxes)
		}
		cw.Write([]string{
			r.Name, r.Kind, strconv.Itoa(r.Runs), strconv.Itoa(r.Successes), strconv.Itoa(r.Failures), num(r.SuccessRate),
			num(r.MinMS), num(r.P50MS), num(r.P90MS), num(r.P99MS), num(r.MaxMS), num(r.MeanMS),
			count(r.Creates), count(r.ColdStarts), num(r.PoolHitRatio), bytesCell, num(r.MiBPerSecP50), num(r.MiBPerSecMean),
			count(r.Restores), count(r.Boots), sandboxesCell, num(r.SandboxesPerSecP50), num(r.SandboxesPerSecMean),
			num(r.CgroupMiBP50), num(r.PSSMiBP50),
		})
	}
	cw.Flush()
	return cw.Error()
}
