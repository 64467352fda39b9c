package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// daemonAttack looks for the daemon's files inside the sandbox; goes for
// the agent's pipes to the daemon (ptrace, /proc/PID/fd, /proc/PID/mem of
// every agent process); and connects to the daemon's unix socket (by path,
// default path and as an abstract name) and to its gRPC and metrics TCP
// ports (raw TCP and HTTP) at every host address.
const daemonAttack = `
import urllib.request
for p in CFG["paths"]:
    print("EXISTS" if os.path.lexists(p) else "absent", p)

def unix(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect(path)
        return "connected"

def http(host, port):
    h = "[%s]" % host if ":" in host else host
    with urllib.request.urlopen("http://%s:%d/metrics" % (h, port), timeout=3) as resp:
        return resp.status, resp.read(64)

# The agent's stdin, stdout and stderr are its pipes to the daemon.
import ctypes
libc = ctypes.CDLL(None, use_errno=True)

def ptrace_attach(pid):
    if libc.ptrace(16, pid, None, None) == -1:  # PTRACE_ATTACH
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
    return "attached"

def open_fd(path, flags):
    os.close(os.open(path, flags | os.O_NONBLOCK))
    return "opened"

def read_mem(pid):
    with open("/proc/%d/mem" % pid, "rb") as f:
        return f.read(16)

agents = []
for e in os.listdir("/proc"):
    try:
        with open("/proc/%s/cmdline" % e, "rb") as f:
            if e.isdigit() and f.read().startswith(b"/.sandboxd/agent"):
                agents.append(int(e))
    except OSError:
        pass
print("agent pids", sorted(agents))

probes = []
for pid in agents:
    probes.append(("ptrace attach agent %d" % pid, ptrace_attach, (pid,)))
    probes.append(("read memory of agent %d" % pid, read_mem, (pid,)))
    for fd in (0, 1, 2):
        for mode, flags in (("reading", os.O_RDONLY), ("writing", os.O_WRONLY)):
            probes.append(("open agent %d fd %d for %s" % (pid, fd, mode), open_fd, ("/proc/%d/fd/%d" % (pid, fd), flags)))
for p in CFG["sockets"]:
    probes.append(("unix " + p, unix, (p,)))
    probes.append(("unix abstract @" + p, unix, ("\0" + p,)))
for host in CFG["hosts"]:
    for port in CFG["ports"]:
        probes.append(("tcp %s port %d" % (host, port), connect, (host, port)))
        probes.append(("http %s port %d" % (host, port), http, (host, port)))
attempt_all(probes)

# Reconnaissance, not an attack: what the agent's fd table shows.
for pid in agents:
    for what, fn in (("fds", lambda: os.listdir("/proc/%d/fd" % pid)),
                     ("fdinfo/0", lambda: open("/proc/%d/fdinfo/0" % pid).read().replace("\n", " "))):
        try:
            print("recon agent %d %s: readable: %s" % (pid, what, fn()))
        except OSError as e:
            print("recon agent %d %s: %s" % (pid, what, errno.errorcode.get(e.errno)))
`

// hostReachesDaemon checks from the host that the daemon's TCP gRPC
// listener says SERVING and its metrics listener serves /metrics: the
// attacks from inside have live targets.
func hostReachesDaemon(t testing.TB, apiAddr, metricsAddr string) {
	t.Helper()
	conn, err := grpc.NewClient(apiAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx(t), &healthpb.HealthCheckRequest{Service: "sandbox.v1.SandboxService"})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health over TCP %s from the host: %v %v", apiAddr, resp, err)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	mresp, err := hc.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("metrics from the host: %v", err)
	}
	defer mresp.Body.Close()
	body, _ := io.ReadAll(mresp.Body)
	if mresp.StatusCode != http.StatusOK || !strings.Contains(string(body), "go_goroutines") {
		t.Fatalf("metrics from the host: %s\n%.300s", mresp.Status, body)
	}
}

// TestReachingTheDaemonFromInsideFails guarantees that sandboxed code
// cannot talk to sandboxd: with the daemon serving gRPC on its unix
// socket and on loopback TCP (--listen-tcp) and metrics on loopback TCP
// (--metrics-listen), all three answering from the host, the sandbox sees
// neither the socket nor its directory nor the state directory;
// connecting to the socket (by path or as an abstract name) and to both
// TCP ports on loopback, the wildcard addresses and every host address,
// raw or over HTTP, fails; and the agent's own pipes to the daemon are
// out of reach (ptrace attach, listing or opening /proc/PID/fd/0-2 and
// reading /proc/PID/mem of each agent process fail). The daemon then
// still serves.
func TestReachingTheDaemonFromInsideFails(t *testing.T) {
	apiAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := startDaemon(t, daemonOpts{args: []string{"--listen-tcp", apiAddr, "--metrics-listen", metricsAddr}})
	hostReachesDaemon(t, apiAddr, metricsAddr)
	id := d.create(t)

	const defaultSocket = "/run/sandboxd/sandboxd.sock"
	sockets := []string{d.socket, defaultSocket}
	paths := append([]string{filepath.Dir(d.socket), d.stateDir, d.runscRoot(), filepath.Dir(defaultSocket)}, sockets...)
	var portNums []int
	for _, a := range []string{apiAddr, metricsAddr} {
		portNums = append(portNums, a2port(t, a))
	}
	hosts := union(loopbackTargets, hostAddrs(t))
	r := py(t, d, id, pyWith(t, map[string]any{"paths": paths, "sockets": sockets, "hosts": hosts, "ports": portNums}, daemonAttack))
	// At least the agent's init (PID 1) is attacked through /proc.
	agents, _ := lineWith(r.stdout, "agent pids ")
	if agents == "[]" || agents == "" {
		t.Errorf("no agent process found inside:\n%s", r.stdout)
	}
	wantDenied(t, "sandbox attacks the daemon", r, 8+2*len(sockets)+2*len(hosts)*len(portNums))
	// gVisor gives /proc/PID/fd and fdinfo the task's owner even when the
	// task is not dumpable (Linux gives them to root), so the agent's fd
	// numbers and flags show; its files do not open. Logged, not failed:
	// nothing of the daemon is reachable through them.
	if strings.Contains(r.stdout, ": readable: ") {
		t.Logf("note: the agent's fd table is listable from inside (fd numbers and fdinfo only)")
	}
	if strings.Contains(r.stdout, "EXISTS ") {
		t.Errorf("the daemon's paths are visible inside:\n%s", r.stdout)
	}
	if n := strings.Count(r.stdout, "absent "); n != len(paths) {
		t.Errorf("%d of %d path checks ran:\n%s", n, len(paths), r.stdout)
	}

	hostReachesDaemon(t, apiAddr, metricsAddr)
	wantServes(t, d, id)
}

// a2port returns the port of a host:port address.
func a2port(t testing.TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(p, &n)
	return n
}
