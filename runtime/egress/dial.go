package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/sandboxd/sandboxd/runtime/errdefs"
)

// DefaultTimeout bounds resolving and dialing one destination: a handshake
// with anything reachable takes well under a second, 10s rides out a lost
// SYN or DNS packet and its retransmits, and a destination that never
// answers holds a connection slot no longer.
const DefaultTimeout = 10 * time.Second

// Resolver resolves host names; *net.Resolver is one.
type Resolver interface {
	// LookupNetIP returns the addresses of host for network "ip".
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Dialer opens the connections a sandbox asks for, on the host, after
// deciding them. The zero Dialer uses the host's resolver, interfaces and
// TCP stack.
type Dialer struct {
	// Resolver resolves names; nil: net.DefaultResolver.
	Resolver Resolver
	// Own returns the daemon's own addresses, refused unless an entry
	// names them; nil: HostAddrs. Connect refuses everything when it
	// fails: not knowing them, it cannot keep them out.
	Own func() ([]netip.Addr, error)
	// Timeout bounds resolving and dialing one destination; 0:
	// DefaultTimeout.
	Timeout time.Duration
	// Listeners are the daemon's own listening sockets (its API over TCP,
	// its metrics): never reachable from a sandbox, whatever the list says,
	// so that a template that opens loopback cannot call the daemon that
	// runs it. An unspecified address (0.0.0.0, ::) stands for every
	// address.
	Listeners []netip.AddrPort
	// Dial connects to an "IP:port" address; nil: a net.Dialer's
	// DialContext, whose connections are *net.TCPConn (a Conn for Relay).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Connect decides a connection to host and port under l and, if it is
// allowed, dials it: it checks the name (or IP literal) against l,
// resolves a name on the host (a literal is not resolved), checks every
// address, and dials the first one by address, so the address checked is
// the address dialed. The Decision says what was decided, for the log,
// whatever happens. The error is ErrPermissionDenied for a refusal,
// ErrNotFound for a name that does not exist, ErrUnavailable when
// resolving or dialing fails.
func (d *Dialer) Connect(ctx context.Context, l List, host string, port uint16) (net.Conn, Decision, error) {
	dec := l.Check(host, port)
	if !dec.Allowed {
		return nil, dec, refused(dec)
	}
	own, err := d.own()
	if err != nil {
		dec = refuse(dec, netip.AddrPort{}, "the daemon's own addresses are unknown")
		return nil, dec, fmt.Errorf("checking egress to %s: %w: %w", dec.Host, err, errdefs.ErrUnavailable)
	}
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var addrs []netip.Addr
	if !dec.Addr.IsValid() {
		addrs, err = d.resolver().LookupNetIP(ctx, "ip", dec.Host)
		if err != nil {
			dec = refuse(dec, netip.AddrPort{}, fmt.Sprintf("resolving %s failed: %v", dec.Host, err))
			class := errdefs.ErrUnavailable
			var dnsErr *net.DNSError
			if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
				class = errdefs.ErrNotFound
			}
			return nil, dec, fmt.Errorf("resolving %s: %w: %w", dec.Host, err, class)
		}
	}
	dec = l.CheckResolved(host, port, addrs, own)
	if !dec.Allowed {
		return nil, dec, refused(dec)
	}
	if listener(d.Listeners, dec.Addr) {
		dec = refuse(dec, dec.Addr, fmt.Sprintf("%s is the daemon's own listener", dec.Addr))
		return nil, dec, refused(dec)
	}
	dial := d.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	conn, err := dial(ctx, "tcp", dec.Addr.String())
	if err != nil {
		return nil, dec, fmt.Errorf("dialing %s for %s: %w: %w", dec.Addr, dec.Host, err, errdefs.ErrUnavailable)
	}
	return conn, dec, nil
}

// listener reports whether a is one of the daemon's listeners.
func listener(listeners []netip.AddrPort, a netip.AddrPort) bool {
	addr := a.Addr().Unmap()
	for _, l := range listeners {
		if l.Port() == a.Port() && (l.Addr().IsUnspecified() || l.Addr().Unmap() == addr) {
			return true
		}
	}
	return false
}

// refused is the error for a refusal.
func refused(dec Decision) error {
	return fmt.Errorf("egress refused: %s: %w", dec.Reason, errdefs.ErrPermissionDenied)
}

func (d *Dialer) resolver() Resolver {
	if d.Resolver == nil {
		return net.DefaultResolver
	}
	return d.Resolver
}

func (d *Dialer) own() ([]netip.Addr, error) {
	if d.Own == nil {
		return HostAddrs()
	}
	return d.Own()
}
