package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

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
