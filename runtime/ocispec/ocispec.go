// Package ocispec builds the OCI runtime spec of a sandbox as a pure
// function of its parameters, so every security property of the spec is
// checked by table tests that need no root and no runsc.
package ocispec

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The sandbox user and layout. The rootfs build (rootfs/customize.sh)
// creates the same user and directories.
const (
	// SandboxUID and SandboxGID: the unprivileged user sandboxed code runs
	// as; never 0, so a gVisor escape would not start as root.
	SandboxUID = 1000
	SandboxGID = 1000
	// Workspace is the working directory and the root of relative paths.
	Workspace = "/workspace"
	// Home is the sandbox user's home.
	Home = "/home/sandbox"
	// AgentPath is where the agent binary is bind-mounted, read-only.
	AgentPath = "/.sandboxd/agent"
	// Hostname inside every sandbox: the same for all, so nothing about the
	// host or the sandbox ID leaks through it.
	Hostname = "sandbox"
)

// Default resource limits applied through rlimits when Params leaves them
// zero.
const (
	// DefaultOpenFiles (RLIMIT_NOFILE): enough for pandas and matplotlib with
	// many open files, small enough to bound kernel objects per sandbox.
	DefaultOpenFiles = 1024
	// DefaultProcesses (RLIMIT_NPROC): counted per user inside the sandbox,
	// so it stops fork bombs without the host pids limit that makes the
	// gVisor sentry panic when hit.
	DefaultProcesses = 256
	// AgentProcessReserve is added to the processes limit of the container
	// process, the agent. gVisor counts every task of the sandbox user
	// against the limit of the task that forks, so the agent runs with this
	// many more than the code, whose own limit the agent sets (Python
	// worker, bash): code at its limit cannot keep the agent from starting
	// a thread or a bash. 64 is well above the agent's ~15 threads.
	AgentProcessReserve = 64
	// DefaultFileSize (RLIMIT_FSIZE): no single file may exceed 1 GiB.
	DefaultFileSize = 1 << 30
	// DefaultTmpSize caps /tmp when Params leaves it zero; matches the
	// default writable-layer size of the policy.
	DefaultTmpSize = 512 << 20
)

// baseEnv is the environment of the agent and so of all sandboxed code. It
// names nothing of the host or the daemon.
var baseEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=" + Home,
	"USER=sandbox",
	"LOGNAME=sandbox",
	"SHELL=/bin/bash",
	"LANG=C.UTF-8",
	"TERM=dumb",
	// matplotlib: no display; config and the prebuilt font cache in home.
	"MPLBACKEND=Agg",
	"MPLCONFIGDIR=" + Home + "/.cache/matplotlib",
}

// Params are the inputs of a sandbox's spec.
type Params struct {
	// RootfsDir is the host directory of the shared rootfs. It is never
	// written: the root is writable only through gVisor's overlay, whose
	// upper layer is in sandbox memory (runsc --overlay2=root:memory).
	RootfsDir string
	// AgentBinary is the host path of the agent, mounted read-only.
	AgentBinary string
	// Env is added to the base environment (template environment); a key
	// given here replaces the base value.
	Env map[string]string
	// OpenFiles, Processes and FileSize override the default rlimits.
	OpenFiles, Processes, FileSize uint64
	// TmpSize caps the /tmp tmpfs in bytes. Without an explicit /tmp mount
	// gVisor would mount an uncapped tmpfs there.
	TmpSize uint64
	// EgressProxy is the address (host:port) of the agent's egress proxy
	// on the sandbox's loopback, for a template with network: allowlist:
	// every process gets HTTP_PROXY, HTTPS_PROXY (and their lowercase
	// forms) pointing at it, and NO_PROXY for loopback. Empty: no egress,
	// and none of these variables.
	EgressProxy string
	// CgroupsPath is the sandbox's pre-created cgroup (runtime/cgroups):
	// runsc puts its sentry and gofer in it and sizes the sandbox's memory
	// and CPUs from its limits. Empty: no cgroup.
	CgroupsPath string
}

// CodeProcesses is the RLIMIT_NPROC the agent gives sandboxed code.
func (p Params) CodeProcesses() uint64 { return orDefault(p.Processes, DefaultProcesses) }

// Build returns the spec for p. It fails only on unusable parameters.
func Build(p Params) (*specs.Spec, error) {
	if !filepath.IsAbs(p.RootfsDir) {
		return nil, fmt.Errorf("rootfs directory %q is not an absolute path", p.RootfsDir)
	}
	if !filepath.IsAbs(p.AgentBinary) {
		return nil, fmt.Errorf("agent binary %q is not an absolute path", p.AgentBinary)
	}
	noCaps := []string{}
	return &specs.Spec{
		Version:  specs.Version,
		Hostname: Hostname,
		Root: &specs.Root{
			Path: p.RootfsDir,
			// Must be false: gVisor disables the root overlay for a read-only
			// root, and the overlay is what keeps the host copy untouched.
			Readonly: false,
		},
		Process: &specs.Process{
			Terminal: false, // a pty would mangle the agent's binary protocol
			User:     specs.User{UID: SandboxUID, GID: SandboxGID},
			Args:     []string{AgentPath},
			Env:      env(p.Env, p.EgressProxy),
			Cwd:      Workspace,
			Capabilities: &specs.LinuxCapabilities{
				Bounding: noCaps, Effective: noCaps, Inheritable: noCaps,
				Permitted: noCaps, Ambient: noCaps,
			},
			NoNewPrivileges: true,
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_CORE", Hard: 0, Soft: 0},
				rlimit("RLIMIT_NOFILE", p.OpenFiles, DefaultOpenFiles),
				rlimit("RLIMIT_NPROC", p.CodeProcesses()+AgentProcessReserve, 0),
				rlimit("RLIMIT_FSIZE", p.FileSize, DefaultFileSize),
			},
		},
		Mounts: mounts(p.AgentBinary, orDefault(p.TmpSize, DefaultTmpSize)),
		Linux: &specs.Linux{
			CgroupsPath: p.CgroupsPath,
			Seccomp:     seccomp(),
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.NetworkNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
			},
		},
	}, nil
}

func rlimit(name string, v, def uint64) specs.POSIXRlimit {
	v = orDefault(v, def)
	return specs.POSIXRlimit{Type: name, Hard: v, Soft: v}
}

func orDefault(v, def uint64) uint64 {
	if v == 0 {
		return def
	}
	return v
}

// noProxy lists what HTTP clients reach directly rather than through the
// egress proxy: the sandbox's loopback, where the proxy itself and the
// code's own servers listen.
const noProxy = "localhost,127.0.0.1"

// proxyEnv returns the variables that send HTTP clients (curl, Python's
// urllib and requests, pip, Go, Node) through the egress proxy at addr.
// Clients differ in which case they read, so both are set.
func proxyEnv(addr string) []string {
	if addr == "" {
		return nil
	}
	url := "http://" + addr
	return []string{
		"HTTP_PROXY=" + url, "HTTPS_PROXY=" + url, "http_proxy=" + url, "https_proxy=" + url,
		"NO_PROXY=" + noProxy, "no_proxy=" + noProxy,
	}
}

// env merges extra into the base environment and the egress proxy's
// variables (see proxyEnv), sorted for a stable spec.
func env(extra map[string]string, proxy string) []string {
	base := append(slices.Clone(baseEnv), proxyEnv(proxy)...)
	out := make([]string, 0, len(base)+len(extra))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, replaced := extra[k]; !replaced {
			out = append(out, kv)
		}
	}
	for k, v := range extra {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

func mounts(agent string, tmpSize uint64) []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777", fmt.Sprintf("size=%d", tmpSize)}},
		// The agent: our binary, read-only, the only host file in the sandbox.
		{Destination: AgentPath, Type: "bind", Source: agent, Options: []string{"rbind", "ro", "nosuid", "nodev"}},
	}
}
