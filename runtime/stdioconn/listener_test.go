package stdioconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// listenerPipes returns a Listener over two pipes and the far ends: what the
// test writes to in reaches the Listener's reads; out carries its writes.
func listenerPipes(t *testing.T) (l *Listener, in, out *os.File) {
	t.Helper()
	lr, in, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	out, lw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lr.Close(); in.Close(); out.Close(); lw.Close() })
	return NewListener(lr, lw), in, out
}

func acceptAsync(l *Listener) chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(ch)
			return
		}
		ch <- c
	}()
	return ch
}

// TestListenerHandsOverAfterDetach guarantees the hand-over a checkpoint and
// restore rely on: after Detach the old connection still writes (the answer
// to Quiesce arrives), reads nothing more, and the next connection gets the
// new client's bytes from its preface on, with what came before skipped.
func TestListenerHandsOverAfterDetach(t *testing.T) {
	l, in, out := listenerPipes(t)
	first, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	in.Write([]byte("hello"))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(first, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("first connection read %q, %v", buf, err)
	}
	oldRead := make(chan error, 1)
	go func() { _, err := first.Read(make([]byte, 1)); oldRead <- err }()
	next := acceptAsync(l)
	select {
	case <-next:
		t.Fatal("second Accept returned before Detach")
	case <-time.After(20 * time.Millisecond):
	}
	if err := l.Detach(); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Write([]byte("bye")); err != nil {
		t.Fatalf("a detached connection must still write: %v", err)
	}
	if _, err := io.ReadFull(out, buf[:3]); err != nil || string(buf[:3]) != "bye" {
		t.Fatalf("read %q, %v", buf[:3], err)
	}
	// A closing client's GOAWAY, then the new client's preface and frames.
	in.Write([]byte("\x00\x00\x08\x07\x00\x00\x00\x00\x00 stale bytes "))
	in.Write(append(append([]byte{}, Preface...), "SETTINGS"...))
	var second net.Conn
	select {
	case second = <-next:
	case <-time.After(5 * time.Second):
		t.Fatal("second Accept did not return after Detach and a preface")
	}
	got := make([]byte, len(Preface)+8)
	if _, err := io.ReadFull(second, got); err != nil || !bytes.Equal(got, append(append([]byte{}, Preface...), "SETTINGS"...)) {
		t.Fatalf("second connection read %q, %v", got, err)
	}
	select {
	case err := <-oldRead:
		if err != io.EOF {
			t.Fatalf("the old connection's parked read: want EOF, got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the old connection's read did not end when it was retired")
	}
	if _, err := first.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a retired connection must not write on the new pipes: %v", err)
	}
	first.Close()
	select {
	case <-l.Done():
		t.Fatal("closing a retired connection ended the listener")
	default:
	}
	second.Close()
	select {
	case <-l.Done():
	case <-time.After(time.Second):
		t.Fatal("closing the attached connection did not end the listener")
	}
}

// TestListenerEndsOnEOFWhileWaiting guarantees that an agent whose sandbox
// is torn down while it waits for a new connection exits instead of
// waiting forever.
func TestListenerEndsOnEOFWhileWaiting(t *testing.T) {
	l, in, _ := listenerPipes(t)
	if _, err := l.Accept(); err != nil {
		t.Fatal(err)
	}
	next := acceptAsync(l)
	if err := l.Detach(); err != nil {
		t.Fatal(err)
	}
	if err := l.Detach(); err == nil {
		t.Fatal("a second Detach of the same connection must fail")
	}
	in.Close()
	select {
	case c, ok := <-next:
		if ok {
			t.Fatalf("Accept returned a connection %v after EOF", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not fail on EOF")
	}
	select {
	case <-l.Done():
	default:
		t.Fatal("Done not closed after EOF")
	}
}

// TestDetachBoundsDiscard guarantees that a peer sending endless bytes
// without a preface cannot make the agent buffer or wait without end, and
// that a preface split across writes still starts a connection.
func TestDetachBoundsDiscard(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes [][]byte
		ok     bool
	}{
		{"endless junk", [][]byte{bytes.Repeat([]byte("x"), 2*maxDiscard)}, false},
		{"split preface", [][]byte{bytes.Repeat([]byte("y"), 4090), Preface[:7], append(Preface[7:len(Preface):len(Preface)], 'z')}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, in, _ := listenerPipes(t)
			if _, err := l.Accept(); err != nil {
				t.Fatal(err)
			}
			if err := l.Detach(); err != nil {
				t.Fatal(err)
			}
			next := acceptAsync(l)
			go func() {
				for _, w := range tc.writes {
					if _, err := in.Write(w); err != nil {
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			}()
			var c net.Conn
			var ok bool
			select {
			case c, ok = <-next:
			case <-time.After(5 * time.Second):
				t.Fatal("Accept neither failed nor returned")
			}
			if ok != tc.ok {
				t.Fatalf("Accept returned a connection: %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			got := make([]byte, len(Preface)+1)
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, append(append([]byte{}, Preface...), 'z')) {
				t.Fatalf("got %q, %v", got, err)
			}
		})
	}
}

// TestCloseUnblocksReader guarantees that closing the attached connection
// (the gRPC server stopping on SIGTERM) wakes a reader blocked on the pipe,
// so the agent can exit while the daemon keeps its end open.
func TestCloseUnblocksReader(t *testing.T) {
	l, _, _ := listenerPipes(t)
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 1)); read <- err }()
	time.Sleep(10 * time.Millisecond)
	c.Close()
	select {
	case err := <-read:
		if err == nil {
			t.Fatal("read returned data after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close left the reader blocked")
	}
	select {
	case <-l.Done():
	default:
		t.Fatal("Done not closed after the attached connection closed")
	}
}
