package stdioconn

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

// pair returns two Conns wired to each other through two os.Pipes, the way
// the daemon and the agent are wired through the init's stdio.
func pair(t testing.TB) (*Conn, *Conn) {
	t.Helper()
	ar, bw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	br, aw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	a, b := New(ar, aw), New(br, bw)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestConnCarriesBytesBothWays guarantees that what one side writes the other
// reads, in order, in both directions.
func TestConnCarriesBytesBothWays(t *testing.T) {
	a, b := pair(t)
	msg := bytes.Repeat([]byte("sandboxd"), 100000) // larger than a pipe buffer
	go func() {
		a.Write(msg)
	}()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("bytes differ after crossing the pipe")
	}
	go b.Write([]byte("pong"))
	small := make([]byte, 4)
	if _, err := io.ReadFull(a, small); err != nil || string(small) != "pong" {
		t.Fatalf("got %q, %v", small, err)
	}
}

// TestReadDeadline guarantees that a read deadline unblocks a reader, which
// gRPC relies on to notice a silent peer.
func TestReadDeadline(t *testing.T) {
	a, _ := pair(t)
	if err := a.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, err := a.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("want deadline exceeded, got %v", err)
	}
}

// TestPeerCloseGivesEOF guarantees that the reader sees EOF when the peer
// closes, which is how the daemon learns that a sandbox died.
func TestPeerCloseGivesEOF(t *testing.T) {
	a, b := pair(t)
	b.Close()
	if _, err := a.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// BenchmarkRoundTrip measures a 64-byte ping-pong over a pipe pair: the
// floor under the agent protocol.
func BenchmarkRoundTrip(b *testing.B) {
	a, c := pair(b)
	go func() {
		buf := make([]byte, 64)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			c.Write(buf)
		}
	}()
	buf := make([]byte, 64)
	for b.Loop() {
		a.Write(buf)
		io.ReadFull(a, buf)
	}
}
