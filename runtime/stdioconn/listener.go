package stdioconn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Preface is the HTTP/2 client connection preface (RFC 9113 §3.4): every new
// gRPC client connection starts with it, which is how the Listener tells a
// new connection's first bytes from anything an old one left behind.
var Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// maxDiscard bounds what the Listener skips while waiting for a new
// connection's preface: a closing client may send a GOAWAY or two (tens of
// bytes); more than this is not a client of ours.
const maxDiscard = 64 << 10

// scanChunk is what the Listener reads at a time while it looks for the next
// connection's start: the up to 1 MiB a crashed daemon leaves in the pipe go
// in 16 reads, not 256.
const scanChunk = 64 << 10

// Listener serves successive connections over one pipe pair: the agent's
// stdin and stdout, which a checkpoint and restore rebind to the restoring
// process's fresh pipes while the agent keeps running. The first Accept
// returns a connection at once. Detach stops the current connection's reads
// (its writes go on, so an answer in flight still arrives); the next Accept
// then waits on the read pipe for a new client's preface, retires the old
// connection (its parked reads return EOF, its writes fail) and returns a
// new one. Resync retires the current connection at once and makes the next
// Accept wait for a restarted daemon instead (resync.go). The Listener owns
// both files; connections never close them.
type Listener struct {
	r, w *os.File
	// readMu is held around every read of r by a connection, so that once
	// a detach took and released it, no reader of the detached connection
	// is inside a read of the pipe.
	readMu sync.Mutex
	// writeMu is held around every write of w, so that the Listener's
	// resync records never split a connection's write and a retired
	// connection writes nothing after its retirement.
	writeMu sync.Mutex
	// deadlineMu orders the deadlines connections set on the shared pipes
	// with their detaching and retirement: a detached connection no longer
	// sets the read deadline, a retired one no longer the write deadline.
	deadlineMu sync.Mutex
	// acceptMu lets one Accept at a time read the pipe.
	acceptMu sync.Mutex

	mu       sync.Mutex
	cur      *listenerConn
	accepted bool
	// free is set once the current connection (if any) no longer reads the
	// pipe: the next Accept may.
	free bool
	// gen counts Resyncs; nonce is the last one's until a daemon answered
	// it, nil when the next connection starts with a bare preface.
	gen   uint64
	nonce []byte
	wake  chan struct{} // holds a token once free may have changed

	done    chan struct{} // closed by end
	endOnce sync.Once
}

// NewListener returns a Listener over r (read) and w (write), both pipes
// served by Go's poller (non-blocking), so that deadlines work.
func NewListener(r, w *os.File) *Listener {
	return &Listener{r: r, w: w, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// Done is closed when the Listener can serve no more: a connection that was
// not detached ended (the daemon's end of the pipes closed), the read pipe
// failed while waiting for a new connection, or Close was called.
func (l *Listener) Done() <-chan struct{} { return l.done }

func (l *Listener) end() { l.endOnce.Do(func() { close(l.done) }) }

func (l *Listener) ended() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// poke wakes an Accept waiting for the pipe to be free.
func (l *Listener) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Accept returns the first connection at once and each later one once a
// Detach or Resync freed the pipe and a new client's first bytes arrived: a
// bare preface after a Detach, the daemon's answer to the nonce after a
// Resync.
func (l *Listener) Accept() (net.Conn, error) {
	l.acceptMu.Lock()
	defer l.acceptMu.Unlock()
	l.mu.Lock()
	if !l.accepted && l.nonce == nil {
		l.accepted = true
		c := l.installLocked(nil)
		l.mu.Unlock()
		return c, nil
	}
	l.accepted = true
	l.mu.Unlock()
	if err := l.awaitFree(); err != nil {
		return nil, err
	}
	// No connection reads the pipe until the next one is installed. Close
	// sets a past deadline after it ends the Listener, so checking after
	// the reset catches every Close.
	if err := l.r.SetReadDeadline(time.Time{}); err != nil {
		l.end()
		return nil, fmt.Errorf("clearing the read deadline: %w", err)
	}
	if l.ended() {
		return nil, net.ErrClosed
	}
	c, err := l.awaitConn()
	if err != nil {
		l.end()
		return nil, net.ErrClosed
	}
	return c, nil
}

// awaitFree waits until no connection reads the pipe.
func (l *Listener) awaitFree() error {
	for {
		l.mu.Lock()
		free := l.free
		l.mu.Unlock()
		if free {
			return nil
		}
		select {
		case <-l.wake:
		case <-l.done:
			return net.ErrClosed
		}
	}
}

// awaitConn reads the pipe until the next connection starts and returns it.
// Without a Resync pending that is at a bare preface, with what came before
// skipped up to maxDiscard. With one, it is after the Resync's nonce and the
// daemon's nonce, with up to MaxResyncDiscard skipped: a preface alone, in
// stale bytes, starts nothing. A Resync while it waits applies at once.
func (l *Listener) awaitConn() (*listenerConn, error) {
	// keep is the tail kept between reads: the start of a preface or of a
	// nonce pair split across reads.
	keep := max(len(Preface), 2*NonceSize) - 1
	buf := make([]byte, 0, keep+scanChunk)
	var gen uint64
	skipped := 0
	for first := true; ; first = false {
		l.mu.Lock()
		g, nonce := l.gen, l.nonce
		l.mu.Unlock()
		if first || g != gen {
			gen, skipped = g, 0
		}
		if nonce == nil {
			if i := bytes.Index(buf, Preface); i >= 0 {
				if c := l.install(gen, buf[i:]); c != nil {
					return c, nil
				}
				continue // a Resync came first
			}
		} else if i := bytes.Index(buf, nonce); i >= 0 && len(buf) >= i+2*NonceSize {
			c, err := l.confirm(gen, buf[i+NonceSize:i+2*NonceSize], buf[i+2*NonceSize:])
			if err != nil || c != nil {
				return c, err
			}
			continue // a later Resync came first
		}
		if len(buf) > keep {
			skipped += len(buf) - keep
			buf = append(buf[:0], buf[len(buf)-keep:]...)
		}
		limit := maxDiscard
		if nonce != nil {
			limit = MaxResyncDiscard
		}
		if skipped > limit {
			return nil, errors.New("no new connection on the pipe")
		}
		n, err := l.r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if n == 0 && err != nil {
			return nil, err
		}
	}
}

// confirm installs the connection that starts after rest, the bytes after
// the daemon's answer to Resync gen's nonce, and echoes the daemon's nonce
// (theirs) in a resync record: the daemon's cue that what follows on the
// write pipe is the new connection. It returns nil, nil if a later Resync
// came first.
func (l *Listener) confirm(gen uint64, theirs, rest []byte) (*listenerConn, error) {
	// Holding writeMu from the install to the echo keeps a Resync's record
	// (and the new connection's first frames) behind the echo.
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	c := l.install(gen, rest)
	if c == nil {
		return nil, nil
	}
	if _, err := l.w.Write(resyncRecord(theirs)); err != nil {
		return nil, fmt.Errorf("confirming the resync: %w", err)
	}
	return c, nil
}

// install makes a new connection, served pending first, current and retires
// the old one, unless a Resync came after gen: then it returns nil.
func (l *Listener) install(gen uint64, pending []byte) *listenerConn {
	l.mu.Lock()
	if l.gen != gen {
		l.mu.Unlock()
		return nil
	}
	c := l.installLocked(bytes.Clone(pending))
	l.mu.Unlock()
	// A deadline a retired connection left (gRPC sets them during its
	// handshake) must not cut the new one's writes.
	l.deadlineMu.Lock()
	_ = l.w.SetWriteDeadline(time.Time{})
	l.deadlineMu.Unlock()
	return c
}

// installLocked is install with l.mu held and no generation to check.
func (l *Listener) installLocked(pending []byte) *listenerConn {
	c := &listenerConn{l: l, pending: pending, retired: make(chan struct{})}
	old := l.cur
	l.cur, l.nonce, l.free = c, nil, false
	if old != nil {
		old.retire()
	}
	return c
}

// Detach stops the current connection's reads: a read in progress returns
// and, like every later read, parks until the next connection is accepted;
// once Detach returns, the old connection takes nothing more from the pipe.
// Writes go on. It fails if there is no connection or it was detached
// already.
func (l *Listener) Detach() error {
	l.mu.Lock()
	c := l.cur
	l.mu.Unlock()
	if c == nil {
		return errors.New("no attached connection to detach")
	}
	attached, err := l.release(c)
	if err != nil {
		return err
	}
	if !attached {
		return errors.New("no attached connection to detach")
	}
	return nil
}

// release detaches c, if it is attached, and frees the pipe for the next
// Accept once c's reader is out of it. It reports whether c was attached.
func (l *Listener) release(c *listenerConn) (bool, error) {
	l.deadlineMu.Lock()
	if !c.detached.CompareAndSwap(false, true) {
		l.deadlineMu.Unlock()
		return false, nil
	}
	// A deadline in the past wakes a blocked reader (it may still take
	// bytes that were already there). Once the reader let go of readMu,
	// every later read of the connection parks.
	err := l.r.SetReadDeadline(time.Unix(1, 0))
	l.deadlineMu.Unlock()
	if err != nil {
		return true, fmt.Errorf("waking the connection's reader: %w", err)
	}
	l.readMu.Lock()
	l.readMu.Unlock()
	l.mu.Lock()
	if l.cur == c {
		l.free = true
	}
	l.mu.Unlock()
	l.poke()
	return true, nil
}

// Close makes Accept return net.ErrClosed and closes Done; an Accept
// waiting on the pipe returns too.
func (l *Listener) Close() error {
	l.end()
	l.deadlineMu.Lock()
	_ = l.r.SetReadDeadline(time.Unix(1, 0))
	l.deadlineMu.Unlock()
	return nil
}

// Addr names the pipe pair.
func (l *Listener) Addr() net.Addr { return addr{} }

// listenerConn is one connection of a Listener.
type listenerConn struct {
	l        *Listener
	pending  []byte // read before Accept returned; served first
	detached atomic.Bool
	retired  chan struct{}
	once     sync.Once
	closed   sync.Once
}

func (c *listenerConn) retire() { c.once.Do(func() { close(c.retired) }) }

func (c *listenerConn) isRetired() bool {
	select {
	case <-c.retired:
		return true
	default:
		return false
	}
}

func (c *listenerConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	if c.isRetired() {
		return 0, io.EOF
	}
	c.l.readMu.Lock()
	if c.detached.Load() {
		c.l.readMu.Unlock()
		return c.park()
	}
	n, err := c.l.r.Read(p)
	c.l.readMu.Unlock()
	if err != nil && c.detached.Load() {
		return c.park()
	}
	return n, err
}

// park holds a detached connection's reader until the connection is
// retired: whatever the pipe says now belongs to the next connection.
func (c *listenerConn) park() (int, error) {
	<-c.retired
	return 0, io.EOF
}

func (c *listenerConn) Write(p []byte) (int, error) {
	c.l.writeMu.Lock()
	defer c.l.writeMu.Unlock()
	if c.isRetired() {
		return 0, net.ErrClosed
	}
	return c.l.w.Write(p)
}

// Close ends the connection. A connection that was not detached ended
// because the daemon went away or the server stops, so the Listener ends
// too, and a read or write blocked on the pipes returns at once (the
// Listener never closes them: the process exits soon after). A detached or
// resynced connection ends alone.
func (c *listenerConn) Close() error {
	c.closed.Do(func() {
		c.l.deadlineMu.Lock()
		if !c.detached.Load() {
			c.l.end()
			past := time.Unix(1, 0)
			_ = c.l.r.SetReadDeadline(past)
			_ = c.l.w.SetWriteDeadline(past)
		}
		c.l.deadlineMu.Unlock()
		c.retire()
	})
	return nil
}

func (c *listenerConn) LocalAddr() net.Addr  { return addr{} }
func (c *listenerConn) RemoteAddr() net.Addr { return addr{} }

// Deadlines apply to the shared pipes; gRPC sets them only during its
// handshake.
func (c *listenerConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *listenerConn) SetReadDeadline(t time.Time) error {
	c.l.deadlineMu.Lock()
	defer c.l.deadlineMu.Unlock()
	if c.detached.Load() {
		return nil // the pipe belongs to the next connection
	}
	return c.l.r.SetReadDeadline(t)
}

func (c *listenerConn) SetWriteDeadline(t time.Time) error {
	c.l.deadlineMu.Lock()
	defer c.l.deadlineMu.Unlock()
	if c.isRetired() {
		return nil // the pipe belongs to the next connection
	}
	return c.l.w.SetWriteDeadline(t)
}
