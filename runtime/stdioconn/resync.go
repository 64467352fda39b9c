package stdioconn

// This file is the resync protocol, which lets a restarted daemon take over
// the pipes of an agent whose daemon died (kill -9) while a holder process
// kept the daemon's ends open. The old HTTP/2 connection is then in an
// unknown state both ways: the agent's stdin may hold the start of a frame
// the old daemon never finished (and anything before it, up to the pipe's
// capacity), its stdout frames nobody read. The protocol runs beneath
// HTTP/2, only when asked for, and costs the data path nothing:
//
//  1. The daemon sends the agent SIGUSR2 (runsc kill <id> USR2); the agent
//     calls Listener.Resync.
//  2. The agent retires its connection (its reads return EOF, its writes
//     fail: a write in progress completes first) and writes a resync record,
//     ResyncMagic followed by a fresh random nonce N, on stdout.
//  3. The daemon (Reattach) reads stdout, skipping the old connection's
//     frames, and answers every record it finds with the record's nonce
//     followed by its own fresh random nonce D on stdin.
//  4. The agent skips stdin up to N (its Accept waits there) and takes the
//     16 bytes after it as D. It echoes D in a resync record on stdout and
//     starts a new connection with the bytes after D.
//  5. Once the daemon reads the record carrying D, the bytes after it on
//     stdout are the new connection's, and it starts its gRPC client, which
//     sends the preface first.
//
// Only the agent writes stdout and only the daemon writes stdin, and neither
// N nor D is in anything written before them: no stale bytes, not even a
// preface or a record inside an old connection's data, can start the
// connection either side sees next. Output of sandboxed code can carry
// records (it runs as the agent's user and can send SIGUSR2 too), so the
// daemon answers every record it sees rather than trusting the first: a
// record's nonce alone proves nothing, the echo of D does, since nothing in
// the sandbox but the agent reads stdin. Forged records and signals can
// break the sandbox's connection (an answer to a forged record that reaches
// the old connection before the agent retired it ends the agent), which its
// code could do anyway by killing the agent, but they cannot make either
// side take stale or forged bytes for the other's new connection.

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"time"
)

// ResyncMagic starts every resync record. The NULs and the name make it
// unlikely in the frames of an old connection, where a chance match would
// only cost an answer the agent ignores.
var ResyncMagic = []byte("\x00\x00SANDBOXD-RESYNC\x00")

// NonceSize is the length of the nonces in the resync protocol: 128 random
// bits, which nobody guesses.
const NonceSize = 16

// MaxResyncDiscard bounds what either side of a resync skips before the
// bytes it waits for. The agent's stale output is at most what the dead
// daemon's HTTP/2 flow-control window let it send (1 MiB, as runtime/sandbox
// sets it) and a few control frames; its stale input at most the pipe's
// capacity (1 MiB), to which the daemon adds a 32-byte answer per record
// forged in the stale output (one can start every 17 bytes): 4 MiB covers
// both.
const MaxResyncDiscard = 4 << 20

// resyncRecord returns ResyncMagic followed by nonce.
func resyncRecord(nonce []byte) []byte {
	return append(append(make([]byte, 0, len(ResyncMagic)+len(nonce)), ResyncMagic...), nonce...)
}

// Resync lets a restarted daemon take over the pipes (steps 2 and 4 of the
// protocol above): it retires the current connection (its reads return EOF, its writes fail,
// and its end does not end the Listener), writes a resync record with a
// fresh nonce on the write pipe after any write in progress, and makes the
// next Accept (or the one waiting) start the connection that follows the
// daemon's answer to that nonce. A Resync supersedes an earlier one whose
// nonce no daemon answered yet. It returns once the record is written,
// which takes a reader of the write pipe if it is full.
func (l *Listener) Resync() error {
	if l.ended() {
		return net.ErrClosed
	}
	nonce := make([]byte, NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("making a resync nonce: %w", err)
	}
	// Bumping gen and reading cur together: no Accept installs a
	// connection from an older generation after this, so c is the last
	// connection the pipe had.
	l.mu.Lock()
	l.gen++
	l.nonce = nonce
	c := l.cur
	if c == nil {
		l.free = true
	}
	l.mu.Unlock()
	if c == nil {
		l.poke()
	} else {
		if _, err := l.release(c); err != nil {
			return err
		}
		// Its reads end now. A write of c already holding writeMu
		// completes before the record; every later one fails.
		c.retire()
	}
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	// A deadline c left must not cut the record.
	l.deadlineMu.Lock()
	_ = l.w.SetWriteDeadline(time.Time{})
	l.deadlineMu.Unlock()
	if _, err := l.w.Write(resyncRecord(nonce)); err != nil {
		return fmt.Errorf("writing the resync record: %w", err)
	}
	return nil
}

// Reattach takes over an agent's pipes for a restarted daemon once the agent
// was sent SIGUSR2: r is the agent's stdout, w its stdin. It answers the
// agent's resync records on w and returns once the agent confirmed, having
// read r exactly up to the confirmation: the next byte on r is the new
// connection's first, and the client's preface goes first on w. It skips at
// most limit bytes of r (MaxResyncDiscard suits a daemon's pipes) and fails
// past that, at the end of r or on a failed write.
//
// r must return what it has rather than wait to fill a buffer, as pipes do:
// no bufio, since Reattach must not read beyond the confirmation. It reads
// up to 64 KiB at a time until it sent its first answer (the agent writes no
// confirmation before one) and after that never more than completes the
// earliest record that the bytes read so far may start. Set deadlines on
// the pipes to bound the wait; if it fails, signal the agent again and
// start over.
func Reattach(r io.Reader, w io.Writer, limit int) error {
	ours := make([]byte, NonceSize)
	if _, err := rand.Read(ours); err != nil {
		return fmt.Errorf("making a resync nonce: %w", err)
	}
	record := len(ResyncMagic) + NonceSize
	// buf holds the bytes from the earliest place a record may start.
	buf := make([]byte, 0, scanChunk)
	answered := false
	skipped := 0
	for {
		p := recordStart(buf)
		skipped += p
		buf = buf[:copy(buf, buf[p:])]
		if skipped > limit {
			return fmt.Errorf("no resync confirmation in %d bytes of the agent's output", limit)
		}
		if len(buf) >= record {
			theirs := buf[len(ResyncMagic):record]
			if bytes.Equal(theirs, ours) {
				return nil
			}
			answer := append(append(make([]byte, 0, 2*NonceSize), theirs...), ours...)
			if _, err := w.Write(answer); err != nil {
				return fmt.Errorf("answering a resync record: %w", err)
			}
			answered = true
			// Another record may start inside this one.
			skipped++
			buf = buf[:copy(buf, buf[1:])]
			continue
		}
		size := cap(buf) - len(buf)
		if answered {
			size = record - len(buf)
		}
		n, err := r.Read(buf[len(buf) : len(buf)+size])
		buf = buf[:len(buf)+n]
		if n == 0 && err != nil {
			return fmt.Errorf("reading the agent's output for a resync record: %w", err)
		}
	}
}

// recordStart returns where the first record in buf may start: the first
// ResyncMagic, or a tail of buf that ResyncMagic starts with, or len(buf).
func recordStart(buf []byte) int {
	if i := bytes.Index(buf, ResyncMagic); i >= 0 {
		return i
	}
	for i := max(0, len(buf)-len(ResyncMagic)+1); i < len(buf); i++ {
		if bytes.HasPrefix(ResyncMagic, buf[i:]) {
			return i
		}
	}
	return len(buf)
}
