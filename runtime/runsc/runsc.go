// Package runsc drives the runsc command line (gVisor's OCI runtime), one
// file per runsc command. Every call carries the same global flags, so all
// commands of a daemon see the same state root, platform and sandbox
// configuration.
package runsc

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Runsc is a configured runsc binary.
type Runsc struct {
	// Binary is the path of runsc.
	Binary string
	// Root is runsc's state directory (--root). One per daemon: everything
	// listed there belongs to this daemon.
	Root string
	// Platform is the gVisor platform (--platform): systrap or ptrace.
	Platform string
	// Network is the network mode (--network): "none" gives loopback only.
	Network string
	// Overlay is the root overlay (--overlay2), e.g. "root:memory,size=512m":
	// sandbox writes go to memory, capped, and the host rootfs stays
	// untouched.
	Overlay string
	// LogDir, when set, receives runsc's logs, one file per sandbox ID and
	// command (--debug-log with %ID% and %COMMAND%), for post-mortems.
	LogDir string
}

// maxErrOutput bounds how much of runsc's output goes into an error.
const maxErrOutput = 4096

// globalArgs are the flags every command gets, before the subcommand.
func (r *Runsc) globalArgs() []string {
	args := append([]string{"--root=" + r.Root}, r.SandboxArgs()...)
	if r.LogDir != "" {
		args = append(args, "--debug-log="+r.LogDir+"/%ID%.%COMMAND%.log")
	}
	return args
}

// SandboxArgs are the global flags that shape a sandbox itself (not where
// runsc keeps its state or logs): a restore must repeat the checkpointed
// sandbox's exactly.
func (r *Runsc) SandboxArgs() []string {
	// --oci-seccomp makes the sentry enforce the spec's seccomp filter on
	// the sandboxed processes (runtime/ocispec denies namespace, ptrace and
	// mount syscalls); without it runsc ignores linux.seccomp.
	args := []string{"--oci-seccomp"}
	if r.Platform != "" {
		args = append(args, "--platform="+r.Platform)
	}
	if r.Network != "" {
		args = append(args, "--network="+r.Network)
	}
	if r.Overlay != "" {
		args = append(args, "--overlay2="+r.Overlay)
	}
	return args
}

// command builds an exec.Cmd for `runsc GLOBAL... sub args...`.
func (r *Runsc) command(ctx context.Context, sub string, args ...string) *exec.Cmd {
	argv := append(r.globalArgs(), sub)
	argv = append(argv, args...)
	cmd := exec.CommandContext(ctx, r.Binary, argv...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"} // nothing of the daemon's environment
	return cmd
}

// run runs a short command and returns its stdout; on failure the error
// carries its stderr.
func (r *Runsc) run(ctx context.Context, sub string, args ...string) ([]byte, error) {
	cmd := r.command(ctx, sub, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("runsc %s: %w: %s", sub, err, trim(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func trim(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > maxErrOutput {
		s = "..." + s[len(s)-maxErrOutput:]
	}
	return s
}
