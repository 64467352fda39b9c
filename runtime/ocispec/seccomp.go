package ocispec

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The seccomp filter runs inside gVisor (runsc --oci-seccomp), on top of
// the sandbox user having no capabilities. gVisor already refuses most
// privileged calls to an unprivileged user; the filter removes the few
// that an unprivileged user may still make and that only widen the attack
// surface of the gVisor kernel: new namespaces (a user namespace would
// hand the code capabilities inside it), tracing other processes (the
// agent runs as the same user), mounting, and kernel facilities no code
// execution needs. Everything else is allowed, so ordinary programs work
// unchanged.
//
// gVisor's OCI seccomp can only answer EPERM (as runc does), so clone3 is
// left alone: glibc falls back to clone only on ENOSYS, and denying clone3
// with EPERM would break every thread and posix_spawn. Namespace flags
// passed through clone3 are therefore not filtered; see README "Known
// gaps".

// deniedSyscalls fail with EPERM whatever their arguments.
var deniedSyscalls = []string{
	// Namespaces.
	"unshare", "setns",
	// Tracing and reading or writing another process's memory.
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
	// Mounting (also needs CAP_SYS_ADMIN) and changing the root.
	"mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
	// Kernel facilities with a history of exploits, unused by code cells.
	"bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	// Host-wide settings (also need capabilities).
	"acct", "swapon", "swapoff", "reboot", "kexec_load", "kexec_file_load",
	"init_module", "finit_module", "delete_module", "settimeofday", "clock_settime",
	"sethostname", "setdomainname", "quotactl",
}

// namespaceFlags are the clone(2) flags that create namespaces.
var namespaceFlags = []uint64{
	unix.CLONE_NEWUSER, unix.CLONE_NEWNS, unix.CLONE_NEWPID, unix.CLONE_NEWNET,
	unix.CLONE_NEWUTS, unix.CLONE_NEWIPC, unix.CLONE_NEWCGROUP,
}

// seccomp returns the sandbox's seccomp filter: allow by default, EPERM for
// deniedSyscalls and for clone with any namespace flag.
func seccomp() *specs.LinuxSeccomp {
	s := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchAARCH64},
		Syscalls: []specs.LinuxSyscall{
			{Names: deniedSyscalls, Action: specs.ActErrno, ErrnoRet: errnoRet(unix.EPERM)},
		},
	}
	// One rule per flag: rules on one syscall are ORed, and a rule's
	// masked-equal test matches when that flag is set.
	for _, f := range namespaceFlags {
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{
			Names:    []string{"clone"},
			Action:   specs.ActErrno,
			ErrnoRet: errnoRet(unix.EPERM),
			Args:     []specs.LinuxSeccompArg{{Index: 0, Value: f, ValueTwo: f, Op: specs.OpMaskedEqual}},
		})
	}
	return s
}

func errnoRet(e unix.Errno) *uint {
	v := uint(e)
	return &v
}
