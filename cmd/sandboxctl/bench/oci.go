package bench

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The baseline containers' process, like a sandbox's (runtime/ocispec):
// the rootfs's unprivileged user, no capabilities, a fixed environment.
const (
	baselineUID = 1000 // the sandbox user of the rootfs (rootfs/customize.sh)
	baselineGID = 1000
	baselineCwd = "/"
)

// baselineEnvVars is the environment of every baseline process, host-python
// included: the PATH and locale of a sandbox, and matplotlib's headless
// backend and prebuilt font cache, without which the import baselines
// would time a font scan the sandboxes never do.
var baselineEnvVars = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/home/sandbox",
	"LANG=C.UTF-8",
	"MPLBACKEND=Agg",
	"MPLCONFIGDIR=/home/sandbox/.cache/matplotlib",
}

// baselineSpec returns the OCI spec of a baseline container that runs args
// in rootfs. gVisor needs a writable root (readonly false), which its
// memory overlay (--overlay2=root:memory) keeps off the shared rootfs;
// runc writes through to the host, so it gets readonly true.
func baselineSpec(rootfs string, readonly bool, args []string) *specs.Spec {
	noCaps := []string{}
	return &specs.Spec{
		Version:  specs.Version,
		Hostname: "sandbox",
		Root:     &specs.Root{Path: rootfs, Readonly: readonly},
		Process: &specs.Process{
			Terminal: false,
			User:     specs.User{UID: baselineUID, GID: baselineGID},
			Args:     args,
			Env:      slices.Clone(baselineEnvVars),
			Cwd:      baselineCwd,
			Capabilities: &specs.LinuxCapabilities{
				Bounding: noCaps, Effective: noCaps, Inheritable: noCaps,
				Permitted: noCaps, Ambient: noCaps,
			},
			NoNewPrivileges: true,
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
		},
		// Only mount points that exist in every Debian rootfs: runc would
		// create missing ones in the shared rootfs before making it
		// read-only.
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.NetworkNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
			},
			// runc's default: no device access beyond the ones it creates.
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
		},
	}
}

// writeBundle writes spec as the config.json of a new bundle directory.
func writeBundle(dir string, spec *specs.Spec) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600)
}

// mountsUnder returns the mount points in mountinfo (the format of
// /proc/self/mountinfo) that are dir or below it, deepest first.
func mountsUnder(mountinfo io.Reader, dir string) []string {
	dir = filepath.Clean(dir)
	var out []string
	sc := bufio.NewScanner(mountinfo)
	for sc.Scan() {
		// ID PARENT MAJOR:MINOR ROOT MOUNTPOINT OPTIONS ...
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	slices.SortStableFunc(out, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return out
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) with which
// the kernel writes blanks and backslashes in mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountAll detaches every mount at or below dir, so that removing dir
// can neither fail on a busy mount point nor reach into a mounted file
// system (runsc leaves <root>/null-netns, a bind mount of a network
// namespace, mounted). Stacked mounts come off one per round.
func unmountAll(dir string) error {
	for {
		f, err := os.Open("/proc/self/mountinfo")
		if err != nil {
			return err
		}
		mps := mountsUnder(f, dir)
		f.Close()
		if len(mps) == 0 {
			return nil
		}
		for _, mp := range mps {
			if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
				return &os.PathError{Op: "unmount", Path: mp, Err: err}
			}
		}
	}
}
