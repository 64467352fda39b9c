package stdioconn

import (
	"bytes"
	"errors"
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

// Listener serves successive connections over one pipe pair: the agent's
// stdin and stdout, which a checkpoint and restore rebind to the restoring
// process's fresh pipes while the agent keeps running. The first Accept
// returns a connection at once. Detach stops the current connection's reads
// (its writes go on, so an answer in flight still arrives); the next Accept
// then waits on the read pipe for a new client's preface, retires the old
// connection (its parked reads return EOF, its writes fail) and returns a
// new one. The Listener owns both files; connections never close them.
type Listener struct {
	r, w *os.File
	// readMu is held around every read of r, so that once Accept holds it
	// no reader of a detached connection is inside a read of the pipe.
	readMu sync.Mutex

	mu       sync.Mutex
	cur      *listenerConn
	accepted bool
	detach   chan struct{} // receives once per Detach
	done     chan struct{} // closed by end
	endOnce  sync.Once
}

// NewListener returns a Listener over r (read) and w (write), both pipes
// served by Go's poller (non-blocking), so that deadlines work.
func NewListener(r, w *os.File) *Listener {
	return &Listener{r: r, w: w, detach: make(chan struct{}, 1), done: make(chan struct{})}
}

// Done is closed when the Listener can serve no more: a connection that was
// not detached ended (the daemon's end of the pipes closed), the read pipe
// failed while waiting for a new connection, or Close was called.
func (l *Listener) Done() <-chan struct{} { return l.done }

func (l *Listener) end() { l.endOnce.Do(func() { close(l.done) }) }

// Accept returns the first connection at once and each later one once a
// Detach happened and a new client's preface arrived.
func (l *Listener) Accept() (net.Conn, error) {
	l.mu.Lock()
	first := !l.accepted
	l.accepted = true
	l.mu.Unlock()
	if first {
		return l.install(nil), nil
	}
	select {
	case <-l.detach:
	case <-l.done:
		return nil, net.ErrClosed
	}
	// Once the lock is ours, the old connection's reader is out of the pipe
	// and parks at its next read: the read pipe is ours.
	l.readMu.Lock()
	defer l.readMu.Unlock()
	if err := l.r.SetReadDeadline(time.Time{}); err != nil {
		l.end()
		return nil, err
	}
	pending, err := awaitPreface(l.r)
	if err != nil {
		l.end()
		return nil, net.ErrClosed
	}
	return l.install(pending), nil
}

// install retires the current connection and makes a new one current.
func (l *Listener) install(pending []byte) *listenerConn {
	c := &listenerConn{l: l, pending: pending, retired: make(chan struct{})}
	l.mu.Lock()
	old := l.cur
	l.cur = c
	l.mu.Unlock()
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
	if c == nil || !c.detached.CompareAndSwap(false, true) {
		return errors.New("no attached connection to detach")
	}
	// A deadline in the past wakes a blocked reader (it may still take
	// bytes that were already there). Once the reader let go of readMu,
	// every later read of the connection parks.
	if err := l.r.SetReadDeadline(time.Unix(1, 0)); err != nil {
		return err
	}
	l.readMu.Lock()
	l.readMu.Unlock()
	l.detach <- struct{}{}
	return nil
}

// Close makes Accept return net.ErrClosed and closes Done.
func (l *Listener) Close() error {
	l.end()
	return nil
}

// Addr names the pipe pair.
func (l *Listener) Addr() net.Addr { return addr{} }

// awaitPreface reads r until the HTTP/2 client preface arrives and returns
// the bytes from the preface on; what came before it is skipped, up to
// maxDiscard.
func awaitPreface(r io.Reader) ([]byte, error) {
	buf := make([]byte, 0, 4096)
	chunk := make([]byte, 4096)
	skipped := 0
	for {
		n, err := r.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if i := bytes.Index(buf, Preface); i >= 0 {
			return buf[i:], nil
		}
		// Keep a tail that may be the start of a split preface.
		if keep := len(Preface) - 1; len(buf) > keep {
			skipped += len(buf) - keep
			buf = append(buf[:0], buf[len(buf)-keep:]...)
		}
		if skipped > maxDiscard {
			return nil, errors.New("no HTTP/2 client preface on the pipe")
		}
		if err != nil {
			return nil, err
		}
	}
}

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

func (c *listenerConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	select {
	case <-c.retired:
		return 0, io.EOF
	default:
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
	select {
	case <-c.retired:
		return 0, net.ErrClosed
	default:
	}
	return c.l.w.Write(p)
}

// Close ends the connection. A connection that was not detached ended
// because the daemon went away or the server stops, so the Listener ends
// too, and a read or write blocked on the pipes returns at once (the
// Listener never closes them: the process exits soon after).
func (c *listenerConn) Close() error {
	c.closed.Do(func() {
		if !c.detached.Load() {
			c.l.end()
			past := time.Unix(1, 0)
			_ = c.l.r.SetReadDeadline(past)
			_ = c.l.w.SetWriteDeadline(past)
		}
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
	if c.detached.Load() {
		return nil // the pipe belongs to the next connection
	}
	return c.l.r.SetReadDeadline(t)
}

func (c *listenerConn) SetWriteDeadline(t time.Time) error { return c.l.w.SetWriteDeadline(t) }
