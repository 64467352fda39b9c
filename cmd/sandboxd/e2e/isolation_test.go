package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strings"
	"testing"
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
