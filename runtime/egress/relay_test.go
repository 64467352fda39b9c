package egress

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/runtime/errdefs"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// relayed sets up client <-> [sandbox end | Relay | remote end] <-> server
// and runs Relay in the background; the result arrives on the channel.
type relayed struct {
	client, server *net.TCPConn
	done           chan relayResult
}

type relayResult struct {
	up, down int64
	err      error
}

func startRelay(t *testing.T, ctx context.Context, b *Budget) relayed {
	t.Helper()
	client, sandboxEnd := tcpPair(t)
	remoteEnd, server := tcpPair(t)
	r := relayed{client: client, server: server, done: make(chan relayResult, 1)}
	go func() {
		up, down, err := Relay(ctx, sandboxEnd, remoteEnd, b)
		r.done <- relayResult{up, down, err}
	}()
	return r
}

// wait returns the relay's result, failing the test if it does not end.
func (r relayed) wait(t *testing.T) relayResult {
	t.Helper()
	select {
	case res := <-r.done:
		return res
	case <-time.After(10 * time.Second):
		t.Fatal("Relay did not return")
		return relayResult{}
	}
}

// TestRelayHalfClose guarantees that a client may finish sending and
// still receive the whole answer: its end of input reaches the server as
// EOF, the server's answer flows back, and the relay then ends cleanly,
// counting each direction and charging the budget for both.
func TestRelayHalfClose(t *testing.T) {
	b := NewBudget(1<<20, 4)
	r := startRelay(t, context.Background(), b)
	if _, err := r.client.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := r.client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	req, err := io.ReadAll(r.server)
	if err != nil || string(req) != "GET / HTTP/1.0\r\n\r\n" {
		t.Fatalf("server read %q, %v", req, err)
	}
	if _, err := r.server.Write([]byte("HTTP/1.0 200 OK\r\n\r\nhello")); err != nil {
		t.Fatal(err)
	}
	r.server.Close()
	resp, err := io.ReadAll(r.client)
	if err != nil || string(resp) != "HTTP/1.0 200 OK\r\n\r\nhello" {
		t.Fatalf("client read %q, %v", resp, err)
	}
	res := r.wait(t)
	if res.err != nil || res.up != int64(len(req)) || res.down != int64(len(resp)) {
		t.Fatalf("Relay = %+v, want up %d, down %d, no error", res, len(req), len(resp))
	}
	if b.Used() != res.up+res.down {
		t.Errorf("budget used %d, want %d", b.Used(), res.up+res.down)
	}
}

// TestByteCapCutsLargeDownload guarantees that a download larger than
// the byte cap is cut at the cap (the client gets at most the cap, and at
// least the cap less one buffer), that Relay says the cap was reached,
// and that the spent budget refuses further connections.
func TestByteCapCutsLargeDownload(t *testing.T) {
	const limit = 1 << 20
	b := NewBudget(limit, 4)
	r := startRelay(t, context.Background(), b)
	go func() {
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for i := 0; i < 256; i++ { // 16 MiB, far past the cap
			if _, err := r.server.Write(chunk); err != nil {
				return
			}
		}
	}()
	got, _ := io.Copy(io.Discard, r.client)
	res := r.wait(t)
	if !errors.Is(res.err, errdefs.ErrResourceExhausted) || !strings.Contains(res.err.Error(), "byte cap") {
		t.Fatalf("Relay error %v, want the byte cap reached", res.err)
	}
	if got > limit || got < limit-relayBuffer {
		t.Errorf("client received %d bytes, want the cap %d within one buffer", got, limit)
	}
	if res.down != limit || b.Used() != limit {
		t.Errorf("down %d, used %d; want exactly %d", res.down, b.Used(), limit)
	}
	if _, err := b.Acquire(); !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Errorf("Acquire on a spent budget: %v, want ResourceExhausted", err)
	}
}

// TestByteCapSharedByConnectionsAndDirections guarantees that the budget
// is one pool for all of a sandbox's connections, uploads and downloads
// together: concurrent transfers never deliver more than the cap between
// them.
func TestByteCapSharedByConnectionsAndDirections(t *testing.T) {
	const limit = 1 << 20
	b := NewBudget(limit, 4)
	var relays []relayed
	for i := 0; i < 2; i++ {
		r := startRelay(t, context.Background(), b)
		relays = append(relays, r)
		for _, c := range []*net.TCPConn{r.client, r.server} {
			go func() {
				chunk := bytes.Repeat([]byte("y"), 32<<10)
				for j := 0; j < 32; j++ { // 1 MiB each way, 4 MiB in all
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}
	var total int64
	capped := false
	for _, r := range relays {
		res := r.wait(t)
		total += res.up + res.down
		capped = capped || errors.Is(res.err, errdefs.ErrResourceExhausted)
	}
	if !capped || total > limit || b.Used() != limit {
		t.Errorf("delivered %d, used %d, capped %v; want at most %d delivered, all of it used, the cap reported", total, b.Used(), capped, limit)
	}
}

// TestRelayStopsOnCancel guarantees that cancelling the context stops an
// idle relay at once, closes both ends and reports the cancellation.
func TestRelayStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := startRelay(t, ctx, NewBudget(1<<20, 4))
	cancel()
	res := r.wait(t)
	if !errors.Is(res.err, context.Canceled) {
		t.Fatalf("Relay error %v, want context.Canceled", res.err)
	}
	_ = r.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := r.client.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("client read after cancel: %d, %v; want the connection closed", n, err)
	}
}

// TestRelayRemoteResetStopsBoth guarantees that when one side fails (the
// server resets), the relay stops the other direction too and reports the
// failure as Unavailable.
func TestRelayRemoteResetStopsBoth(t *testing.T) {
	r := startRelay(t, context.Background(), NewBudget(1<<20, 4))
	_ = r.server.SetLinger(0)
	r.server.Close() // RST
	res := r.wait(t)
	if !errors.Is(res.err, errdefs.ErrUnavailable) {
		t.Fatalf("Relay error %v, want Unavailable", res.err)
	}
}

// TestBudgetConnectionCap guarantees the connection semaphore: maxConns
// slots, the next refused as ResourceExhausted naming the cap, a slot
// given back once however often release is called.
func TestBudgetConnectionCap(t *testing.T) {
	b := NewBudget(1<<20, 2)
	r1, err := b.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Acquire(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Acquire(); !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "connection cap of 2") {
		t.Fatalf("third Acquire: %v, want the connection cap", err)
	}
	r1()
	r1()
	if b.Open() != 1 {
		t.Fatalf("Open() = %d after one release called twice, want 1", b.Open())
	}
	if _, err := b.Acquire(); err != nil {
		t.Fatalf("Acquire after release: %v", err)
	}
	if _, err := b.Acquire(); err == nil {
		t.Fatal("a double release freed two slots")
	}
}

// TestBudgetNeverOverspends guarantees that concurrent takes grant
// exactly the budget between them, never more.
func TestBudgetNeverOverspends(t *testing.T) {
	const limit = 1_000_003
	b := NewBudget(limit, 1)
	var (
		mu      sync.Mutex
		granted int64
		wg      sync.WaitGroup
	)
	for i := 1; i <= 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				g := b.take(int64(i * 997))
				mu.Lock()
				granted += g
				mu.Unlock()
				if g == 0 {
					return
				}
			}
		}()
	}
	wg.Wait()
	if granted != limit || b.Used() != limit {
		t.Errorf("granted %d, used %d; want exactly %d", granted, b.Used(), limit)
	}
}

// TestBudgetChargeCarriesEarlierUse guarantees that bytes charged for a
// sandbox's earlier life (before a daemon restart) count against its cap:
// only the rest can be relayed, and a spent budget refuses connections.
func TestBudgetChargeCarriesEarlierUse(t *testing.T) {
	b := NewBudget(1000, 4)
	b.Charge(600)
	if b.Used() != 600 {
		t.Fatalf("Used() = %d after Charge(600), want 600", b.Used())
	}
	if g := b.take(1000); g != 400 {
		t.Fatalf("take(1000) granted %d, want the 400 left", g)
	}
	b.Charge(5000)
	if b.Used() != 1000 {
		t.Fatalf("Used() = %d, want it capped at 1000", b.Used())
	}
	if _, err := b.Acquire(); !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "byte cap") {
		t.Fatalf("Acquire on a spent budget: %v, want the byte cap", err)
	}
}
