package egress

import (
	"net/netip"
	"strings"
	"testing"
)

// addrs parses addresses for test tables.
func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

// TestCheck guarantees step 1: a name must match a host or wildcard
// entry with the port, an IP literal (in any accepted spelling) a CIDR
// entry with the port; anything that is neither a valid name nor an
// address is refused before it could be resolved.
func TestCheck(t *testing.T) {
	l := mustList(t, "api.example.com", "*.pypi.org:443", "10.0.0.0/8:5432", "127.0.0.2/32:443", "[fd00::/8]:443", "*.example:8080")
	for _, tc := range []struct {
		host     string
		port     uint16
		allowed  bool
		wantHost string // Decision.Host
		frag     string // in Reason
	}{
		{"api.example.com", 443, true, "api.example.com", `allowed by "api.example.com"`},
		{"API.Example.com.", 80, true, "api.example.com", "allowed"},
		{"api.example.com", 22, false, "api.example.com", "allowed on port 80, 443 only, not 22"},
		{"files.pypi.org", 443, true, "files.pypi.org", `allowed by "*.pypi.org:443"`},
		{"pypi.org", 443, false, "pypi.org", "no entry allows pypi.org"},
		{"evilpypi.org", 443, false, "evilpypi.org", "no entry"},
		{"anything.example", 8080, true, "anything.example", `"*.example:8080"`},
		{"10.1.2.3", 5432, true, "10.1.2.3", `"10.0.0.0/8:5432"`},
		{"10.1.2.3", 8080, false, "10.1.2.3", "allowed on port 5432 only, not 8080"},
		{"93.184.216.34", 443, false, "93.184.216.34", "host names and * never do"},
		{"127.0.0.2", 443, true, "127.0.0.2", "allowed"},
		{"::ffff:127.0.0.2", 443, true, "127.0.0.2", "allowed"},
		{"[::ffff:127.0.0.2]", 443, true, "127.0.0.2", "allowed"},
		{"127.0.0.3", 443, false, "127.0.0.3", "no CIDR entry holds 127.0.0.3"},
		{"[127.0.0.2]", 443, false, "[127.0.0.2]", "brackets around an IPv4 address"},
		{"fd00::1", 443, true, "fd00::1", "allowed"},
		{"[fd00::1]", 443, true, "fd00::1", "allowed"},
		{"[fd00::1", 443, false, "[fd00::1", "without ']'"},
		{"[api.example.com]", 443, false, "[api.example.com]", "not an IPv6 address"},
		{"fe80::1%eth0", 8080, false, "fe80::1%eth0", "zone"},
		{"", 443, false, "", "empty host name"},
		{"api.example.com", 0, false, "api.example.com", "port 0"},
		{"api_x.example.com", 8080, false, "api_x.example.com", `"_"`},
		{strings.Repeat("a", 300), 8080, false, strings.Repeat("a", 300), "longer than a DNS name"},
	} {
		d := l.Check(tc.host, tc.port)
		if d.Allowed != tc.allowed || d.Host != tc.wantHost || !strings.Contains(d.Reason, tc.frag) {
			t.Errorf("Check(%q, %d) = %+v; want allowed %v, host %q, reason containing %q", tc.host, tc.port, d, tc.allowed, tc.wantHost, tc.frag)
		}
		if d.Allowed == (d.Rule == "") {
			t.Errorf("Check(%q, %d): Rule %q must be set exactly when allowed", tc.host, tc.port, d.Rule)
		}
	}
}

// TestCheckResolved guarantees step 2 and the whole decision: the first
// address is the one to dial (unmapped), a literal is judged as its own
// address whatever addrs say, and a name that resolves to nothing is
// refused.
func TestCheckResolved(t *testing.T) {
	l := mustList(t, "*", "api.example.com:443", "127.0.0.2/32:443", "10.0.0.0/8", "fd00::/8", "::/0")
	own := addrs("203.0.113.5", "127.0.0.1", "10.0.0.5")
	for _, tc := range []struct {
		name    string
		host    string
		port    uint16
		addrs   []netip.Addr
		allowed bool
		addr    string // Decision.Addr, "" for none
		frag    string
	}{
		{"first address dialed, unmapped", "api.example.com", 443, addrs("::ffff:93.184.216.34", "2606:2800:220:1::1"), true, "93.184.216.34:443", `allowed by "*"`},
		{"zone dropped", "api.example.com", 443, addrs("2606:2800:220:1::1%eth0"), true, "[2606:2800:220:1::1]:443", "allowed"},
		{"no addresses", "api.example.com", 443, nil, false, "", "resolves to no address"},
		{"literal ignores addrs", "127.0.0.2", 443, addrs("93.184.216.34"), true, "127.0.0.2:443", "allowed"},
		{"unlocking entry's port only", "127.0.0.2", 80, nil, false, "127.0.0.2:80", "allowed on port 443 only"},
		{"private CIDR unlocks its addresses", "10.0.0.1", 80, nil, true, "10.0.0.1:80", "allowed"},
		{"name into an unlocked private range", "db.example", 443, addrs("10.9.9.9"), true, "10.9.9.9:443", "allowed"},
		{"unique-local unlocked by fd00::/8", "fd00::1", 443, nil, true, "[fd00::1]:443", "allowed"},
		{"IPv4-mapped private unlocked as IPv4", "db.example", 80, addrs("::ffff:10.0.0.1"), true, "10.0.0.1:80", "allowed"},
		{"NAT64 of a public address", "64:ff9b::808:808", 443, nil, true, "[64:ff9b::808:808]:443", "allowed"},
		{"documentation range stays allowed", "x.example", 443, addrs("192.0.2.1"), true, "192.0.2.1:443", "allowed"},
		{"own address inside an unlocked range follows the range", "10.0.0.5", 80, nil, true, "10.0.0.5:80", "allowed"},
		{"other loopback refused", "x.example", 443, addrs("127.0.0.3"), false, "127.0.0.3:443", "loopback (127.0.0.0/8)"},
		{"catch-all does not unlock ::1", "::1", 443, nil, false, "[::1]:443", "only a CIDR entry within ::1/128 for port 443"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := l.CheckResolved(tc.host, tc.port, tc.addrs, own)
			if d.Allowed != tc.allowed || !strings.Contains(d.Reason, tc.frag) {
				t.Fatalf("got %+v; want allowed %v and a reason containing %q", d, tc.allowed, tc.frag)
			}
			if got := addrString(d.Addr); got != tc.addr {
				t.Errorf("Addr = %s, want %q", got, tc.addr)
			}
		})
	}
}

// addrString is a.String(), or "" for the zero AddrPort.
func addrString(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// TestDNSRebindingRefused guarantees that a listed name resolving to a
// refused address is refused, even alongside public addresses and even
// when another loopback address is unlocked: the name cannot carry the
// client to an address the list does not open.
func TestDNSRebindingRefused(t *testing.T) {
	l := mustList(t, "svc.test", "127.0.0.2/32:443")
	for _, resolved := range [][]netip.Addr{
		addrs("127.0.0.3"),
		addrs("93.184.216.34", "127.0.0.3"),
		addrs("127.0.0.2", "127.0.0.3"),
		addrs("93.184.216.34", "169.254.169.254"),
	} {
		d := l.CheckResolved("svc.test", 443, resolved, nil)
		if d.Allowed || !strings.Contains(d.Reason, "svc.test resolves to") || !strings.Contains(d.Reason, "DNS rebinding") {
			t.Errorf("svc.test -> %v: got %+v, want a refusal naming the rebinding", resolved, d)
		}
	}
	if d := l.CheckResolved("svc.test", 443, addrs("127.0.0.2"), nil); !d.Allowed {
		t.Errorf("svc.test -> 127.0.0.2 with 127.0.0.2/32:443 listed: %+v, want allowed", d)
	}
}

// TestRefusedAddressesStayRefusedWithCatchAlls guarantees that the
// metadata service, loopback, private, CGNAT, link-local, multicast,
// broadcast, unique-local and site-local addresses (and their
// IPv4-mapped, NAT64 and 6to4 forms) cannot be reached with "*",
// 0.0.0.0/0 or ::/0: neither as literals nor as what a name resolves to.
func TestRefusedAddressesStayRefusedWithCatchAlls(t *testing.T) {
	l := mustList(t, "*", "0.0.0.0/0", "::/0")
	for _, a := range []string{
		"169.254.169.254", "10.0.0.1", "127.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1", "100.64.0.1",
		"0.0.0.0", "0.1.2.3", "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1",
		"::1", "::", "fe80::1", "fd00::1", "fc00::1", "fec0::1", "ff02::1", "::7f00:1",
		"::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1",
		"2002:a00:1::1", "2002:7f00:1::1", "64:ff9b:1::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
	} {
		if d := l.CheckResolved(a, 80, nil, nil); d.Allowed {
			t.Errorf("literal %s allowed: %+v", a, d)
		}
		if d := l.CheckResolved("innocent.example", 80, addrs(a), nil); d.Allowed {
			t.Errorf("name resolving to %s allowed: %+v", a, d)
		}
	}
}

// TestRefusedRangeUnlockedOnlyFromInside guarantees that a refused
// address opens only to a CIDR entry lying inside its refused range, with
// the port: 127.0.0.2/32 opens 127.0.0.2 and nothing else, 10.0.0.0/8
// opens 10.0.0.1, and entries reaching outside the range open nothing.
func TestRefusedRangeUnlockedOnlyFromInside(t *testing.T) {
	for _, tc := range []struct {
		entry, addr string
		port        uint16
		allowed     bool
	}{
		{"127.0.0.2/32:443", "127.0.0.2", 443, true},
		{"127.0.0.2/32:443", "127.0.0.2", 80, false},
		{"127.0.0.0/8", "127.0.0.2", 443, true},
		{"126.0.0.0/7", "127.0.0.2", 443, false},
		{"10.0.0.0/8", "10.0.0.1", 80, true},
		{"10.0.0.0/7", "10.0.0.1", 80, false},
		{"0.0.0.0/0", "10.0.0.1", 80, false},
		{"169.254.0.0/16", "169.254.169.254", 80, true},
		{"169.254.169.254/32", "169.254.169.254", 80, true},
		{"169.0.0.0/8", "169.254.169.254", 80, false},
		{"::1/128", "::1", 443, true},
		{"::/96", "::1", 443, false},
		{"::/0", "::1", 443, false},
		{"fc00::/7", "fd00::1", 443, true},
		{"fd00::/8", "fd00::1", 443, true},
		{"fc00::/6", "fd00::1", 443, false},
		{"240.0.0.0/4", "255.255.255.255", 80, false},
		{"255.255.255.255/32", "255.255.255.255", 80, true},
		{"64:ff9b::/96", "64:ff9b::a9fe:a9fe", 80, false},
	} {
		l := mustList(t, tc.entry)
		if d := l.CheckResolved(tc.addr, tc.port, nil, nil); d.Allowed != tc.allowed {
			t.Errorf("%s with %s on port %d: %+v, want allowed %v", tc.addr, tc.entry, tc.port, d, tc.allowed)
		}
	}
}

// TestDaemonOwnAddressRefused guarantees that the daemon's own public
// address, reached by name or literal, is refused unless an entry names
// exactly it, so sandboxed code cannot reach the daemon's API or other
// host services through a wildcard or a wide CIDR.
func TestDaemonOwnAddressRefused(t *testing.T) {
	own := addrs("203.0.113.5", "2001:db8::5")
	for _, tc := range []struct {
		entries    []string
		host       string
		resolved   []netip.Addr
		allowed    bool
		reasonFrag string
	}{
		{[]string{"*"}, "host.example", addrs("203.0.113.5"), false, "daemon's own"},
		{[]string{"*"}, "host.example", addrs("::ffff:203.0.113.5"), false, "daemon's own"},
		{[]string{"*"}, "host.example", addrs("2001:db8::5"), false, "daemon's own"},
		{[]string{"203.0.113.0/24"}, "203.0.113.5", nil, false, "only a CIDR entry within 203.0.113.5/32"},
		{[]string{"0.0.0.0/0"}, "203.0.113.5", nil, false, "daemon's own"},
		{[]string{"::/0"}, "64:ff9b::cb00:7105", nil, false, "embeds 203.0.113.5"},
		{[]string{"203.0.113.5/32"}, "203.0.113.5", nil, true, "allowed"},
		{[]string{"203.0.113.0/24"}, "203.0.113.6", nil, true, "allowed"},
	} {
		d := mustList(t, tc.entries...).CheckResolved(tc.host, 443, tc.resolved, own)
		if d.Allowed != tc.allowed || !strings.Contains(d.Reason, tc.reasonFrag) {
			t.Errorf("%v %s -> %v: %+v; want allowed %v, reason containing %q", tc.entries, tc.host, tc.resolved, d, tc.allowed, tc.reasonFrag)
		}
	}
}

// TestNumericHostNeverResolved guarantees that hosts which some resolvers
// read as IPv4 addresses (inet_aton's short, decimal, octal and hex
// forms) are refused at step 1, so they never reach a resolver that could
// turn them into 127.0.0.1.
func TestNumericHostNeverResolved(t *testing.T) {
	l := mustList(t, "*")
	for _, h := range []string{"2130706433", "0x7f000001", "127.1", "017700000001", "0x7f.0.0.1", "127.0.0.01", "1.2.3.4.5"} {
		if d := l.Check(h, 80); d.Allowed {
			t.Errorf("Check(%q) allowed: %+v", h, d)
		}
	}
}
