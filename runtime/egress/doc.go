// Package egress decides and relays a sandbox's outbound connections.
//
// A sandbox keeps --network=none. Its agent serves an HTTP proxy on
// loopback inside the sandbox and hands each connection to the daemon,
// which uses this package to decide whether the destination is allowed,
// resolve it on the host, dial the address it checked and copy the bytes,
// within the sandbox's byte and connection caps.
//
// An allowlist ([List]) holds [Rule]s written as `DEST` or `DEST:PORTS`:
//
//	example.com          an exact host name
//	*.example.com        any strict subdomain (not example.com itself)
//	*                    any host name (never an IP literal)
//	10.0.0.0/8           a CIDR; a bare address needs its /32 or /128
//	api.example.com:443,8443
//	[fd00::/8]:443       an IPv6 CIDR with ports, in brackets
//
// Without PORTS a rule allows 80 and 443.
//
// A decision has two steps. Step 1 ([List.Check]) matches the destination
// the client named: a name against the host and wildcard rules, an IP
// literal against the CIDR rules. Step 2 ([List.CheckResolved]) checks
// every address the name resolves to (or the literal): addresses of the
// refused classes (loopback, link-local, private, CGNAT, multicast,
// unique-local, the daemon's own, and so on) are allowed only by a CIDR
// rule that lies entirely within the refused range holding the address,
// so 10.0.0.0/8 opens 10.0.0.1 but 0.0.0.0/0 opens none of them. A name
// with any refused address is refused entirely, which stops DNS
// rebinding. [Dialer.Connect] runs both steps around the host's resolver
// and dials exactly the address it checked.
//
// [Budget] caps a sandbox's bytes (both directions, all connections) and
// open connections; [Relay] copies one connection both ways within it.
package egress
