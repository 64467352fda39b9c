package egress

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/sandboxd/sandboxd/runtime/errdefs"
)

const (
	// MaxRules bounds an allowlist: 256 entries cover any hand-written list
	// (wildcards and CIDRs cover families of hosts), while every decision
	// scans the list and the list travels in each Sandbox message, so it
	// must stay small.
	MaxRules = 256

	// maxEntryLen bounds one entry's text: the longest DNS name (253
	// bytes) with a "*." prefix and maxPorts five-digit ports fits; more
	// is junk, and messages quote the entry.
	maxEntryLen = 512

	// maxPorts bounds the ports of one entry: a service rarely listens on
	// more than a handful, and a longer list is better split or widened.
	maxPorts = 32

	// maxQuoted is how much of an offending entry or host an error message
	// quotes, so a hostile or broken one cannot flood logs and replies.
	maxQuoted = 300
)

// maxNameLen is the longest DNS name, as text without the trailing dot
// (RFC 1035: 255 octets on the wire).
const maxNameLen = 253

// maxLabelLen is the longest label of a DNS name (RFC 1035).
const maxLabelLen = 63

// defaultPorts are the ports of an entry that names none: plain HTTP and
// HTTPS, what an HTTP proxy client asks for.
var defaultPorts = []uint16{80, 443}

// kind is what a rule's destination is.
type kind uint8

const (
	kindHost   kind = iota // an exact host name
	kindSuffix             // *.domain: strict subdomains of domain
	kindAny                // *: any host name
	kindCIDR               // an address prefix
)

// Rule is one allowlist entry: a destination and its ports. Only rules
// from ParseRule are meaningful; the zero Rule matches nothing.
type Rule struct {
	kind kind
	// name is the host (kindHost) or the domain after "*." (kindSuffix),
	// lowercase, without a trailing dot.
	name string
	// prefix is the masked prefix of a kindCIDR rule, never IPv4-mapped.
	prefix netip.Prefix
	// ports are sorted and distinct.
	ports []uint16
}

// EntryError says what is wrong with one allowlist entry. It wraps
// errdefs.ErrInvalidArgument.
type EntryError struct {
	// Entry is the entry as written, cut to a few hundred bytes.
	Entry string
	// Problem says what is wrong and what to write instead, as a phrase
	// that follows the quoted entry ("has an empty label").
	Problem string
}

// Error returns `egress entry "ENTRY" PROBLEM`.
func (e *EntryError) Error() string {
	return fmt.Sprintf("egress entry %q %s", e.Entry, e.Problem)
}

// Unwrap classifies the error as invalid argument.
func (e *EntryError) Unwrap() error { return errdefs.ErrInvalidArgument }

// ParseRule parses one entry: DEST or DEST:PORTS, where DEST is a host
// name (lowercased, one trailing dot dropped), *.DOMAIN, * or a CIDR
// (IPv6 ones with ports in brackets: [fd00::/8]:443), and PORTS is one
// port or several separated by commas, each 1 to 65535. No PORTS means 80
// and 443. A bare IP address is refused: write its /32 or /128. Errors
// are *EntryError.
func ParseRule(s string) (Rule, error) {
	bad := func(format string, args ...any) (Rule, error) {
		return Rule{}, &EntryError{Entry: clip(s), Problem: fmt.Sprintf(format, args...)}
	}
	switch {
	case s == "":
		return bad("is empty: write a host name, *.domain, * or a CIDR")
	case len(s) > maxEntryLen:
		return bad("is %d bytes long, more than an entry can be (%d)", len(s), maxEntryLen)
	case strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0:
		return bad("contains a space or a control character")
	}
	dest, portList, bracketed, problem := splitEntry(s)
	if problem != "" {
		return bad("%s", problem)
	}
	r := Rule{ports: defaultPorts}
	if portList != nil {
		ports, problem := parsePorts(*portList)
		if problem != "" {
			return bad("%s", problem)
		}
		r.ports = ports
	}
	if problem := r.parseDest(dest); problem != "" {
		return bad("%s", problem)
	}
	if bracketed && (r.kind != kindCIDR || !r.prefix.Addr().Is6()) {
		return bad("has brackets, which are only for an IPv6 CIDR with ports, e.g. [fd00::/8]:443")
	}
	return r, nil
}

// splitEntry splits an entry into its destination and, if present, its
// port list. An entry with several colons and no brackets is an IPv6 CIDR
// without ports.
func splitEntry(s string) (dest string, ports *string, bracketed bool, problem string) {
	if rest, ok := strings.CutPrefix(s, "["); ok {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return "", nil, false, "has '[' without ']'"
		}
		dest, after := rest[:end], rest[end+1:]
		switch {
		case after == "":
			return dest, nil, true, ""
		case after[0] == ':':
			p := after[1:]
			return dest, &p, true, ""
		default:
			return "", nil, false, fmt.Sprintf("has %q after ']': write [CIDR]:PORTS, e.g. [fd00::/8]:443", after)
		}
	}
	if strings.Count(s, ":") != 1 {
		return s, nil, false, ""
	}
	dest, p, _ := strings.Cut(s, ":")
	return dest, &p, false, ""
}

// parsePorts parses a comma-separated port list into sorted distinct
// ports, or says what is wrong with it.
func parsePorts(s string) ([]uint16, string) {
	if s == "" {
		return nil, "has no ports after ':': write e.g. example.com:443 or example.com:443,8443"
	}
	fields := strings.Split(s, ",")
	if len(fields) > maxPorts {
		return nil, fmt.Sprintf("lists %d ports, more than %d: split the entry or use fewer ports", len(fields), maxPorts)
	}
	ports := make([]uint16, 0, len(fields))
	for _, f := range fields {
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 || strings.HasPrefix(f, "+") {
			return nil, fmt.Sprintf("has port %q: a port is a number from 1 to 65535", clip(f))
		}
		if slices.Contains(ports, uint16(n)) {
			return nil, fmt.Sprintf("lists port %d twice", n)
		}
		ports = append(ports, uint16(n))
	}
	slices.Sort(ports)
	return ports, ""
}

// parseDest fills in r's destination from dest, or says what is wrong.
func (r *Rule) parseDest(dest string) string {
	switch {
	case dest == "*":
		r.kind = kindAny
		return ""
	case strings.HasPrefix(dest, "*.") && !strings.Contains(dest[2:], "*"):
		name, problem := normalizeName(dest[2:])
		if problem != "" {
			return problem
		}
		r.kind, r.name = kindSuffix, name
		return ""
	case strings.Contains(dest, "*"):
		return "has a '*' that is not a whole first label: write *.example.com for the subdomains of example.com, or * alone for any host name"
	case strings.Contains(dest, "/"):
		return r.parseCIDR(dest)
	}
	if a, err := netip.ParseAddr(dest); err == nil {
		a = a.WithZone("").Unmap()
		return fmt.Sprintf("is an address, not a CIDR: write %s for that one address", netip.PrefixFrom(a, a.BitLen()))
	}
	if strings.Contains(dest, ":") {
		return "is neither a host name nor a CIDR (an IPv6 CIDR with ports goes in brackets: [fd00::/8]:443)"
	}
	name, problem := normalizeName(dest)
	if problem != "" {
		return problem
	}
	r.kind, r.name = kindHost, name
	return ""
}

// parseCIDR fills in r's prefix from dest, or says what is wrong.
func (r *Rule) parseCIDR(dest string) string {
	p, err := netip.ParsePrefix(dest)
	if err != nil {
		return "is not a CIDR such as 10.0.0.0/8 or fd00::/8"
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return "is an IPv4-mapped IPv6 CIDR wider than ::ffff:0:0/96: write the IPv4 CIDR"
		}
		return fmt.Sprintf("is an IPv4-mapped IPv6 CIDR: write %s", netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked())
	}
	if m := p.Masked(); m != p {
		return fmt.Sprintf("has address bits set past /%d: write %s", p.Bits(), m)
	}
	r.kind, r.prefix = kindCIDR, p
	return ""
}

// normalizeName lowercases a DNS host name and drops one trailing dot, or
// says why s is not a host name: labels of 1 to 63 letters, digits and
// hyphens, not starting or ending with a hyphen, at most maxNameLen bytes
// in all, and a last label that is not a number (resolvers may read
// "127.1" or "2130706433" as an IPv4 address).
func normalizeName(s string) (string, string) {
	name := strings.ToLower(strings.TrimSuffix(s, "."))
	switch {
	case name == "":
		return "", "has an empty host name"
	case len(name) > maxNameLen:
		return "", fmt.Sprintf("has a host name of %d bytes, longer than a DNS name can be (%d)", len(name), maxNameLen)
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		switch {
		case l == "":
			return "", "has an empty label (two dots in a row, or a leading dot)"
		case len(l) > maxLabelLen:
			return "", fmt.Sprintf("has a label of %d bytes, longer than a DNS label can be (%d)", len(l), maxLabelLen)
		case l[0] == '-' || l[len(l)-1] == '-':
			return "", fmt.Sprintf("has the label %q, which starts or ends with '-'", l)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if c >= 0x80 {
				return "", "has a non-ASCII character: write an internationalised name in its xn-- (punycode) form"
			}
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", fmt.Sprintf("has %q, which a host name cannot contain (only letters, digits, '-' and '.')", string(c))
			}
		}
	}
	if last := labels[len(labels)-1]; isNumeric(last) {
		return "", fmt.Sprintf("ends in the number %q, which resolvers may read as an IPv4 address: write a CIDR for an address", last)
	}
	return name, ""
}

// isNumeric reports whether a label is a decimal or 0x-hex number, as
// inet_aton and URL parsers read the last label of an IPv4 address.
func isNumeric(l string) bool {
	digits := "0123456789"
	if h, ok := strings.CutPrefix(l, "0x"); ok {
		l, digits = h, "0123456789abcdef"
	}
	return strings.Trim(l, digits) == ""
}

// String returns the rule's canonical entry: a lowercase name, a masked
// CIDR, sorted ports, and no ports when they are the default 80 and 443.
// ParseRule(r.String()) gives r back.
func (r Rule) String() string {
	var dest string
	switch r.kind {
	case kindAny:
		dest = "*"
	case kindSuffix:
		dest = "*." + r.name
	case kindHost:
		dest = r.name
	case kindCIDR:
		dest = r.prefix.String()
	}
	if slices.Equal(r.ports, defaultPorts) {
		return dest
	}
	ports := make([]string, len(r.ports))
	for i, p := range r.ports {
		ports[i] = strconv.Itoa(int(p))
	}
	if r.kind == kindCIDR && r.prefix.Addr().Is6() {
		dest = "[" + dest + "]"
	}
	return dest + ":" + strings.Join(ports, ",")
}

// MarshalText returns the rule's canonical entry (String), so that a
// template's list is stored as its entries, e.g. in a sandbox's state
// record.
func (r Rule) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText parses an entry with ParseRule.
func (r *Rule) UnmarshalText(text []byte) error {
	parsed, err := ParseRule(string(text))
	if err != nil {
		return err
	}
	*r = parsed
	return nil
}

// allows reports whether the rule allows port.
func (r Rule) allows(port uint16) bool {
	_, found := slices.BinarySearch(r.ports, port)
	return found
}

// matchesName reports whether the rule's destination takes in the host
// name name (normalized).
func (r Rule) matchesName(name string) bool {
	switch r.kind {
	case kindHost:
		return name == r.name
	case kindSuffix:
		return strings.HasSuffix(name, "."+r.name)
	case kindAny:
		return true
	}
	return false
}

// List is an allowlist: a connection is allowed when one of its rules
// allows it (see Check and CheckResolved). The empty list allows nothing.
type List []Rule

// ParseList parses entries with ParseRule. It refuses more than MaxRules
// entries and an entry that repeats another (in canonical form); the
// error names the entry.
func ParseList(entries []string) (List, error) {
	if len(entries) > MaxRules {
		return nil, fmt.Errorf("egress allowlist has %d entries, more than the %d allowed: cover several hosts with *.domain or a CIDR: %w",
			len(entries), MaxRules, errdefs.ErrInvalidArgument)
	}
	l := make(List, 0, len(entries))
	seen := make(map[string]string, len(entries))
	for _, e := range entries {
		r, err := ParseRule(e)
		if err != nil {
			return nil, err
		}
		if first, dup := seen[r.String()]; dup {
			return nil, &EntryError{Entry: clip(e), Problem: fmt.Sprintf("repeats the entry %q", first)}
		}
		seen[r.String()] = e
		l = append(l, r)
	}
	return l, nil
}

// Strings returns the canonical entries of l, in order: the form
// Sandbox.egress_allow reports.
func (l List) Strings() []string {
	s := make([]string, len(l))
	for i, r := range l {
		s[i] = r.String()
	}
	return s
}

// Within returns nil if l allows nothing that template does not: for
// every entry of l and each of its ports, some template entry with that
// port covers its destination (the same host; a host or *.sub.d under
// *.d; a host or wildcard under *; a CIDR inside a CIDR that unlocks no
// refused address the template's does not). Otherwise it returns an
// InvalidArgument error naming the first entry that widens the template.
//
// A single-address CIDR outside the refused ranges (say 203.0.113.7/32)
// is within only the same entry: such an entry unlocks the daemon's own
// address when it names it, and only the template may do that.
func (l List) Within(template List) error {
	for _, r := range l {
		for _, port := range r.ports {
			if slices.ContainsFunc(template, func(t Rule) bool { return t.allows(port) && destWithin(r, t) }) {
				continue
			}
			return fmt.Errorf("egress entry %q is not within the template's allowlist: %s; a sandbox's list may only narrow its template's: %w",
				r.String(), r.notWithin(template, port), errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// notWithin says why no entry of template covers r on port.
func (r Rule) notWithin(template List, port uint16) string {
	if slices.ContainsFunc(template, func(t Rule) bool { return destWithin(r, t) }) {
		return fmt.Sprintf("the template allows no port %d there", port)
	}
	inside := r.kind == kindCIDR && slices.ContainsFunc(template, func(t Rule) bool {
		return t.kind == kindCIDR && prefixInside(r.prefix, t.prefix)
	})
	if !inside {
		return fmt.Sprintf("no entry of the template's covers %s", r.describe())
	}
	if rng, ok := smallestRangeHolding(r.prefix); ok {
		return fmt.Sprintf("it lies in %s, which is %s and opens only to a template CIDR inside it", rng.prefix, rng.what)
	}
	return "a single address outside the refused ranges may be the daemon's own, so only the template can list it: the template must have this same entry"
}

// describe names a rule's destination for messages.
func (r Rule) describe() string {
	switch r.kind {
	case kindAny:
		return "any host name"
	case kindSuffix:
		return "the subdomains of " + r.name
	case kindCIDR:
		return r.prefix.String()
	}
	return r.name
}

// destWithin reports whether every destination r allows, t allows too
// (ports aside), including the refused addresses r's CIDR unlocks.
func destWithin(r, t Rule) bool {
	switch t.kind {
	case kindAny:
		return r.kind != kindCIDR
	case kindSuffix:
		return (r.kind == kindHost || r.kind == kindSuffix) && strings.HasSuffix(r.name, "."+t.name) ||
			r.kind == kindSuffix && r.name == t.name
	case kindHost:
		return r.kind == kindHost && r.name == t.name
	case kindCIDR:
		return r.kind == kindCIDR && cidrWithin(r.prefix, t.prefix)
	}
	return false
}

// cidrWithin reports whether q lies inside p and unlocks no refused
// address that p does not. A CIDR unlocks the addresses of the smallest
// refused range it lies in (see unlocks), so p must lie in that range
// too; and a single address outside every range may be the daemon's
// own, which only the same single-address entry unlocks.
func cidrWithin(q, p netip.Prefix) bool {
	if !prefixInside(q, p) {
		return false
	}
	if rng, ok := smallestRangeHolding(q); ok {
		return prefixInside(p, rng.prefix)
	}
	return !q.IsSingleIP() || q == p
}

// prefixInside reports whether q lies entirely inside p.
func prefixInside(q, p netip.Prefix) bool {
	return q.Addr().BitLen() == p.Addr().BitLen() && q.Bits() >= p.Bits() && p.Contains(q.Addr())
}

// clip cuts s for quoting in a message.
func clip(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	return s[:maxQuoted] + "..."
}
