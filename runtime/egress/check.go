package egress

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Decision is what egress decided about one connection, with what a log
// line needs.
type Decision struct {
	// Allowed says whether the connection may proceed.
	Allowed bool
	// Reason says why, for logs and for the client's 403: the entry that
	// allowed it, or what refused it.
	Reason string
	// Host is the destination the client named, normalized: a lowercase
	// name without trailing dot, or an address. A name that failed to
	// parse is quoted as given, cut short.
	Host string
	// Rule is the canonical entry that allowed the connection; empty when
	// it was refused.
	Rule string
	// Addr is the address to dial once Allowed (the first of the name's
	// addresses, or the literal), or the address that was refused; zero
	// when no address was reached.
	Addr netip.AddrPort
}

// target is a parsed destination: a host name or an address.
type target struct {
	name string
	ip   netip.Addr
}

// parseTarget parses the host a client named: an IP literal (IPv6 in
// brackets or not, IPv4-mapped ones unmapped) or a DNS name, normalized.
// It says what is wrong with anything else.
func parseTarget(host string) (target, string) {
	// An IPv6 literal in brackets is at most 47 bytes, a name with its
	// trailing dot maxNameLen+1.
	if len(host) > maxNameLen+1 {
		return target{}, fmt.Sprintf("is %d bytes long, longer than a DNS name can be (%d)", len(host), maxNameLen)
	}
	h, bracketed := host, false
	if inner, ok := strings.CutPrefix(host, "["); ok {
		if h, ok = strings.CutSuffix(inner, "]"); !ok {
			return target{}, "has '[' without ']'"
		}
		bracketed = true
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Zone() != "" {
			return target{}, "has an IPv6 zone, which egress does not take"
		}
		if bracketed && !a.Is6() {
			return target{}, "has brackets around an IPv4 address"
		}
		return target{ip: a.Unmap()}, ""
	}
	if bracketed {
		return target{}, "has brackets around something that is not an IPv6 address"
	}
	name, problem := normalizeName(h)
	if problem != "" {
		return target{}, problem
	}
	return target{name: name}, ""
}

// Check is step 1 of a decision: whether l allows the destination as the
// client named it, before any name is resolved. A host name must match a
// host or wildcard entry that allows port; an IP literal (bracketed or
// not, IPv4-mapped ones unmapped) must lie in a CIDR entry that allows
// port, and * never matches one. For a literal the Decision's Addr is
// set. Step 2, CheckResolved, must follow: an allowed literal may still be
// a refused address.
func (l List) Check(host string, port uint16) Decision {
	t, problem := parseTarget(host)
	if problem != "" {
		return Decision{Host: clip(host), Reason: fmt.Sprintf("host %q %s", clip(host), problem)}
	}
	d := Decision{Host: t.name}
	if t.ip.IsValid() {
		d.Host, d.Addr = t.ip.String(), netip.AddrPortFrom(t.ip, port)
	}
	if port == 0 {
		d.Reason = "port 0 cannot be dialed"
		return d
	}
	matches := func(r Rule) bool { return r.matchesName(t.name) }
	if t.ip.IsValid() {
		matches = func(r Rule) bool { return r.kind == kindCIDR && r.prefix.Contains(t.ip) }
	}
	if i := slices.IndexFunc(l, func(r Rule) bool { return matches(r) && r.allows(port) }); i >= 0 {
		d.Allowed, d.Rule = true, l[i].String()
		d.Reason = fmt.Sprintf("allowed by %q", d.Rule)
		return d
	}
	var ports []string
	for _, r := range l {
		if matches(r) {
			for _, p := range r.ports {
				ports = append(ports, strconv.Itoa(int(p)))
			}
		}
	}
	switch {
	case len(ports) > 0:
		d.Reason = fmt.Sprintf("%s is allowed on port %s only, not %d", d.Host, strings.Join(ports, ", "), port)
	case t.ip.IsValid():
		d.Reason = fmt.Sprintf("no CIDR entry holds %s (an IP address must match a CIDR entry; host names and * never do)", d.Host)
	default:
		d.Reason = fmt.Sprintf("no entry allows %s", d.Host)
	}
	return d
}

// CheckResolved is the whole decision, both steps: Check, then every
// address of the destination is checked. For a name, addrs are what it
// resolved to on the host; for an IP literal addrs are ignored, the
// literal being the address. own are the daemon's own addresses.
//
// An address in a refused range (loopback, link-local, private, CGNAT,
// multicast, unique-local, ...) is allowed only by a CIDR entry for port
// that lies inside that range and holds it; one of own outside those
// ranges only by the single-address entry naming it; one that embeds a
// refused IPv4 address (NAT64, 6to4) never. If any address of a name is
// refused, the name is refused (DNS rebinding). Allowed, the Decision's
// Addr is the first address: the one to dial, never re-resolved.
func (l List) CheckResolved(host string, port uint16, addrs, own []netip.Addr) Decision {
	d := l.Check(host, port)
	if !d.Allowed {
		return d
	}
	literal := d.Addr.IsValid()
	if literal {
		addrs = []netip.Addr{d.Addr.Addr()}
	}
	if len(addrs) == 0 {
		return refuse(d, netip.AddrPort{}, fmt.Sprintf("%s resolves to no address", d.Host))
	}
	own = normalize(own)
	for i, a := range normalize(addrs) {
		if why := l.refusal(a, port, own); why != "" {
			if literal {
				return refuse(d, netip.AddrPortFrom(a, port), fmt.Sprintf("%s %s", a, why))
			}
			return refuse(d, netip.AddrPortFrom(a, port), fmt.Sprintf(
				"%s resolves to %s, which %s; a name with a refused address is refused whatever its other addresses (DNS rebinding)", d.Host, a, why))
		}
		if i == 0 {
			d.Addr = netip.AddrPortFrom(a, port)
		}
	}
	return d
}

// refuse turns an allowed Decision into a refusal of addr for why.
func refuse(d Decision, addr netip.AddrPort, why string) Decision {
	d.Allowed, d.Rule, d.Addr, d.Reason = false, "", addr, why
	return d
}

// normalize returns addrs unmapped and without zones, so that each is
// judged, and dialed, as the address it is.
func normalize(addrs []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, len(addrs))
	for i, a := range addrs {
		out[i] = a.WithZone("").Unmap()
	}
	return out
}
