package e2e

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// TestForkBombHitsProcessLimit guarantees that spawning processes without
// end gets EAGAIN from RLIMIT_NPROC inside the sandbox, and that the sandbox
// survives it.
func TestForkBombHitsProcessLimit(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)
	r := sh(t, d, id, `python3 -c '
import os, errno, signal
kids = []
try:
    while len(kids) < 5000:
        kids.append(os.posix_spawn("/bin/sleep", ["sleep", "30"], {}))
    print("no limit")
except OSError as e:
    print("stopped", errno.errorcode[e.errno], len(kids))
for k in kids:
    os.kill(k, signal.SIGKILL)
    os.waitpid(k, 0)
'`)
	wantOK(t, r)
	if !strings.HasPrefix(r.stdout, "stopped EAGAIN") {
		t.Fatalf("process bomb: %q %q", r.stdout, r.stderr)
	}
	wantOK(t, sh(t, d, id, "echo alive"))
}

// TestDiskFillGivesENOSPC guarantees that writing twice the writable-layer
// cap (512Mi by default) to /workspace and to /tmp fails with ENOSPC inside
// the sandbox instead of growing anything on the host: while the sandbox
// holds its full layer, the host file systems of the state directory and
// the rootfs have lost no more than a few MiB.
func TestDiskFillGivesENOSPC(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)
	hostFree := func() map[string]int64 {
		free := map[string]int64{}
		for _, dir := range []string{d.stateDir, os.Getenv("SANDBOXD_ROOTFS"), "/tmp", "/var"} {
			var st syscall.Statfs_t
			if err := syscall.Statfs(dir, &st); err != nil {
				t.Fatal(err)
			}
			free[dir] = int64(st.Bavail) * st.Bsize
		}
		return free
	}
	for _, dir := range []string{"/workspace", "/tmp"} {
		before := hostFree()
		r := sh(t, d, id, "head -c 1100M /dev/zero > "+dir+"/fill; echo rc=$?; du -m "+dir+"/fill")
		if !strings.Contains(r.stderr, "No space left on device") || !strings.Contains(r.stdout, "rc=1") {
			t.Fatalf("filling %s: stdout %q stderr %q", dir, r.stdout, r.stderr)
		}
		for path, free := range hostFree() {
			if lost := before[path] - free; lost > 64<<20 {
				t.Errorf("filling %s in the sandbox took %d MiB of the host's %s", dir, lost>>20, path)
			}
		}
		wantOK(t, sh(t, d, id, "rm -f "+dir+"/fill"))
	}
	wantOK(t, sh(t, d, id, "echo small > /workspace/ok && cat /workspace/ok"))
}

// TestEgressIsDenied guarantees that sandboxed code reaches no network:
// TCP and UDP to public, private, metadata and IPv6 addresses, DNS, raw and
// packet sockets all fail, while loopback inside the sandbox works.
func TestEgressIsDenied(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)
	r := d.run(t, id, sandboxv1.Language_LANGUAGE_PYTHON, `
import socket, threading
def attempt(name, fn):
    try:
        fn()
        print("OPEN", name)
    except OSError as e:
        print("denied", name)
def tcp(host, fam=socket.AF_INET):
    s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(3); s.connect((host, 80))
def udp(host):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
    s.sendto(b"x", (host, 53)); s.recv(1)
attempt("tcp-public", lambda: tcp("1.1.1.1"))
attempt("tcp-private", lambda: tcp("192.168.1.1"))
attempt("tcp-metadata", lambda: tcp("169.254.169.254"))
attempt("tcp-ipv6", lambda: tcp("2606:4700:4700::1111", socket.AF_INET6))
attempt("udp-dns", lambda: udp("8.8.8.8"))
attempt("dns", lambda: socket.getaddrinfo("example.com", 80))
attempt("raw", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
attempt("packet", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
threading.Thread(target=lambda: srv.accept()[0].sendall(b"hi"), daemon=True).start()
c = socket.create_connection(srv.getsockname(), timeout=3)
print("loopback", c.recv(2).decode())
`, time.Minute)
	wantOK(t, r)
	if strings.Contains(r.stdout, "OPEN") || strings.Count(r.stdout, "denied") != 8 || !strings.Contains(r.stdout, "loopback hi") {
		t.Fatalf("egress: %s (stderr %q)", r.stdout, r.stderr)
	}
}

// TestPrivilegedOperationsFail guarantees that the sandbox user cannot
// mount, create namespaces (unshare -m, unshare -r, clone with
// CLONE_NEWUSER), change its uid, ptrace, or open the agent's channel to
// the daemon through /proc/<agent>/fd, and that the sandbox works after
// the attempts.
func TestPrivilegedOperationsFail(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)
	r := sh(t, d, id, `
mkdir -p /tmp/m
mount -t tmpfs none /tmp/m 2>/dev/null && echo MOUNTED
unshare -m true 2>/dev/null && echo UNSHARED_MNT
unshare -r true 2>/dev/null && echo UNSHARED_USER
python3 -c 'import os; os.setuid(0)' 2>/dev/null && echo SETUID
python3 - <<'PY'
import ctypes, os, signal, time
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER, SIGCHLD, PTRACE_ATTACH = 0x10000000, 17, 16
if libc.syscall(56, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0) == 0:
    os._exit(0)  # the child of a clone that should have failed
else:
    print("clone-newuser", os.strerror(ctypes.get_errno()))
kid = os.fork()
if kid == 0:
    time.sleep(30)
    os._exit(0)
print("ptrace", "ATTACHED" if libc.ptrace(PTRACE_ATTACH, kid, 0, 0) == 0 else os.strerror(ctypes.get_errno()))
os.kill(kid, signal.SIGKILL)
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        continue
    if b"/.sandboxd/agent" not in cmd:
        continue
    for fd in (0, 1):
        try:
            open(f"/proc/{pid}/fd/{fd}", "wb")
            print("OPENED agent fd", pid, fd)
        except OSError as e:
            print("agent-fd", e.strerror)
PY
echo checked`)
	wantOK(t, r)
	want := "clone-newuser Operation not permitted\nptrace Operation not permitted\n" +
		strings.Repeat("agent-fd Permission denied\n", 4) + "checked\n"
	if r.stdout != want {
		t.Fatalf("privileged operations: got\n%s\nwant\n%s\nstderr %q", r.stdout, want, r.stderr)
	}
	wantOK(t, py(t, d, id, "print(6 * 7)"))
}
