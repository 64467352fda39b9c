package bench

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// versionTimeout bounds asking a binary for its version: it answers at
// once or not at all.
const versionTimeout = 10 * time.Second

// machineInfo describes the host sandboxctl ran on, which is the daemon's
// host when the daemon is reached by its unix socket.
type machineInfo struct {
	Hostname     string `json:"hostname"`
	Kernel       string `json:"kernel"` // uname -r
	OS           string `json:"os"`     // PRETTY_NAME of /etc/os-release
	Arch         string `json:"arch"`
	CPUModel     string `json:"cpu_model"`
	NProc        int    `json:"nproc"` // CPUs sandboxctl may use
	MemoryBytes  uint64 `json:"memory_bytes"`
	RunscVersion string `json:"runsc_version"` // of --runsc; empty without one
	RuncVersion  string `json:"runc_version"`  // empty when runc is missing
	Date         string `json:"date"`          // start of the benchmark, RFC 3339
}

// machineInfoFor gathers the host's details; what cannot be read stays
// empty. runsc is --runsc, possibly empty.
func machineInfoFor(runsc string, started time.Time) machineInfo {
	m := machineInfo{
		Arch:  runtime.GOARCH,
		NProc: runtime.NumCPU(),
		Date:  started.UTC().Format(time.RFC3339),
	}
	m.Hostname, _ = os.Hostname()
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		m.Kernel = unix.ByteSliceToString(uts.Release[:])
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		m.MemoryBytes = uint64(si.Totalram) * uint64(si.Unit)
	}
	m.OS = fileField("/etc/os-release", "PRETTY_NAME=", func(v string) string { return strings.Trim(v, `"`) })
	m.CPUModel = fileField("/proc/cpuinfo", "model name", func(v string) string {
		_, model, _ := strings.Cut(v, ":")
		return strings.TrimSpace(model)
	})
	if runsc != "" {
		m.RunscVersion = runscVersion(runsc)
	}
	if runc, err := exec.LookPath("runc"); err == nil || fileExists(debianRunc) {
		if err != nil {
			runc = debianRunc
		}
		m.RuncVersion = firstLine(commandOutput(runc, "--version"))
	}
	return m
}

// fileExists reports whether path exists.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// fileField returns value(rest of line) for the first line of path that
// starts with prefix, or "".
func fileField(path, prefix string, value func(string) string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			return value(rest)
		}
	}
	return ""
}

// runscVersion describes the runsc binary: its own --version line and,
// because a runsc built with go build says "VERSION_MISSING" there, the
// gVisor module version compiled into it.
func runscVersion(path string) string {
	v := firstLine(commandOutput(path, "--version"))
	if bi, err := buildinfo.ReadFile(path); err == nil {
		mod := bi.Main
		for _, d := range bi.Deps {
			if d.Path == "gvisor.dev/gvisor" {
				mod = *d
			}
		}
		if mod.Path != "" && mod.Version != "" {
			v += " (" + mod.Path + " " + mod.Version + ")"
		}
	}
	return strings.TrimSpace(v)
}

// commandOutput runs name with args and returns its standard output, or ""
// on failure.
func commandOutput(name string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), versionTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return ""
	}
	return string(out)
}

// firstLine returns the first line of s.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}
