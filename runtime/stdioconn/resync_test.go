package stdioconn

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// staleFrame is the start of an HTTP/2 DATA frame that announces 100 bytes
// and carries 10: what a daemon killed mid-write leaves on the agent's stdin.
var staleFrame = []byte("\x00\x00\x64\x00\x00\x00\x00\x00\x01partial...")

// awaitConnOrFail waits for an Accept started with acceptAsync.
func awaitConnOrFail(t *testing.T, next chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c, ok := <-next:
		if !ok {
			t.Fatal("Accept failed")
		}
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return")
	}
	return nil
}

// wantNoConn checks that a pending Accept has not returned.
func wantNoConn(t *testing.T, next chan net.Conn, why string) {
	t.Helper()
	select {
	case <-next:
		t.Fatalf("Accept returned: %s", why)
	case <-time.After(50 * time.Millisecond):
	}
}

// TestResyncRoundTrip guarantees the re-attach of a restarted daemon: the
// old connection's unread output (a write blocked on the full pipe, and a
// record forged in it) all comes before the resync record, the old
// connection reads EOF and writes nothing more, stale input (a partial
// frame, a bare preface) starts nothing, and after Reattach each side reads
// the other's new bytes from the first: Reattach read nothing beyond the
// confirmation.
func TestResyncRoundTrip(t *testing.T) {
	l, in, out := listenerPipes(t)
	old, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	in.Write(staleFrame[:5])
	if _, err := io.ReadFull(old, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	in.Write(staleFrame[5:])
	in.Write(Preface)
	oldRead := make(chan error, 1)
	go func() {
		buf := make([]byte, 64)
		for {
			if _, err := old.Read(buf); err != nil {
				oldRead <- err
				return
			}
		}
	}()
	// Output nobody reads: a forged record and more than the pipe holds.
	forged := resyncRecord(bytes.Repeat([]byte("f"), NonceSize))
	big := bytes.Repeat([]byte("o"), 200<<10)
	stale := append(append([]byte("frames "), forged...), big...)
	written := make(chan error, 1)
	go func() { _, err := old.Write(stale); written <- err }()
	time.Sleep(20 * time.Millisecond)

	next := acceptAsync(l)
	resynced := make(chan error, 1)
	go func() { resynced <- l.Resync() }()
	wantNoConn(t, next, "before the daemon answered")
	select {
	case err := <-oldRead:
		if err != io.EOF {
			t.Fatalf("the old connection's read: want EOF, got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the old connection's read did not end at the Resync")
	}

	var seen bytes.Buffer
	if err := Reattach(io.TeeReader(out, &seen), in, MaxResyncDiscard); err != nil {
		t.Fatalf("Reattach: %v", err)
	}
	if err := <-written; err != nil {
		t.Fatalf("the write in progress at the Resync: %v", err)
	}
	if err := <-resynced; err != nil {
		t.Fatalf("Resync: %v", err)
	}
	c := awaitConnOrFail(t, next)
	// stale, then the agent's record, then its echo of the daemon's nonce.
	got := seen.Bytes()
	record := len(ResyncMagic) + NonceSize
	if len(got) != len(stale)+2*record || !bytes.Equal(got[:len(stale)], stale) ||
		!bytes.Equal(got[len(stale):len(stale)+len(ResyncMagic)], ResyncMagic) ||
		!bytes.Equal(got[len(stale)+record:len(stale)+record+len(ResyncMagic)], ResyncMagic) {
		t.Fatalf("the agent's output: %d bytes, want the %d stale ones and two records", len(got), len(stale))
	}
	if _, err := old.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a resynced connection must not write: %v", err)
	}

	in.Write(append(append([]byte{}, Preface...), "SETTINGS"...))
	want := append(append([]byte{}, Preface...), "SETTINGS"...)
	buf := make([]byte, len(want))
	if _, err := io.ReadFull(c, buf); err != nil || !bytes.Equal(buf, want) {
		t.Fatalf("the new connection read %q, %v", buf, err)
	}
	c.Write([]byte("server settings"))
	buf = make([]byte, len("server settings"))
	if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "server settings" {
		t.Fatalf("the daemon read %q, %v", buf, err)
	}
	old.Close()
	select {
	case <-l.Done():
		t.Fatal("closing a resynced connection ended the listener")
	default:
	}
	c.Close()
	select {
	case <-l.Done():
	case <-time.After(time.Second):
		t.Fatal("closing the new connection did not end the listener")
	}
}

// TestResyncFromAnyState guarantees that a Resync works whatever the
// Listener was doing: serving, detached by a Quiesce and waiting for a
// preface, already resynced (the second supersedes the first), or not yet
// accepting; and that a bare preface, stale or not, starts nothing then.
func TestResyncFromAnyState(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, l *Listener) (old net.Conn)
	}{
		{"serving", func(t *testing.T, l *Listener) net.Conn {
			c, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			return c
		}},
		{"detached", func(t *testing.T, l *Listener) net.Conn {
			c, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Detach(); err != nil {
				t.Fatal(err)
			}
			return c
		}},
		{"resynced", func(t *testing.T, l *Listener) net.Conn {
			c, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Resync(); err != nil {
				t.Fatal(err)
			}
			return c
		}},
		{"before the first Accept", func(t *testing.T, l *Listener) net.Conn { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, in, out := listenerPipes(t)
			old := tc.setup(t, l)
			in.Write(staleFrame)
			var next chan net.Conn
			if old != nil {
				next = acceptAsync(l) // waiting when the Resync comes
			}
			if err := l.Resync(); err != nil {
				t.Fatal(err)
			}
			if old == nil {
				next = acceptAsync(l)
			}
			in.Write(Preface)
			wantNoConn(t, next, "a bare preface after a Resync")
			if old != nil {
				if _, err := old.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
					t.Fatalf("the old connection wrote after the Resync: %v", err)
				}
				if _, err := old.Read(make([]byte, 1)); err != io.EOF {
					t.Fatalf("the old connection's read: want EOF, got %v", err)
				}
			}
			if err := Reattach(out, in, MaxResyncDiscard); err != nil {
				t.Fatalf("Reattach: %v", err)
			}
			c := awaitConnOrFail(t, next)
			in.Write([]byte("new"))
			buf := make([]byte, 3)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "new" {
				t.Fatalf("the new connection read %q, %v", buf, err)
			}
			// It is an ordinary connection: Quiesce can detach it.
			if err := l.Detach(); err != nil {
				t.Fatalf("Detach after the resync: %v", err)
			}
		})
	}
}

// TestResyncTwice guarantees that the second of two Resyncs supersedes the
// first: only the answer to the second nonce starts a connection.
func TestResyncTwice(t *testing.T) {
	l, in, out := listenerPipes(t)
	if _, err := l.Accept(); err != nil {
		t.Fatal(err)
	}
	next := acceptAsync(l)
	for range 2 {
		if err := l.Resync(); err != nil {
			t.Fatal(err)
		}
	}
	record := len(ResyncMagic) + NonceSize
	records := make([]byte, 2*record)
	if _, err := io.ReadFull(out, records); err != nil {
		t.Fatal(err)
	}
	first, second := records[len(ResyncMagic):record], records[record+len(ResyncMagic):]
	ours := bytes.Repeat([]byte("d"), NonceSize)
	in.Write(append(append([]byte{}, first...), ours...))
	wantNoConn(t, next, "answering a superseded nonce")
	in.Write(append(append([]byte{}, second...), ours...))
	awaitConnOrFail(t, next)
	echo := make([]byte, record)
	if _, err := io.ReadFull(out, echo); err != nil || !bytes.Equal(echo, resyncRecord(ours)) {
		t.Fatalf("the agent's confirmation: %q, %v", echo, err)
	}
}

// TestResyncBoundsDiscard guarantees that a peer sending endless bytes
// without the answer cannot make the agent wait without end.
func TestResyncBoundsDiscard(t *testing.T) {
	l, in, _ := listenerPipes(t)
	if _, err := l.Accept(); err != nil {
		t.Fatal(err)
	}
	next := acceptAsync(l)
	if err := l.Resync(); err != nil {
		t.Fatal(err)
	}
	go func() {
		junk := bytes.Repeat(Preface, 64<<10/len(Preface))
		for n := 0; n <= MaxResyncDiscard; n += len(junk) {
			if _, err := in.Write(junk); err != nil {
				return
			}
		}
	}()
	select {
	case c, ok := <-next:
		if ok {
			t.Fatalf("Accept returned %v after more than MaxResyncDiscard bytes", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not fail")
	}
	select {
	case <-l.Done():
	default:
		t.Fatal("Done not closed")
	}
}

// TestCloseWakesAccept guarantees that stopping the gRPC server (SIGTERM)
// does not hang on an Accept waiting for a new connection.
func TestCloseWakesAccept(t *testing.T) {
	l, _, _ := listenerPipes(t)
	if _, err := l.Accept(); err != nil {
		t.Fatal(err)
	}
	next := acceptAsync(l)
	if err := l.Resync(); err != nil {
		t.Fatal(err)
	}
	wantNoConn(t, next, "without an answer")
	l.Close()
	select {
	case c, ok := <-next:
		if ok {
			t.Fatalf("Accept returned %v after Close", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close left Accept waiting")
	}
	if err := l.Resync(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Resync after Close: %v", err)
	}
}

// fakeAgent is the agent's side of a resync, scripted: it serves out, and
// once the daemon answers nonce it serves the echo and then after. A read
// with nothing to serve fails, as the real agent would stay silent there.
type fakeAgent struct {
	out     []byte
	nonce   []byte
	after   string
	answers int
	chunk   int // at most this much a read
}

var errSilent = errors.New("read while the agent is silent")

func (f *fakeAgent) Read(p []byte) (int, error) {
	if len(f.out) == 0 {
		return 0, errSilent
	}
	n := copy(p[:min(len(p), f.chunk)], f.out)
	f.out = f.out[n:]
	return n, nil
}

func (f *fakeAgent) Write(p []byte) (int, error) {
	if len(p) != 2*NonceSize {
		return 0, errors.New("an answer is two nonces")
	}
	f.answers++
	if bytes.Equal(p[:NonceSize], f.nonce) {
		f.out = append(append(f.out, resyncRecord(p[NonceSize:])...), f.after...)
	}
	return len(p), nil
}

// TestReattach guarantees the daemon's side: it finds the agent's record
// among any stale bytes, forged records included (also one whose nonce
// swallows the start of the real record), answers them all, stops reading
// exactly at the confirmation, and gives up past its limit or at EOF.
func TestReattach(t *testing.T) {
	nonce := []byte("agent's-nonce-16")
	real := resyncRecord(nonce)
	frames := bytes.Repeat([]byte("\x00\x00\x10\x00\x00\x00\x00\x00\x03 data data data "), 1000)
	for _, tc := range []struct {
		name    string
		stale   []byte
		limit   int
		answers int
		err     string
	}{
		{"clean", nil, 100, 1, ""},
		{"stale frames", frames, MaxResyncDiscard, 1, ""},
		{"forged records", append(append(bytes.Clone(frames), resyncRecord([]byte("forged-nonce-016"))...), frames...), MaxResyncDiscard, 2, ""},
		{"forged record overlapping the real one", append(bytes.Clone(frames), ResyncMagic...), MaxResyncDiscard, 2, ""},
		{"a partial magic before", append(bytes.Clone(frames), ResyncMagic[:9]...), MaxResyncDiscard, 1, ""},
		{"over the limit", frames, len(frames) - 1, 0, "no resync confirmation"},
	} {
		for _, reads := range []struct {
			name  string
			chunk int
		}{{"bytewise", 1}, {"7 a read", 7}, {"64 KiB a read", 64 << 10}} {
			t.Run(tc.name+"/"+reads.name, func(t *testing.T) {
				f := &fakeAgent{out: append(bytes.Clone(tc.stale), real...), nonce: nonce, after: "SETTINGS", chunk: reads.chunk}
				err := Reattach(f, f, tc.limit)
				if tc.err != "" {
					if err == nil || !strings.Contains(err.Error(), tc.err) {
						t.Fatalf("got %v, want %q", err, tc.err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if f.answers != tc.answers {
					t.Errorf("%d answers, want %d", f.answers, tc.answers)
				}
				if string(f.out) != "SETTINGS" {
					t.Fatalf("Reattach left %q unread, want the new connection's first bytes", f.out)
				}
			})
		}
	}
	if err := Reattach(bytes.NewReader(frames), io.Discard, MaxResyncDiscard); !errors.Is(err, io.EOF) {
		t.Fatalf("at EOF: got %v", err)
	}
}

// TestResyncServesGRPC guarantees what the agent relies on: the gRPC server
// on the Listener keeps serving across a resync, and a new client on the
// same pipes works once Reattach returns.
func TestResyncServesGRPC(t *testing.T) {
	l, in, out := listenerPipes(t)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(srv.Stop)

	dial := func(r, w *os.File) *grpc.ClientConn {
		conn := New(r, w)
		cc, err := grpc.NewClient("passthrough:///agent",
			grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return conn, nil }),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		return cc
	}
	check := func(cc *grpc.ClientConn) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	// The old daemon: its pipe ends are duplicates, so that its crash
	// leaves the pipes open, as the holder process does.
	first := dial(dupFile(t, out), dupFile(t, in))
	if err := check(first); err != nil {
		t.Fatal(err)
	}
	first.Close()
	in.Write(staleFrame)

	if err := l.Resync(); err != nil {
		t.Fatal(err)
	}
	out.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := Reattach(out, in, MaxResyncDiscard); err != nil {
		t.Fatalf("Reattach: %v", err)
	}
	out.SetReadDeadline(time.Time{})
	second := dial(out, in)
	defer second.Close()
	if err := check(second); err != nil {
		t.Fatalf("Check on the new connection: %v", err)
	}
	select {
	case err := <-served:
		t.Fatalf("the server stopped serving: %v", err)
	case <-l.Done():
		t.Fatal("the listener ended")
	default:
	}
}

// dupFile duplicates f's descriptor as a new file.
func dupFile(t *testing.T, f *os.File) *os.File {
	t.Helper()
	sc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var dup *os.File
	var derr error
	if err := sc.Control(func(fd uintptr) {
		nfd, err := unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			derr = err
			return
		}
		dup = os.NewFile(uintptr(nfd), f.Name())
	}); err != nil {
		t.Fatal(err)
	}
	if derr != nil {
		t.Fatal(derr)
	}
	t.Cleanup(func() { dup.Close() })
	return dup
}
