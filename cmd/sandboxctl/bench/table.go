package bench

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// writeTable writes the human-readable report: a header about the host,
// the scenarios, the baselines and the ratios.
func writeTable(w io.Writer, rep *benchReport) error {
	m, cfg := rep.Machine, rep.Config
	fmt.Fprintf(w, "sandboxctl bench, %s, host %s: %s, kernel %s, %d CPUs, %s memory\n",
		dateOf(m.Date), orDash(m.Hostname), orDash(m.OS), orDash(m.Kernel), m.NProc, gib(m.MemoryBytes))
	if m.RunscVersion != "" && cfg.Baselines {
		fmt.Fprintf(w, "runsc: %s\n", m.RunscVersion)
	}
	fmt.Fprintf(w, "%d timed runs after %d warm-up runs each; latency in ms; percentiles by nearest rank\n",
		cfg.Runs, cfg.Warmup)
	for _, kind := range []string{kindScenario, kindBaseline} {
		var rows []benchResult
		for _, r := range rep.Results {
			if r.Kind == kind {
				rows = append(rows, r)
			}
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintln(w)
		tw := newTable(w)
		fmt.Fprintf(tw, "%s\tRUNS\tOK\tP50\tP90\tP99\tMAX\tMEAN\tNOTES\n", strings.ToUpper(kind))
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Runs, r.Successes,
				fmtMSp(r.P50MS), fmtMSp(r.P90MS), fmtMSp(r.P99MS), fmtMSp(r.MaxMS), fmtMSp(r.MeanMS), rowNotes(r))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if err := writeMemoryTable(w, rep.Results); err != nil {
		return err
	}
	if len(rep.VS) > 0 {
		fmt.Fprintln(w)
		tw := newTable(w)
		fmt.Fprintf(tw, "VS\tP50 RATIO\tMEAN RATIO\n")
		for _, c := range rep.VS {
			fmt.Fprintf(tw, "%s / %s\t%s\t%s\n", c.Scenario, c.Baseline, fmtRatio(c.P50Ratio), fmtRatio(c.MeanRatio))
		}
		return tw.Flush()
	}
	return nil
}

// writeMemoryTable writes the MEMORY section: per memory row the medians
// of its cgroup's usage and of its processes' PSS in MiB, and in the notes
// how its sandboxes started and, for memory-restore, each median over
// memory-boot's.
func writeMemoryTable(w io.Writer, results []benchResult) error {
	var rows []benchResult
	var boot *benchResult
	for i, r := range results {
		if r.Kind != kindMemory {
			continue
		}
		rows = append(rows, r)
		if r.Name == rowMemoryBoot {
			boot = &results[i]
		}
	}
	if len(rows) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := newTable(w)
	fmt.Fprintf(tw, "MEMORY\tRUNS\tOK\tCGROUP MiB\tPSS MiB\tNOTES\n")
	for _, r := range rows {
		notes := rowNotes(r)
		if r.Name == rowMemoryRestore && boot != nil {
			if vs := memoryRatios(r, *boot); vs != "" {
				notes = strings.TrimPrefix(notes+"; "+vs, "-; ")
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", r.Name, r.Runs, r.Successes, fmtMiBp(r.CgroupMiBP50), fmtMiBp(r.PSSMiBP50), notes)
	}
	return tw.Flush()
}

// memoryRatios renders restore's medians over boot's ("0.42x
// memory-boot's cgroup, 0.40x its PSS"); empty when neither is known.
func memoryRatios(restore, boot benchResult) string {
	var parts []string
	if r := ratioOf(restore.CgroupMiBP50, boot.CgroupMiBP50); r != nil {
		parts = append(parts, fmtRatio(r)+" "+boot.Name+"'s cgroup")
	}
	if r := ratioOf(restore.PSSMiBP50, boot.PSSMiBP50); r != nil {
		if len(parts) == 0 {
			parts = append(parts, fmtRatio(r)+" "+boot.Name+"'s PSS")
		} else {
			parts = append(parts, fmtRatio(r)+" its PSS")
		}
	}
	return strings.Join(parts, ", ")
}

// rowNotes is the NOTES cell: how the sandboxes started, transfer or
// refill rate, failures.
func rowNotes(r benchResult) string {
	var notes []string
	if r.Creates != nil {
		if n := startSummary(r); n != "" {
			notes = append(notes, n)
		}
	}
	if r.MiBPerSecP50 != nil {
		notes = append(notes, fmt.Sprintf("%.1f MiB/s at p50", *r.MiBPerSecP50))
	}
	if r.SandboxesPerSecP50 != nil {
		notes = append(notes, fmt.Sprintf("%.2f sandboxes/s at p50 (%d a refill)", *r.SandboxesPerSecP50, r.Sandboxes))
	}
	switch {
	case r.Runs == 0 && len(r.Errors) > 0:
		notes = append(notes, "not run: "+r.Errors[0])
	case r.Failures > 0:
		notes = append(notes, fmt.Sprintf("%d failed", r.Failures))
	}
	if len(notes) == 0 {
		return "-"
	}
	return strings.Join(notes, "; ")
}

// startSummary says how the row's sandboxes started: warm's pool hits, then
// for a daemon that reports start kinds those restored and booted (and
// pool hits where there were any), else the cold starts.
func startSummary(r benchResult) string {
	n := *r.Creates
	hits := n - *r.ColdStarts
	var notes []string
	if r.Name == scenarioWarm || (r.Restores != nil && hits > 0) {
		notes = append(notes, fmt.Sprintf("pool hits %d/%d", hits, n))
	}
	switch {
	case r.Restores == nil && r.Name != scenarioWarm:
		notes = append(notes, fmt.Sprintf("cold starts %d/%d", *r.ColdStarts, n))
	case r.Restores != nil:
		if *r.Restores > 0 {
			notes = append(notes, fmt.Sprintf("restored %d/%d", *r.Restores, n))
		}
		if *r.Boots > 0 {
			notes = append(notes, fmt.Sprintf("booted %d/%d", *r.Boots, n))
		}
	}
	return strings.Join(notes, ", ")
}

// newTable returns a tabwriter for columns separated by tabs, laid out as
// sandboxctl lays out its tables.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
}

// fmtMS renders a latency with about three significant digits.
func fmtMS(ms float64) string {
	switch {
	case ms >= 100:
		return strconv.FormatFloat(ms, 'f', 0, 64)
	case ms >= 10:
		return strconv.FormatFloat(ms, 'f', 1, 64)
	}
	return strconv.FormatFloat(ms, 'f', 2, 64)
}

// fmtMSp is fmtMS for optional values: "-" when unknown.
func fmtMSp(ms *float64) string {
	if ms == nil {
		return "-"
	}
	return fmtMS(*ms)
}

// fmtMiBp renders an optional size in MiB with the digits of fmtMS: "-"
// when unknown.
func fmtMiBp(mib *float64) string { return fmtMSp(mib) }

// fmtRatio renders a ratio as "3.52x", "-" when unknown.
func fmtRatio(r *float64) string {
	switch {
	case r == nil:
		return "-"
	case *r >= 10:
		return strconv.FormatFloat(*r, 'f', 1, 64) + "x"
	}
	return strconv.FormatFloat(*r, 'f', 2, 64) + "x"
}

// gib renders a byte count in GiB with one decimal.
func gib(n uint64) string {
	return strconv.FormatFloat(float64(n)/(1<<30), 'f', 1, 64) + " GiB"
}

// dateOf renders an RFC 3339 time as "2006-01-02 15:04 UTC".
func dateOf(s string) string {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return orDash(s)
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// orDash returns s, or "-" when empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
