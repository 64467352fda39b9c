package ocispec

import (
	"testing"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/abi/linux"
	"gvisor.dev/gvisor/pkg/bpf"
	gvseccomp "gvisor.dev/gvisor/pkg/seccomp"
	ociseccomp "gvisor.dev/gvisor/runsc/specutils/seccomp"
)

// TestSeccompFilterDeniesEscapeHatchesAndAllowsEverydayCalls guarantees
// what gVisor actually enforces from the spec's filter: compiled by runsc's
// own OCI converter and run in gVisor's BPF interpreter, the calls that
// create namespaces, trace or mount get EPERM, while the calls that threads,
// subprocesses and ordinary programs make (clone for threads and vfork,
// clone3, read) are allowed.
func TestSeccompFilterDeniesEscapeHatchesAndAllowsEverydayCalls(t *testing.T) {
	spec, err := Build(Params{RootfsDir: "/rootfs", AgentBinary: "/agent"})
	if err != nil {
		t.Fatal(err)
	}
	prog, err := ociseccomp.BuildProgram(spec.Linux.Seccomp)
	if err != nil {
		t.Fatalf("runsc rejects the filter: %v", err)
	}
	const (
		threadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD |
			unix.CLONE_SYSVSEM | unix.CLONE_SETTLS | unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID
		vforkFlags = unix.CLONE_VM | unix.CLONE_VFORK | uint64(unix.SIGCHLD)
	)
	for _, tc := range []struct {
		name  string
		nr    uintptr
		arg0  uint64
		allow bool
	}{
		{"unshare", unix.SYS_UNSHARE, unix.CLONE_NEWUSER, false},
		{"setns", unix.SYS_SETNS, 0, false},
		{"clone CLONE_NEWUSER", unix.SYS_CLONE, unix.CLONE_NEWUSER | uint64(unix.SIGCHLD), false},
		{"clone CLONE_NEWNS", unix.SYS_CLONE, unix.CLONE_NEWNS, false},
		{"clone CLONE_NEWNET", unix.SYS_CLONE, unix.CLONE_NEWNET | threadFlags, false},
		{"ptrace", unix.SYS_PTRACE, unix.PTRACE_ATTACH, false},
		{"process_vm_readv", unix.SYS_PROCESS_VM_READV, 1, false},
		{"mount", unix.SYS_MOUNT, 0, false},
		{"bpf", unix.SYS_BPF, 0, false},
		{"userfaultfd", unix.SYS_USERFAULTFD, 0, false},
		{"io_uring_setup", unix.SYS_IO_URING_SETUP, 8, false},
		{"clone of a thread", unix.SYS_CLONE, threadFlags, true},
		{"clone of a vfork (posix_spawn)", unix.SYS_CLONE, vforkFlags, true},
		{"fork through clone", unix.SYS_CLONE, uint64(unix.SIGCHLD), true},
		{"clone3 (glibc threads)", unix.SYS_CLONE3, 0, true},
		{"read", unix.SYS_READ, 0, true},
		{"prctl", unix.SYS_PRCTL, unix.PR_SET_DUMPABLE, true},
	} {
		data := linux.SeccompData{Nr: int32(tc.nr), Arch: linux.AUDIT_ARCH_X86_64}
		data.Args[0] = tc.arg0
		buf := make([]byte, data.SizeBytes())
		ret, err := bpf.Exec[bpf.NativeEndian](prog, gvseccomp.DataAsBPFInput(&data, buf))
		if err != nil {
			t.Fatalf("%s: running the filter: %v", tc.name, err)
		}
		action := linux.BPFAction(ret)
		allowed := action == linux.SECCOMP_RET_ALLOW
		eperm := action&linux.SECCOMP_RET_ACTION_FULL == linux.SECCOMP_RET_ERRNO && action.Data() == uint16(unix.EPERM)
		switch {
		case tc.allow && !allowed:
			t.Errorf("%s: got action %#x, want allow", tc.name, ret)
		case !tc.allow && !eperm:
			t.Errorf("%s: got action %#x, want EPERM", tc.name, ret)
		}
	}
}
