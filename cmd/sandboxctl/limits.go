package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sandboxd/sandboxd/policy"
	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// addLimitFlags defines create's flags that lower the template's limits and
// returns the Limits they fill in; see limitsRequest.
func addLimitFlags(fs *flag.FlagSet) *sandboxv1.Limits {
	l := &sandboxv1.Limits{}
	fs.Var(cpuFlag{&l.Cpu}, "cpu", "CPU quota in `CORES`, such as 0.5 or 500m (policy limits.cpu)")
	fs.Var(sizeFlag{&l.MemoryBytes}, "memory", "memory of the whole sandbox, a `SIZE` such as 512Mi (policy limits.memory)")
	fs.Var(sizeFlag{&l.DiskBytes}, "disk", "`SIZE` of the writable layer and of /tmp (policy limits.disk)")
	fs.Var(countFlag{&l.Processes}, "processes", "at most `N` processes of the sandbox user (policy limits.processes)")
	fs.Var(countFlag{&l.OpenFiles}, "open-files", "at most `N` open files per process (policy limits.open_files)")
	fs.Var(sizeFlag{&l.FileSizeBytes}, "file-size", "largest file the code may write, a `SIZE` (policy limits.file_size)")
	fs.Var(sizeFlag{&l.OutputBytes}, "output", "stdout+stderr of one exec, a `SIZE` (policy limits.output)")
	fs.Var(sizeFlag{&l.UploadFileBytes}, "upload-file", "largest single upload, a `SIZE` (policy limits.upload_file)")
	fs.Var(sizeFlag{&l.UploadTotalBytes}, "upload-total", "bytes uploaded over the sandbox's life, a `SIZE` (policy limits.upload_total)")
	fs.Var(sizeFlag{&l.DownloadFileBytes}, "download-file", "largest single download, a `SIZE` (policy limits.download_file)")
	fs.Var(sizeFlag{&l.DownloadTotalBytes}, "download-total", "bytes downloaded over the sandbox's life, a `SIZE` (policy limits.download_total)")
	fs.Var(sizeFlag{&l.PythonAddressSpaceBytes}, "python-address-space", "address space of the Python interpreter, a `SIZE`; over it allocations raise MemoryError (policy limits.python_address_space)")
	fs.Var(countFlag{&l.Images}, "images", "at most `N` matplotlib figures returned per Python exec (policy limits.images.count)")
	fs.Var(sizeFlag{&l.ImageBytes}, "image-bytes", "at most this `SIZE` of figures returned per Python exec (policy limits.images.bytes)")
	fs.Var(sizeFlag{&l.EgressBytes}, "egress-bytes", "bytes through the egress proxy over the sandbox's life, a `SIZE` (policy limits.egress_bytes)")
	fs.Var(countFlag{&l.EgressConnections}, "egress-connections", "at most `N` egress connections open at once (policy limits.egress_connections)")
	fs.Var(durationFlag{&l.ExecTimeoutMax}, "exec-timeout-max", "longest --timeout an exec may ask for, a `DURATION` such as 5m (policy exec_timeout.max)")
	fs.Var(durationFlag{&l.ExecTimeoutDefault}, "exec-timeout", "timeout of an exec that asks for none, a `DURATION` such as 30s (policy exec_timeout.default)")
	fs.Var(durationFlag{&l.Lifetime}, "lifetime", "destroy the sandbox this `DURATION` after creation (policy lifetime)")
	fs.Var(durationFlag{&l.IdleTimeout}, "idle-timeout", "destroy the sandbox after this `DURATION` without a call (policy idle_timeout)")
	return l
}

// limitsRequest is l when one of the limit flags filled it in, else nil, so
// that a create without them sends no Limits at all. The flags refuse zero,
// so a set flag always leaves a field that is not zero.
func limitsRequest(l *sandboxv1.Limits) *sandboxv1.Limits {
	if proto.Size(l) == 0 {
		return nil
	}
	return l
}

// writeLimits writes get's Limits section, one limit a row, to the table
// tw. A limit the daemon left at zero shows as "-".
func writeLimits(tw io.Writer, l *sandboxv1.Limits) {
	fmt.Fprintf(tw, "Limits:\t\n")
	row := func(name, value string) { fmt.Fprintf(tw, "  %s:\t%s\n", name, value) }
	row("CPU", formatCores(l.GetCpu()))
	row("Memory", limitSize(l.GetMemoryBytes()))
	row("Disk", limitSize(l.GetDiskBytes()))
	row("Processes", limitCount(l.GetProcesses()))
	row("Open files", limitCount(l.GetOpenFiles()))
	row("File size", limitSize(l.GetFileSizeBytes()))
	row("Output per exec", limitSize(l.GetOutputBytes()))
	row("Upload per file", limitSize(l.GetUploadFileBytes()))
	row("Uploads in total", limitSize(l.GetUploadTotalBytes()))
	row("Download per file", limitSize(l.GetDownloadFileBytes()))
	row("Downloads in total", limitSize(l.GetDownloadTotalBytes()))
	python := "none"
	if n := l.GetPythonAddressSpaceBytes(); n > 0 {
		python = limitSize(n)
	}
	row("Python address space", python)
	row("Figures per exec", fmt.Sprintf("%s (%s)", limitCount(l.GetImages()), limitSize(l.GetImageBytes())))
	timeout := limitDuration(l.GetExecTimeoutDefault())
	if l.GetExecTimeoutMax() != nil {
		timeout += " (max " + limitDuration(l.GetExecTimeoutMax()) + ")"
	}
	row("Exec timeout", timeout)
	row("Lifetime", limitDuration(l.GetLifetime()))
	row("Idle timeout", limitDuration(l.GetIdleTimeout()))
}

// writeUsage writes get's Usage section to the table tw.
func writeUsage(tw io.Writer, u *sandboxv1.ResourceUsage) {
	fmt.Fprintf(tw, "Usage:\t\n")
	cpu := "-"
	if u.GetCpuTime() != nil {
		cpu = measuredDuration(u.GetCpuTime().AsDuration())
	}
	fmt.Fprintf(tw, "  CPU time:\t%s\n", cpu)
	fmt.Fprintf(tw, "  Memory:\t%s\n", approxSize(u.GetMemoryBytes()))
}

// execStats is the line exec --stats prints once the code has ended:
// "cpu 1.2s, peak memory 180Mi, took 2.3s". What the daemon could not
// measure is "unknown".
func execStats(r *sandboxv1.ExecResult) string {
	cpu, peak := "unknown", "unknown"
	if r.GetCpuTime() != nil {
		cpu = measuredDuration(r.GetCpuTime().AsDuration())
	}
	if n := r.GetPeakMemoryBytes(); n > 0 {
		peak = approxSize(n)
	}
	s := fmt.Sprintf("cpu %s, peak memory %s", cpu, peak)
	if r.GetDuration() != nil {
		s += ", took " + measuredDuration(r.GetDuration().AsDuration())
	}
	return s
}

// formatCores renders a CPU limit: "0.5 cores", "1 core"; "-" for zero.
func formatCores(c float64) string {
	switch {
	case c <= 0:
		return "-"
	case c == 1:
		return "1 core"
	}
	return strconv.FormatFloat(c, 'g', -1, 64) + " cores"
}

// limitSize renders a size limit exactly, as the policy file would write
// it (512Mi, 1G); "-" for zero.
func limitSize(n int64) string {
	if n <= 0 {
		return "-"
	}
	return policy.Size(n).String()
}

// limitCount renders a count limit; "-" for zero.
func limitCount(n int64) string {
	if n <= 0 {
		return "-"
	}
	return strconv.FormatInt(n, 10)
}

// limitDuration renders a duration limit as the policy file would write it
// (10m, 1h30m); "-" when unset.
func limitDuration(d *durationpb.Duration) string {
	if d == nil {
		return "-"
	}
	return policy.Duration(d.AsDuration()).String()
}

// measuredDuration renders a measured duration (CPU time, how long an exec
// took) to the millisecond (1.234s, 12ms), or to the microsecond below one
// millisecond.
func measuredDuration(d time.Duration) string {
	if d > 0 && d < time.Millisecond {
		return d.Round(time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// approxSize renders a measured number of bytes, rounded, in the binary
// units of the policy file: 180Mi, 1.5Gi, 512Ki; below 1Ki, plain bytes.
func approxSize(n int64) string {
	if n < 1<<10 {
		return strconv.FormatInt(max(n, 0), 10)
	}
	v, unit := float64(n), ""
	for _, u := range []string{"Ki", "Mi", "Gi", "Ti"} {
		if v < 1023.5 { // what would round to 1024 moves up a unit
			break
		}
		v, unit = v/(1<<10), u
	}
	if v < 9.95 {
		return strings.TrimSuffix(strconv.FormatFloat(v, 'f', 1, 64), ".0") + unit
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + unit
}
