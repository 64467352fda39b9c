package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/sandboxd/sandboxd/runtime/errdefs"
)

// relayBuffer is the copy buffer of each direction of a relay: io.Copy's
// size, enough to keep a fast link busy with few system calls, and little
// memory per connection.
const relayBuffer = 32 << 10

// Conn is one end of a relayed connection: a byte stream whose sending
// half closes on its own (TCP half-close), as *net.TCPConn's does.
type Conn interface {
	io.ReadWriteCloser
	// CloseWrite tells the peer no more data follows, while reading goes
	// on.
	CloseWrite() error
}

// Budget caps one sandbox's egress: the bytes relayed over its life, both
// directions of all its connections together, and the connections open
// at once. It is safe for concurrent use.
type Budget struct {
	maxBytes, maxConns int64
	used, open         atomic.Int64
}

// NewBudget returns a budget of maxBytes bytes and maxConns connections
// at once; 0 (or less) allows none.
func NewBudget(maxBytes int64, maxConns int) *Budget {
	return &Budget{maxBytes: maxBytes, maxConns: int64(maxConns)}
}

// Acquire takes a connection slot, to be given back with release (which
// may be called more than once). It fails with ErrResourceExhausted when
// maxConns connections are open or the byte budget is spent.
func (b *Budget) Acquire() (release func(), err error) {
	if b.used.Load() >= b.maxBytes {
		return nil, b.bytesSpent()
	}
	for {
		n := b.open.Load()
		if n >= b.maxConns {
			return nil, fmt.Errorf("egress connection cap of %d reached: %w", b.maxConns, errdefs.ErrResourceExhausted)
		}
		if b.open.CompareAndSwap(n, n+1) {
			break
		}
	}
	var once sync.Once
	return func() { once.Do(func() { b.open.Add(-1) }) }, nil
}

// Charge counts n bytes as relayed already: those of the sandbox's life
// before a daemon restart, so that its cap stays one over its whole life.
// The count never goes past maxBytes.
func (b *Budget) Charge(n int64) {
	if n > 0 {
		b.take(n)
	}
}

// Used returns the bytes relayed so far; never more than maxBytes.
func (b *Budget) Used() int64 { return b.used.Load() }

// Open returns the connection slots taken now.
func (b *Budget) Open() int { return int(b.open.Load()) }

// take grants up to n bytes of the budget: all of them, what is left when
// that is less, or 0.
func (b *Budget) take(n int64) int64 {
	for {
		used := b.used.Load()
		grant := min(n, max(b.maxBytes-used, 0))
		if grant == 0 || b.used.CompareAndSwap(used, used+grant) {
			return grant
		}
	}
}

func (b *Budget) bytesSpent() error {
	return fmt.Errorf("egress byte cap of %d bytes reached: %w", b.maxBytes, errdefs.ErrResourceExhausted)
}

// Relay copies sandbox to remote (up) and remote to sandbox (down) until
// both directions end, each within b. When one side stops sending, the
// other's write half is closed (half-close) and the other direction goes
// on. When the budget runs out, the bytes that fit are delivered and both
// directions stop with an ErrResourceExhausted error naming the byte cap:
// a sandbox's connections together never carry more than its budget. A
// failing direction stops the other; cancelling ctx stops both. Relay
// closes both connections before it returns the bytes delivered each way
// and the first error, nil when both directions ended cleanly.
func Relay(ctx context.Context, sandbox, remote Conn, b *Budget) (up, down int64, err error) {
	var (
		mu        sync.Mutex
		first     error
		closeOnce sync.Once
	)
	closeBoth := func() {
		closeOnce.Do(func() {
			_ = sandbox.Close() // teardown: the relay's result is already decided
			_ = remote.Close()
		})
	}
	fail := func(e error) {
		mu.Lock()
		if first == nil {
			first = e
		}
		mu.Unlock()
		closeBoth()
	}
	stop := context.AfterFunc(ctx, func() { fail(fmt.Errorf("relaying: %w", ctx.Err())) })
	defer stop()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		var e error
		if up, e = pipe(remote, sandbox, b, "sandbox", "remote"); e != nil {
			fail(e)
		}
	}()
	go func() {
		defer wg.Done()
		var e error
		if down, e = pipe(sandbox, remote, b, "remote", "sandbox"); e != nil {
			fail(e)
		}
	}()
	wg.Wait()
	stop()
	closeBoth()
	mu.Lock()
	defer mu.Unlock()
	return up, down, first
}

// pipe copies src to dst within b until src ends, then half-closes dst.
// It returns the bytes written to dst.
func pipe(dst, src Conn, b *Budget, from, to string) (int64, error) {
	buf := make([]byte, relayBuffer)
	var n int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			grant := b.take(int64(nr))
			if grant > 0 {
				nw, werr := dst.Write(buf[:grant])
				n += int64(nw)
				if werr != nil {
					return n, fmt.Errorf("writing to %s: %w: %w", to, werr, errdefs.ErrUnavailable)
				}
			}
			if grant < int64(nr) {
				return n, b.bytesSpent()
			}
		}
		switch {
		case errors.Is(rerr, io.EOF):
			if err := dst.CloseWrite(); err != nil {
				return n, fmt.Errorf("half-closing %s: %w: %w", to, err, errdefs.ErrUnavailable)
			}
			return n, nil
		case rerr != nil:
			return n, fmt.Errorf("reading from %s: %w: %w", from, rerr, errdefs.ErrUnavailable)
		}
	}
}
