package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/runtime/errdefs"
)

// fakeResolver answers from a map and counts lookups.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][]netip.Addr
	err     error
	lookups []string
}

func (r *fakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups = append(r.lookups, network+" "+host)
	if r.err != nil {
		return nil, r.err
	}
	if a, ok := r.answers[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (r *fakeResolver) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lookups...)
}

// echoListener serves an echo on 127.0.0.1 and returns its port.
func echoListener(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// noOwn is a Dialer.Own for tests that need no own addresses.
func noOwn() ([]netip.Addr, error) { return nil, nil }

// echo checks that conn echoes a message.
func echo(t *testing.T, conn net.Conn) {
	t.Helper()
	defer conn.Close()
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
}

// TestConnectReachesListedLoopback guarantees that with 127.0.0.1/32 and
// the port listed, a real listener on 127.0.0.1 (one of the daemon's own
// addresses) is reached, without resolving anything; and that without
// that entry, even with * listed, it is refused as PermissionDenied.
func TestConnectReachesListedLoopback(t *testing.T) {
	port := echoListener(t)
	res := &fakeResolver{}
	d := &Dialer{Resolver: res, Own: func() ([]netip.Addr, error) { return addrs("127.0.0.1"), nil }}

	conn, dec, err := d.Connect(context.Background(), mustList(t, fmt.Sprintf("127.0.0.1/32:%d", port)), "127.0.0.1", port)
	if err != nil {
		t.Fatalf("Connect: %v (%+v)", err, dec)
	}
	if !dec.Allowed || dec.Addr != netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port) {
		t.Errorf("Decision = %+v", dec)
	}
	echo(t, conn)

	for _, entries := range [][]string{{fmt.Sprintf("*:%d", port)}, {"127.0.0.1/32:1"}, {fmt.Sprintf("0.0.0.0/0:%d", port)}, nil} {
		conn, dec, err = d.Connect(context.Background(), mustList(t, entries...), "127.0.0.1", port)
		if conn != nil || dec.Allowed || !errors.Is(err, errdefs.ErrPermissionDenied) {
			t.Errorf("list %q: got %v, %+v, %v; want a PermissionDenied refusal", entries, conn, dec, err)
		}
	}
	if calls := res.calls(); len(calls) != 0 {
		t.Errorf("an IP literal was resolved: %v", calls)
	}
}

// TestConnectDialsTheCheckedAddress guarantees that a name is resolved
// once, on the host, and that the address checked is the address dialed
// (by IP, never the name again), so a resolver that answers differently
// the second time cannot slip a refused address in.
func TestConnectDialsTheCheckedAddress(t *testing.T) {
	port := echoListener(t)
	res := &fakeResolver{answers: map[string][]netip.Addr{"svc.test": addrs("127.0.0.1", "127.0.0.9")}}
	var dialed []string
	d := &Dialer{Resolver: res, Own: noOwn, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialed = append(dialed, network+" "+addr)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	list := mustList(t, fmt.Sprintf("svc.test:%d", port), fmt.Sprintf("127.0.0.0/8:%d", port))
	conn, dec, err := d.Connect(context.Background(), list, "SVC.test.", port)
	if err != nil {
		t.Fatalf("Connect: %v (%+v)", err, dec)
	}
	echo(t, conn)
	want := fmt.Sprintf("tcp 127.0.0.1:%d", port)
	if len(dialed) != 1 || dialed[0] != want {
		t.Errorf("dialed %q, want exactly %q", dialed, want)
	}
	if calls := res.calls(); len(calls) != 1 || calls[0] != "ip svc.test" {
		t.Errorf("lookups %q, want one of svc.test", calls)
	}
	if dec.Host != "svc.test" || dec.Rule != fmt.Sprintf("svc.test:%d", port) {
		t.Errorf("Decision = %+v", dec)
	}
}

// TestConnectRefusesRebindingWithoutDialing guarantees that a listed name
// resolving to loopback that no entry opens is refused after resolution,
// with the address in the reason, and nothing is dialed.
func TestConnectRefusesRebindingWithoutDialing(t *testing.T) {
	res := &fakeResolver{answers: map[string][]netip.Addr{"svc.test": addrs("127.0.0.3")}}
	d := &Dialer{Resolver: res, Own: noOwn, Dial: func(context.Context, string, string) (net.Conn, error) {
		t.Fatal("dialed a refused destination")
		return nil, nil
	}}
	_, dec, err := d.Connect(context.Background(), mustList(t, "svc.test:443", "127.0.0.2/32:443"), "svc.test", 443)
	if !errors.Is(err, errdefs.ErrPermissionDenied) || dec.Allowed || !strings.Contains(dec.Reason, "127.0.0.3") {
		t.Fatalf("got %+v, %v; want a refusal naming 127.0.0.3", dec, err)
	}
	if dec.Addr.Addr() != netip.MustParseAddr("127.0.0.3") {
		t.Errorf("Decision.Addr = %v, want the refused address", dec.Addr)
	}
}

// TestConnectRefusesBeforeResolving guarantees that names not listed,
// invalid or longer than a DNS name never reach the resolver.
func TestConnectRefusesBeforeResolving(t *testing.T) {
	res := &fakeResolver{}
	d := &Dialer{Resolver: res, Own: noOwn}
	list := mustList(t, "api.example.com", "*.pypi.org")
	for _, host := range []string{"evil.example", "api.example.com\x00.evil", strings.Repeat("a.", 130) + "pypi.org", "pypi.org", "a..pypi.org", "2130706433"} {
		conn, dec, err := d.Connect(context.Background(), list, host, 443)
		if conn != nil || dec.Allowed || !errors.Is(err, errdefs.ErrPermissionDenied) {
			t.Errorf("%q: got %+v, %v; want refused", host, dec, err)
		}
	}
	if calls := res.calls(); len(calls) != 0 {
		t.Errorf("refused names were resolved: %q", calls)
	}
}

// TestConnectClassifiesFailures guarantees the error classes of Connect:
// a name that does not exist is NotFound, a resolver or dial failure and
// unknown own addresses are Unavailable, and the Decision says why for
// the log in each case.
func TestConnectClassifiesFailures(t *testing.T) {
	list := mustList(t, "svc.test", "gone.test", "127.0.0.1/32:1")
	res := &fakeResolver{answers: map[string][]netip.Addr{"svc.test": addrs("192.0.2.1")}}
	failDial := func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("connection refused") }
	for _, tc := range []struct {
		name  string
		d     *Dialer
		host  string
		port  uint16
		class error
		frag  string
	}{
		{"no such name", &Dialer{Resolver: res, Own: noOwn}, "gone.test", 443, errdefs.ErrNotFound, "resolving gone.test failed"},
		{"resolver down", &Dialer{Resolver: &fakeResolver{err: errors.New("server misbehaving")}, Own: noOwn}, "svc.test", 443, errdefs.ErrUnavailable, "server misbehaving"},
		{"own addresses unknown", &Dialer{Resolver: res, Own: func() ([]netip.Addr, error) { return nil, errors.New("netlink") }}, "svc.test", 443, errdefs.ErrUnavailable, "own addresses are unknown"},
		{"dial fails", &Dialer{Resolver: res, Own: noOwn, Dial: failDial}, "svc.test", 443, errdefs.ErrUnavailable, "allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, dec, err := tc.d.Connect(context.Background(), list, tc.host, tc.port)
			if conn != nil || !errors.Is(err, tc.class) || !strings.Contains(dec.Reason, tc.frag) {
				t.Fatalf("got %+v, %v; want class %v and a reason containing %q", dec, err, tc.class, tc.frag)
			}
		})
	}
}

// TestConnectTimeout guarantees that a destination that never answers
// holds Connect for Timeout only, and that the default is DefaultTimeout.
func TestConnectTimeout(t *testing.T) {
	hang := func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	list := mustList(t, "192.0.2.0/24")
	d := &Dialer{Own: noOwn, Dial: hang, Timeout: 50 * time.Millisecond}
	start := time.Now()
	_, _, err := d.Connect(context.Background(), list, "192.0.2.1", 443)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("got %v, want a deadline error classed Unavailable", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Connect took %s with a 50ms timeout", took)
	}

	var deadline time.Time
	d = &Dialer{Own: noOwn, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		deadline, _ = ctx.Deadline()
		return nil, errors.New("stop")
	}}
	start = time.Now()
	_, _, _ = d.Connect(context.Background(), list, "192.0.2.1", 443)
	if left := deadline.Sub(start); left < DefaultTimeout || left > DefaultTimeout+time.Second {
		t.Errorf("default dial deadline %s away, want DefaultTimeout %s", left, DefaultTimeout)
	}
}

// TestConnectRefusesTheDaemonsOwnListeners stops a sandbox from calling
// the daemon that runs it: even a list that opens loopback explicitly
// never reaches the daemon's listening sockets (its API, its metrics),
// named by address or listening on every address.
func TestConnectRefusesTheDaemonsOwnListeners(t *testing.T) {
	port := echoListener(t)
	list := mustList(t, fmt.Sprintf("127.0.0.0/8:%d", port))
	for _, l := range []string{fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("0.0.0.0:%d", port), fmt.Sprintf("[::]:%d", port)} {
		var dialed bool
		d := &Dialer{Own: noOwn, Listeners: []netip.AddrPort{netip.MustParseAddrPort(l)},
			Dial: func(context.Context, string, string) (net.Conn, error) {
				dialed = true
				return nil, errors.New("dialed")
			}}
		conn, dec, err := d.Connect(context.Background(), list, "127.0.0.1", port)
		if conn != nil || dec.Allowed || !errors.Is(err, errdefs.ErrPermissionDenied) || dialed {
			t.Errorf("listener %s: got %v, %+v, %v (dialed %v); want a refusal before dialing", l, conn, dec, err, dialed)
		}
	}
	// Another port of the same address stays reachable.
	d := &Dialer{Own: noOwn, Listeners: []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port+1)}}
	conn, dec, err := d.Connect(context.Background(), list, "127.0.0.1", port)
	if err != nil {
		t.Fatalf("Connect to a port the daemon does not listen on: %v (%+v)", err, dec)
	}
	echo(t, conn)
}
