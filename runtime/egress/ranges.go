package egress

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// refusedRange is a block of addresses that egress never reaches unless a
// CIDR rule inside the block names them.
type refusedRange struct {
	prefix netip.Prefix
	// what names the class for messages.
	what string
}

// refusedRanges are the address blocks that lead to the host, its
// networks or nowhere useful. Documentation ranges (192.0.2.0/24,
// 2001:db8::/32, ...) stay reachable: nothing routes them. Sorted
// most-specific first, so the first match is the smallest block holding
// an address. IPv4-mapped IPv6 addresses are unmapped before they are
// looked up; NAT64 and 6to4 addresses are judged by the IPv4 address they
// embed (see embeddedIPv4).
var refusedRanges = sortedRanges([]refusedRange{
	{netip.MustParsePrefix("0.0.0.0/32"), "the unspecified address"},
	{netip.MustParsePrefix("0.0.0.0/8"), `in "this network" (0.0.0.0/8)`},
	{netip.MustParsePrefix("10.0.0.0/8"), "private (10.0.0.0/8)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT space (100.64.0.0/10)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback (127.0.0.0/8)"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local (169.254.0.0/16, where cloud metadata services answer)"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private (172.16.0.0/12)"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private (192.168.0.0/16)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast (224.0.0.0/4)"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved (240.0.0.0/4)"},
	{netip.MustParsePrefix("255.255.255.255/32"), "the broadcast address"},
	{netip.MustParsePrefix("::/128"), "the unspecified address"},
	{netip.MustParsePrefix("::1/128"), "loopback (::1)"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible (::/96, deprecated)"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64 (64:ff9b:1::/48)"},
	{netip.MustParsePrefix("2001::/32"), "Teredo (2001::/32)"},
	{netip.MustParsePrefix("fc00::/7"), "unique-local, IPv6's private range (fc00::/7)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local (fe80::/10)"},
	{netip.MustParsePrefix("fec0::/10"), "site-local (fec0::/10, deprecated)"},
	{netip.MustParsePrefix("ff00::/8"), "multicast (ff00::/8)"},
})

// Prefixes whose addresses embed an IPv4 address.
var (
	// nat64 is the well-known NAT64 prefix (RFC 6052): the IPv4 address is
	// the last 32 bits.
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
	// sixToFour is 6to4 (RFC 3056): the IPv4 address is bits 16 to 47.
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// sortedRanges sorts ranges most-specific first.
func sortedRanges(rs []refusedRange) []refusedRange {
	slices.SortStableFunc(rs, func(a, b refusedRange) int { return b.prefix.Bits() - a.prefix.Bits() })
	return rs
}

// rangeOf returns the smallest refused range holding a (unmapped).
func rangeOf(a netip.Addr) (refusedRange, bool) {
	for _, r := range refusedRanges {
		if r.prefix.Contains(a) {
			return r, true
		}
	}
	return refusedRange{}, false
}

// smallestRangeHolding returns the smallest refused range that holds all
// of p.
func smallestRangeHolding(p netip.Prefix) (refusedRange, bool) {
	for _, r := range refusedRanges {
		if prefixInside(p, r.prefix) {
			return r, true
		}
	}
	return refusedRange{}, false
}

// embeddedIPv4 returns the IPv4 address a NAT64 or 6to4 address embeds.
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	b := a.As16()
	switch {
	case nat64.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

// refusal says why egress may not reach address a (unmapped, without a
// zone) on port under list l, or returns "" if it may. An address in a
// refused range is allowed only by a CIDR rule for port that lies inside
// that range (the smallest one holding a) and contains a; one of the
// daemon's own addresses (own) outside those ranges only by the rule
// naming exactly it; an address embedding a refused or own IPv4 address
// (NAT64, 6to4) never.
func (l List) refusal(a netip.Addr, port uint16, own []netip.Addr) string {
	if v4, ok := embeddedIPv4(a); ok {
		if why := classOf(v4, own); why != "" {
			return fmt.Sprintf("embeds %s, which is %s; an address that embeds a refused one is never allowed", v4, why)
		}
	}
	rng, special := rangeOf(a)
	isOwn := slices.Contains(own, a)
	if !special && !isOwn {
		return ""
	}
	// The rule must lie within the block that makes a refused: its range,
	// or a itself when it is refused only for being the daemon's.
	block := netip.PrefixFrom(a, a.BitLen())
	why := "one of the daemon's own addresses"
	if special {
		block, why = rng.prefix, rng.what
	}
	if slices.ContainsFunc(l, func(r Rule) bool {
		return r.kind == kindCIDR && r.allows(port) && r.prefix.Contains(a) && prefixInside(r.prefix, block)
	}) {
		return ""
	}
	return fmt.Sprintf("is %s; only a CIDR entry within %s for port %d allows it", why, block, port)
}

// classOf names the refused class of a (range or own address), or
// returns "" if it has none.
func classOf(a netip.Addr, own []netip.Addr) string {
	if rng, ok := rangeOf(a); ok {
		return rng.what
	}
	if slices.Contains(own, a) {
		return "one of the daemon's own addresses"
	}
	return ""
}

// HostAddrs returns the addresses of the host's network interfaces
// (unmapped, without zones): the daemon's own addresses, which egress
// refuses unless an entry names them.
func HostAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing the host's addresses: %w", err)
	}
	own := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				own = append(own, ip.Unmap())
			}
		}
	}
	return own, nil
}
