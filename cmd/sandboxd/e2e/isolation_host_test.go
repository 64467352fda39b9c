package e2e

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

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
