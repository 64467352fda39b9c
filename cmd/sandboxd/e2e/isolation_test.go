package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// The isolation tests run attacks from inside real sandboxes against other
// sandboxes, the daemon and the host. Every probe runs in the sandbox's
// persistent Python kernel (code arrives over the agent's pipe, so no
// argv or environment inside carries the test's inputs) and prints one
// line: "OPEN name: what it got" when the attack worked, "denied name:
// errno" when it did not. wantDenied fails the test on any OPEN line and
// unless every probe reported.

// probePrelude is the Python shared by the probes. CFG, the test's inputs,
// is defined before it by pyWith.
const probePrelude = `
import concurrent.futures, errno, os, socket, struct

def fam(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET

def connect(host, port):
    """A TCP connect: success is enough for the attack."""
    with socket.socket(fam(host), socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect((host, port))
        return "connected"

def tcp(host, port, timeout=3):
    """A TCP connect and the first bytes the server sends."""
    with socket.socket(fam(host), socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        return s.recv(64)

def udp(host, port, timeout=2):
    """A datagram and the answer to it."""
    with socket.socket(fam(host), socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(b"probe", (host, port))
        return s.recv(64)

def attempt_all(probes):
    """Runs (name, fn, args) probes concurrently and prints one line each."""
    def one(probe):
        name, fn, args = probe
        try:
            return "OPEN %s: %r" % (name, fn(*args))
        except OSError as e:
            if isinstance(getattr(e, "reason", None), OSError):
                e = e.reason  # urllib's URLError: the socket's error
            why = errno.errorcode.get(e.errno) if e.errno else None
            return "denied %s: %s" % (name, why or type(e).__name__)
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        lines = sorted(ex.map(one, probes))
    for line in lines:
        print(line)
    print("attempts", len(probes))
`

// pyWith returns Python code that defines CFG as cfg (through JSON) and
// the probe helpers, then runs body.
func pyWith(t testing.TB, cfg any, body string) string {
	t.Helper()
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return "import base64, json\nCFG = json.loads(base64.b64decode(\"" +
		base64.StdEncoding.EncodeToString(js) + "\"))\n" + probePrelude + body
}

// wantDenied fails the test unless the probes of r all printed "denied",
// none "OPEN", and at least atLeast probes ran. It logs every line, so -v
// shows how each attack failed.
func wantDenied(t testing.TB, what string, r execResult, atLeast int) {
	t.Helper()
	wantOK(t, r)
	n, open, denied := -1, 0, 0
	for _, line := range strings.Split(r.stdout, "\n") {
		switch {
		case strings.HasPrefix(line, "OPEN "):
			open++
			t.Errorf("%s: attack succeeded: %s", what, line)
		case strings.HasPrefix(line, "denied "):
			denied++
		case strings.HasPrefix(line, "attempts "):
			fmt.Sscan(strings.TrimPrefix(line, "attempts "), &n)
		}
	}
	if n < atLeast || open+denied != n {
		t.Errorf("%s: %d probes ran, %d reported, want at least %d", what, n, open+denied, atLeast)
	}
	t.Logf("%s:\n%s", what, r.stdout)
}

// lineWith returns the first line of out that starts with prefix, without
// the prefix, and whether there is one.
func lineWith(out, prefix string) (string, bool) {
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			return rest, true
		}
	}
	return "", false
}

// wantServes guarantees that after an attack the daemon still runs a
// normal Exec, with the right answer, in each sandbox.
func wantServes(t testing.TB, d *daemon, ids ...string) {
	t.Helper()
	for _, id := range ids {
		r := py(t, d, id, "print(6*7)")
		wantOK(t, r)
		if r.stdout != "42\n" {
			t.Fatalf("sandbox %s after the attack: print(6*7) gave %q (stderr %q)", id, r.stdout, r.stderr)
		}
	}
}

// hostAddrs returns the host's own IP addresses, loopback included, as
// text. Link-local addresses are left out: they need the host's interface
// as a zone, which a sandbox does not have.
func hostAddrs(t testing.TB) []string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLinkLocalUnicast() || ipn.IP.IsMulticast() {
			continue
		}
		out = append(out, ipn.IP.String())
	}
	if len(out) == 0 {
		t.Fatal("the host has no IP addresses")
	}
	return out
}

// nonLoopback returns addrs without loopback addresses.
func nonLoopback(addrs []string) []string {
	var out []string
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip != nil && !ip.IsLoopback() {
			out = append(out, a)
		}
	}
	return out
}

// union returns the sorted distinct strings of lists.
func union(lists ...[]string) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range lists {
		for _, s := range l {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	sort.Strings(out)
	return out
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// randomHex returns n random bytes in hex.
func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// loopbackTargets are the addresses that name "this machine" to code
// inside a sandbox.
var loopbackTargets = []string{"127.0.0.1", "0.0.0.0", "::1", "::"}

// listenInA starts listeners in the Python kernel of sandbox A that
// outlive the Exec: daemon threads accepting TCP on 0.0.0.0, 127.0.0.1 and
// [::] and on an abstract unix socket, and answering UDP on 0.0.0.0, each
// counting what reaches it.
const listenInA = `
import threading
seen = {"tcp": 0, "udp": 0}
def _serve_tcp(s):
    while True:
        c, _ = s.accept()
        seen["tcp"] += 1
        with c:
            try:
                c.sendall(b"from-A")
            except OSError:
                pass
def _serve_udp(s):
    while True:
        _, peer = s.recvfrom(64)
        seen["udp"] += 1
        s.sendto(b"from-A", peer)
P = CFG
for host, port, kind, serve in [
        ("0.0.0.0", P["any"], socket.SOCK_STREAM, _serve_tcp),
        ("127.0.0.1", P["lo"], socket.SOCK_STREAM, _serve_tcp),
        ("::", P["v6"], socket.SOCK_STREAM, _serve_tcp),
        ("0.0.0.0", P["udp"], socket.SOCK_DGRAM, _serve_udp),
        ("\0" + P["abstract"], None, socket.SOCK_STREAM, _serve_tcp)]:
    s = socket.socket(socket.AF_UNIX if port is None else fam(host), kind)
    if host == "::":
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(host if port is None else (host, port))
    if kind == socket.SOCK_STREAM:
        s.listen(64)
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("listening")
`

// selfCheckInA prints what reached A's listeners so far, connects to each
// of them from inside A (a failure raises) and lists A's addresses.
const selfCheckInA = `
import fcntl, json
P = CFG
print("seen tcp=%d udp=%d" % (seen["tcp"], seen["udp"]))
def unix(name, timeout):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(name)
        return s.recv(64)
# Generous timeouts: A's server threads answer, however loaded the host.
for name, fn, args in [("tcp-any", tcp, ("127.0.0.1", P["any"], 20)), ("tcp-lo", tcp, ("127.0.0.1", P["lo"], 20)),
                       ("tcp-v6", tcp, ("::1", P["v6"], 20)), ("udp-any", udp, ("127.0.0.1", P["udp"], 20)),
                       ("unix-abstract", unix, ("\0" + P["abstract"], 20))]:
    print("self", name, fn(*args).decode())
addrs = set()
with open("/proc/net/dev") as f:
    ifaces = [line.split(":")[0].strip() for line in f.readlines()[2:]]
for name in ifaces:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:  # SIOCGIFADDR
            res = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
            addrs.add(socket.inet_ntoa(res[20:24]))
        except OSError:
            pass
with open("/proc/net/if_inet6") as f:
    for line in f:
        addrs.add(socket.inet_ntop(socket.AF_INET6, bytes.fromhex(line.split()[0])))
print("interfaces", json.dumps(ifaces))
print("addrs", json.dumps(sorted(addrs)))
`

// attackFromB connects from sandbox B to A's abstract unix socket and to
// every port A listens on, at every address A, B or the host might have,
// then shows that B's network
// stack holds none of A's sockets.
const attackFromB = `
P = CFG["ports"]

def unix(name):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect(name)
        return "connected"

probes = [("unix abstract @" + P["abstract"], unix, ("\0" + P["abstract"],))]
for host in CFG["targets"]:
    for key in ("any", "lo", "v6"):
        probes.append(("tcp %s port %d" % (host, P[key]), connect, (host, P[key])))
    probes.append(("udp %s port %d" % (host, P["udp"]), udp, (host, P["udp"])))
attempt_all(probes)
ports = {P[k] for k in ("any", "lo", "v6", "udp")}
for path in ("/proc/net/tcp", "/proc/net/tcp6", "/proc/net/udp", "/proc/net/udp6"):
    with open(path) as f:
        for line in f.readlines()[1:]:
            if int(line.split()[1].rsplit(":", 1)[1], 16) in ports:
                print("visible", path, line.strip())
for key in ("any", "lo", "v6"):
    with socket.socket() as s:
        s.bind(("127.0.0.1", P[key]))
        s.listen(1)
        print("bound", P[key])
`

// TestConnectToAnotherSandboxesListenerFails guarantees that sandboxes
// share no network: a server in sandbox A (daemon threads in A's Python
// kernel on 0.0.0.0, 127.0.0.1 and [::], TCP and UDP, and on an abstract
// unix socket) answers A itself before and after the attack, while sandbox
// B, connecting to the abstract socket and to those ports on loopback, the
// wildcard addresses, every address A has and every address the host has,
// reaches nothing: A's servers count no connection
// and no datagram from B, B's /proc/net lists none of A's sockets, and B
// can bind the same ports itself. Both sandboxes still serve an Exec.
func TestConnectToAnotherSandboxesListenerFails(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	a, b := d.create(t), d.create(t)
	ports := map[string]any{"any": 7001, "lo": 7002, "v6": 7003, "udp": 7004, "abstract": "sandboxd-e2e-A"}

	wantOK(t, py(t, d, a, pyWith(t, ports, listenInA)))
	selfCheck := func(wantSeen string) []string {
		t.Helper()
		r := py(t, d, a, pyWith(t, ports, selfCheckInA))
		wantOK(t, r)
		if seen, _ := lineWith(r.stdout, "seen "); seen != wantSeen {
			t.Errorf("A's servers saw %q before A's own check, want %q: something else reached them\n%s", seen, wantSeen, r.stdout)
		}
		if n := strings.Count(r.stdout, " from-A\n"); n != 5 {
			t.Fatalf("A cannot reach its own servers (%d of 5 answered): %q %q", n, r.stdout, r.stderr)
		}
		js, _ := lineWith(r.stdout, "addrs ")
		var addrs []string
		if err := json.Unmarshal([]byte(js), &addrs); err != nil {
			t.Fatalf("A's addresses %q: %v", js, err)
		}
		t.Logf("sandbox A:\n%s", r.stdout)
		return addrs
	}
	aAddrs := selfCheck("tcp=0 udp=0")

	targets := union(aAddrs, loopbackTargets, hostAddrs(t))
	r := py(t, d, b, pyWith(t, map[string]any{"ports": ports, "targets": targets}, attackFromB))
	wantDenied(t, "B attacks A", r, 1+4*len(targets))
	if strings.Contains(r.stdout, "visible ") {
		t.Errorf("B's /proc/net lists A's sockets:\n%s", r.stdout)
	}
	if n := strings.Count(r.stdout, "bound "); n != 3 {
		t.Errorf("B could not bind A's ports itself (%d of 3):\n%s", n, r.stdout)
	}

	// A's servers are still up and saw only A's first check: 4 stream
	// connections (3 TCP, 1 unix), 1 datagram.
	selfCheck("tcp=4 udp=1")
	wantServes(t, d, a, b)
}

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

// hostAttack pings (ping sockets, a raw ICMP socket, the ping binary if the
// rootfs has one) the host's addresses and public ones, and connects over
// TCP, UDP and an abstract unix socket to services the test runs on the
// host.
const hostAttack = `
import shutil, subprocess

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff

def echo_request(v6):
    body = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, 0x5b5b, 1) + b"sandboxd-e2e"
    if not v6:  # the kernel fills in the ICMPv6 checksum
        body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
    return body

def ping_socket(host):
    v6 = ":" in host
    with socket.socket(fam(host), socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP) as s:
        s.settimeout(2)
        s.sendto(echo_request(v6), (host, 0))
        return s.recvfrom(128)

def raw_icmp(host):
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.settimeout(2)
        s.sendto(echo_request(False), (host, 0))
        return s.recvfrom(128)

def ping_binary(host):
    p = subprocess.run(["ping", "-c", "1", "-W", "2", host], capture_output=True, text=True, timeout=10)
    if p.returncode != 0:
        raise OSError(0, "ping exited %d" % p.returncode)
    return p.stdout

def unix(name):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect("\0" + name)
        return "connected"

ping = shutil.which("ping")
print("ping binary:", ping)
probes = []
for host in CFG["icmp"]:
    probes.append(("ping-socket " + host, ping_socket, (host,)))
    if ":" not in host:
        probes.append(("raw-icmp " + host, raw_icmp, (host,)))
    if ping:
        probes.append(("ping " + host, ping_binary, (host,)))
for host in CFG["hosts"]:
    probes.append(("tcp %s port %d" % (host, CFG["tcp"]), connect, (host, CFG["tcp"])))
    probes.append(("udp %s port %d" % (host, CFG["udp"]), udp, (host, CFG["udp"])))
probes.append(("unix abstract @" + CFG["abstract"], unix, (CFG["abstract"],)))
attempt_all(probes)
# Not an attack: the sandbox's own loopback, for the record.
try:
    ping_socket("127.0.0.1")
    print("own loopback answers ping")
except OSError as e:
    print("own loopback ping:", e)
`

// hostServices runs a TCP listener and a UDP socket on every host address
// and a listener on an abstract unix socket, and records whatever reaches
// them.
type hostServices struct {
	tcpPort, udpPort int
	abstract         string

	mu   sync.Mutex
	hits []string
}

func startHostServices(t testing.TB) *hostServices {
	t.Helper()
	h := &hostServices{abstract: "sandboxd-e2e-" + randomHex(t, 8)}
	tl, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	uc, err := net.ListenPacket("udp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	ul, err := net.Listen("unix", "@"+h.abstract)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tl.Close(); uc.Close(); ul.Close() })
	h.tcpPort, h.udpPort = tl.Addr().(*net.TCPAddr).Port, uc.LocalAddr().(*net.UDPAddr).Port
	accept := func(l net.Listener) {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			h.hit(fmt.Sprintf("%s connection from %v", l.Addr().Network(), c.RemoteAddr()))
			c.Close()
		}
	}
	go accept(tl)
	go accept(ul)
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := uc.ReadFrom(buf)
			if err != nil {
				return
			}
			h.hit(fmt.Sprintf("udp datagram from %v", from))
		}
	}()
	return h
}

// selfCheck connects to each service from the host and waits until all
// three have seen it.
func (h *hostServices) selfCheck(t testing.TB) {
	t.Helper()
	for _, a := range [][2]string{{"tcp", fmt.Sprintf("127.0.0.1:%d", h.tcpPort)}, {"udp", fmt.Sprintf("127.0.0.1:%d", h.udpPort)}, {"unix", "@" + h.abstract}} {
		c, err := net.DialTimeout(a[0], a[1], 10*time.Second)
		if err != nil {
			t.Fatalf("host service %s %s: %v", a[0], a[1], err)
		}
		c.Write([]byte("host"))
		c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(h.seen()) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("host services saw %v of the host's own 3 connections", h.seen())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *hostServices) hit(what string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hits = append(h.hits, what)
}

func (h *hostServices) seen() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.hits...)
}

// TestPingAndConnectToHostFail guarantees that sandboxed code reaches
// nothing on the host: ICMP echo through unprivileged ping sockets
// (socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP) and its ICMPv6 twin), a raw
// ICMP socket and the ping binary (when the rootfs has one) get no reply
// from the host's addresses or public ones, and TCP, UDP and abstract
// unix socket connections to services the test runs on the host on every
// address fail, with nothing arriving at those services. The daemon then
// still serves.
func TestPingAndConnectToHostFail(t *testing.T) {
	svc := startHostServices(t)
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)
	addrs := hostAddrs(t)
	icmp := union(nonLoopback(addrs), []string{"1.1.1.1", "8.8.8.8", "169.254.169.254", "2606:4700:4700::1111"})
	hosts := union(loopbackTargets, addrs)
	cfg := map[string]any{"icmp": icmp, "hosts": hosts, "tcp": svc.tcpPort, "udp": svc.udpPort, "abstract": svc.abstract}
	// The services are live: the host itself reaches each of them once.
	svc.selfCheck(t)
	r := py(t, d, id, pyWith(t, cfg, hostAttack))
	// Per ICMP target at least a ping socket (and a raw socket for IPv4);
	// per host address TCP and UDP; one abstract socket.
	wantDenied(t, "sandbox attacks the host", r, len(icmp)+2*len(hosts)+1)
	// The same echo request to the sandbox's own loopback is answered: the
	// denials above are the network's, not a malformed probe's.
	if !strings.Contains(r.stdout, "own loopback answers ping") {
		t.Errorf("ping to the sandbox's own loopback got no answer: the ICMP probes prove nothing\n%s", r.stdout)
	}
	time.Sleep(200 * time.Millisecond) // let a stray datagram land
	if hits := svc.seen(); len(hits) != 3 {
		t.Errorf("the sandbox reached the host's services: %v (the first 3 are the host's own check)", hits)
	}
	wantServes(t, d, id)
}

// leakDump collects, inside the sandbox, every readable file and symlink
// target under /proc and /sys (except memory images, per-thread copies and
// non-regular files such as /proc/gvisor/checkpoint, whose read blocks),
// the directory listings of both and of the places the daemon could have
// put files, and the kernel's environment, as JSON.
const leakDump = `
import json, stat
dump = {}
SKIP = {"mem", "pagemap", "kmsg", "kcore", "sysrq-trigger", "clear_refs"}

def read(p):
    try:
        with open(p, "rb") as f:
            dump[p] = f.read(1 << 20).decode("utf-8", "backslashreplace")
    except OSError:
        pass

def link(p):
    try:
        dump[p + " ->"] = os.readlink(p)
    except OSError:
        pass

def walk(top):
    for dp, dns, fns in os.walk(top):
        dump[dp + "/"] = "\n".join(sorted(dns + fns))
        for n in dns + fns:
            if os.path.islink(os.path.join(dp, n)):
                link(os.path.join(dp, n))
        dns[:] = [n for n in dns if n != "task" and not os.path.islink(os.path.join(dp, n))]
        for n in fns:
            p = os.path.join(dp, n)
            try:  # regular files only: /proc/gvisor/checkpoint, a device, blocks
                regular = stat.S_ISREG(os.lstat(p).st_mode)
            except OSError:
                regular = False
            if regular and n not in SKIP:
                read(p)

for p in CFG["must"]:
    read(p)
walk("/proc")
walk("/sys")
for top in ("/", "/.sandboxd", "/dev", "/tmp", "/run", "/var/run", "/workspace", "/home/sandbox"):
    try:
        dump[top + " (ls)"] = "\n".join(sorted(os.listdir(top)))
    except OSError:
        pass
for p in ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/etc/mtab"):
    read(p)
dump["python os.environ"] = json.dumps(dict(os.environ))
dump["python uname"] = " ".join(os.uname())
print(json.dumps(dump))
`

// hostCgroupParent returns the name of the host cgroup that holds sandbox
// id, found under /sys/fs/cgroup (v1 controller or v2), e.g.
// "sandboxd-0123456789".
func hostCgroupParent(t testing.TB, id string) string {
	t.Helper()
	for _, pattern := range []string{"/sys/fs/cgroup/*/sandboxd-*/" + id, "/sys/fs/cgroup/sandboxd-*/" + id} {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			return filepath.Base(filepath.Dir(m[0]))
		}
	}
	t.Fatalf("no host cgroup sandboxd-*/%s under /sys/fs/cgroup", id)
	return ""
}

// TestProcAndSysLeakNoHostDetails guarantees that sandboxed code reading
// everything it can under /proc and /sys (environ, cmdline, mountinfo,
// mounts, cgroup of PID 1 and of itself, every file under /sys/fs/cgroup,
// fd and cwd links), plus its environment in Python and in bash, finds
// nothing of the host: not the daemon's state, socket, rootfs, runsc or
// binaries directories, not /var/cache/sandboxd, not the host cgroup that
// holds the sandbox, not the sandbox's ID, not the host's addresses, and
// not a secret in the daemon's environment. The daemon then still serves.
func TestProcAndSysLeakNoHostDetails(t *testing.T) {
	secretName, secret := "SANDBOXD_E2E_SECRET_"+strings.ToUpper(randomHex(t, 4)), randomHex(t, 16)
	d := startDaemon(t, daemonOpts{env: []string{secretName + "=" + secret}})
	id := d.create(t)

	cwd, _ := os.Getwd()
	needles := map[string]string{
		"the state directory":      d.stateDir,
		"the socket directory":     filepath.Dir(d.socket),
		"the socket":               d.socket,
		"the rootfs":               os.Getenv("SANDBOXD_ROOTFS"),
		"the runsc binary":         os.Getenv("SANDBOXD_RUNSC"),
		"the binaries directory":   bins.dir,
		"the cache directory":      "/var/cache/sandboxd",
		"the host cgroup parent":   hostCgroupParent(t, id),
		"the sandbox ID":           id,
		"the secret's name":        secretName,
		"the secret":               secret,
		"the daemon's working dir": cwd,
	}
	for _, a := range nonLoopback(hostAddrs(t)) {
		needles["host address "+a] = a
	}
	for what, needle := range needles {
		if needle == "" {
			t.Fatalf("no value for %s", what)
		}
	}
	if h, err := os.Hostname(); err == nil && len(h) >= 6 && h != "sandbox" && h != "localhost" {
		needles["the host name"] = h
	}

	must := []string{"/proc/1/environ", "/proc/self/environ", "/proc/self/mountinfo", "/proc/mounts",
		"/proc/self/cgroup", "/proc/1/cgroup", "/proc/1/cmdline", "/proc/self/cmdline"}
	canary := "canary-" + randomHex(t, 8)
	r, err := d.tryRun(ctx(t), id, &sandboxv1.ExecRequest{
		Language: sandboxv1.Language_LANGUAGE_PYTHON, Timeout: durationpb.New(time.Minute),
		Env:  map[string]string{"LEAK_CANARY": canary},
		Code: pyWith(t, map[string]any{"must": must}, leakDump),
	})
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, r)
	dump := map[string]string{}
	if err := json.Unmarshal([]byte(r.stdout), &dump); err != nil {
		t.Fatalf("dump: %v\n%.2000s", err, r.stdout)
	}
	bashOut := sh(t, d, id, `env; echo; tr '\0' '\n' </proc/$$/environ; echo; tr '\0' ' ' </proc/$$/cmdline; echo; cat /proc/$$/cgroup /proc/$$/mountinfo; uname -a; hostname`)
	wantOK(t, bashOut)
	dump["bash env, environ, cmdline, cgroup, mountinfo, uname"] = bashOut.stdout

	// The dump must hold what the attack is about, or it proves nothing.
	// (/proc/1/environ may be unreadable: the agent, PID 1, can make itself
	// non-dumpable.)
	for _, p := range []string{"/proc/self/environ", "/proc/1/cmdline", "/proc/self/mountinfo", "/proc/mounts", "/proc/self/cgroup", "/proc/1/cgroup"} {
		if dump[p] == "" {
			t.Errorf("%s is empty or unreadable inside: the leak check would be vacuous", p)
		}
	}
	if _, ok := dump["/sys/fs/cgroup/"]; !ok {
		t.Errorf("/sys/fs/cgroup was not listed")
	}
	var files int
	for k := range dump {
		if strings.HasPrefix(k, "/proc/") && !strings.HasSuffix(k, "/") && !strings.HasSuffix(k, " ->") {
			files++
		}
	}
	if files < 100 {
		t.Errorf("only %d files read under /proc", files)
	}
	t.Logf("read %d entries (%d files under /proc); /proc/1/environ %q, /proc/1/cmdline %q, /proc/self/cgroup %q, /sys/fs/cgroup: %q",
		len(dump), files, dump["/proc/1/environ"], dump["/proc/1/cmdline"], dump["/proc/self/cgroup"], dump["/sys/fs/cgroup/"])
	t.Logf("/proc/self/mountinfo:\n%s", dump["/proc/self/mountinfo"])
	t.Logf("/proc/gvisor/: %q, spec_environ: %q", dump["/proc/gvisor/"], dump["/proc/gvisor/spec_environ"])

	// The search finds what is there: the canary given to this Exec.
	if found := leaks(dump, map[string]string{"the canary": canary}); len(found) == 0 {
		t.Errorf("the Exec's canary %q was not found in the dump: the search is broken", canary)
	}
	for _, leak := range leaks(dump, needles) {
		t.Error(leak)
	}
	wantServes(t, d, id)
}

// leaks returns where in dump (path names or contents) each needle occurs.
func leaks(dump, needles map[string]string) []string {
	keys := make([]string, 0, len(dump))
	for k := range dump {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var found []string
	for what, needle := range needles {
		for _, k := range keys {
			v := dump[k]
			if i := strings.Index(v, needle); i >= 0 {
				found = append(found, fmt.Sprintf("%s (%q) leaks in %s: ...%s...", what, needle, k, v[max(0, i-80):min(len(v), i+len(needle)+80)]))
			} else if strings.Contains(k, needle) {
				found = append(found, fmt.Sprintf("%s (%q) leaks in a path name: %s", what, needle, k))
			}
		}
	}
	return found
}
