// Package stdioconn joins a read pipe and a write pipe into one net.Conn, so
// gRPC can run over the stdin/stdout of a sandbox's init process: the daemon
// holds the far ends of the init's stdio (Conn), the agent its own
// stdin/stdout (Listener, which serves one connection after another across a
// checkpoint and restore, and across a restart of the daemon: see resync.go
// and Reattach).
package stdioconn

import (
	"net"
	"os"
	"sync"
	"time"
)

// Conn is a net.Conn reading from one file and writing to another.
type Conn struct {
	r, w      *os.File
	closeOnce sync.Once
	closeErr  error
}

// New returns a Conn that reads r and writes w. Both should be pipes (os.Pipe
// or inherited pipe fds), which Go's poller serves without blocking a thread
// and which support deadlines. The Conn owns both files.
func New(r, w *os.File) *Conn { return &Conn{r: r, w: w} }

// Read reads from the read side.
func (c *Conn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Write writes to the write side.
func (c *Conn) Write(p []byte) (int, error) { return c.w.Write(p) }

// Close closes both sides; later calls return the first result.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		werr := c.w.Close()
		rerr := c.r.Close()
		if werr != nil {
			c.closeErr = werr
		} else {
			c.closeErr = rerr
		}
	})
	return c.closeErr
}

// LocalAddr names the pipe pair.
func (c *Conn) LocalAddr() net.Addr { return addr{} }

// RemoteAddr names the pipe pair.
func (c *Conn) RemoteAddr() net.Addr { return addr{} }

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.r.SetReadDeadline(t); err != nil {
		return err
	}
	return c.w.SetWriteDeadline(t)
}

// SetReadDeadline sets the read side's deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.r.SetReadDeadline(t) }

// SetWriteDeadline sets the write side's deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.w.SetWriteDeadline(t) }

type addr struct{}

func (addr) Network() string { return "pipe" }
func (addr) String() string  { return "stdio" }
