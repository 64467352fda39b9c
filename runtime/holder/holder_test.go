package holder

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeDaemon makes the test binary a daemon that spawns a holder of its
// extra files (fds 3, 4 and 5) at the socket in its next argument, prints
// the holder's pid and waits to be killed.
const fakeDaemon = "fake-daemon"

// nobody is the uid of the test's non-root peer.
const nobody = 65534

func TestMain(m *testing.M) {
	// A race-enabled holder would sleep a second before it exits.
	holderEnv = append(holderEnv, "GORACE=atexit_sleep_ms=0")
	if len(os.Args) > 2 {
		switch os.Args[1] {
		case Subcommand:
			os.Exit(Main(os.Args[2:]))
		case fakeDaemon:
			files := []*os.File{os.NewFile(3, "inW"), os.NewFile(4, "outR"), os.NewFile(5, "errR")}
			h, err := Spawn(context.Background(), os.Args[2], files)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			fmt.Println(h.Pid)
			select {}
		}
	}
	os.Exit(m.Run())
}

// stdio is a sandbox's three pipes, as the daemon makes them: the daemon
// writes in and reads out and err; the sandbox has the other ends.
type stdio struct {
	daemon  []*os.File // inW, outR, errR
	sandbox []*os.File // inR, outW, errW
}

func newStdio(t *testing.T) *stdio {
	t.Helper()
	var s stdio
	for i := range 3 {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close(); w.Close() })
		if i == 0 {
			s.daemon, s.sandbox = append(s.daemon, w), append(s.sandbox, r)
		} else {
			s.daemon, s.sandbox = append(s.daemon, r), append(s.sandbox, w)
		}
	}
	return &s
}

// crash closes the daemon's own ends, as its death does.
func (s *stdio) crash() { closeAll(s.daemon) }

// check sends a line through each pipe, between the sandbox's ends and
// daemon ends (the fetched ones).
func (s *stdio) check(t *testing.T, daemon []*os.File) {
	t.Helper()
	if len(daemon) != 3 {
		t.Fatalf("got %d fds, want 3", len(daemon))
	}
	for i, name := range []string{"stdin", "stdout", "stderr"} {
		w, r := s.sandbox[i], daemon[i]
		if i == 0 {
			w, r = daemon[i], s.sandbox[i]
		}
		msg := name + " works\n"
		if _, err := w.WriteString(msg); err != nil {
			t.Fatalf("writing %s: %v", name, err)
		}
		_ = r.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := bufio.NewReader(r).ReadString('\n')
		if err != nil || got != msg {
			t.Fatalf("read %q, %v from %s, want %q", got, err, name, msg)
		}
	}
}

// fdOf returns f's fd without Fd, which would make f blocking.
func fdOf(t *testing.T, f *os.File) int {
	t.Helper()
	sc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	if err := sc.Control(func(raw uintptr) { fd = int(raw) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

func spawn(t *testing.T, files []*os.File) *Holder {
	t.Helper()
	h, err := Spawn(context.Background(), filepath.Join(t.TempDir(), "h.sock"), files)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := Release(context.Background(), h.Socket); err != nil && !errors.Is(err, ErrGone) {
			t.Error(err)
		}
		awaitExit(t, h)
	})
	return h
}

func awaitExit(t *testing.T, h *Holder) {
	t.Helper()
	select {
	case <-h.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("holder %d did not exit", h.Pid)
	}
}

func running(h *Holder) bool {
	select {
	case <-h.Done():
		return false
	default:
		return true
	}
}

func get(t *testing.T, sock string) []*os.File {
	t.Helper()
	files, err := Get(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAll(files) })
	return files
}

// TestGetAfterCrash guarantees the point of a holder: once the daemon's own
// ends are closed, the sandbox's pipes still have their daemon side, and one
// restarted daemon after another gets working duplicates of it.
func TestGetAfterCrash(t *testing.T) {
	s := newStdio(t)
	h := spawn(t, s.daemon)
	for _, f := range s.daemon {
		if flags, err := unix.FcntlInt(uintptr(fdOf(t, f)), unix.F_GETFL, 0); err != nil || flags&unix.O_NONBLOCK == 0 {
			t.Fatalf("%s: flags %#x, %v: Spawn must leave the caller's pipes non-blocking", f.Name(), flags, err)
		}
	}
	if fi, err := os.Stat(h.Socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v, %v: want mode 0600", fi, err)
	}
	if sid, err := unix.Getsid(h.Pid); err != nil || sid != h.Pid {
		t.Fatalf("holder session %d, %v: want a session of its own (%d)", sid, err, h.Pid)
	}
	s.crash()
	for range 2 {
		files := get(t, h.Socket)
		s.check(t, files)
		closeAll(files)
	}
	if !running(h) {
		t.Fatal("the holder exited after serving")
	}
}

// TestSurvivesDaemonKill guarantees that a holder lives on when its daemon
// and the daemon's whole process group are killed with SIGKILL, as a crash,
// a Ctrl-C or a service manager would.
func TestSurvivesDaemonKill(t *testing.T) {
	// The orphaned holder becomes this process's child, to be reaped here.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	s := newStdio(t)
	sock := filepath.Join(t.TempDir(), "h.sock")
	daemon := exec.Command(os.Args[0], fakeDaemon, sock)
	daemon.ExtraFiles = s.daemon
	daemon.Stderr = os.Stderr
	daemon.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := daemon.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("the fake daemon failed: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(-daemon.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = daemon.Wait()
	s.crash()
	s.check(t, get(t, sock))
	if err := Release(context.Background(), sock); err != nil {
		t.Fatal(err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
		t.Fatalf("reaping the holder: status %v, %v", ws, err)
	}
}

// TestExitsWithSandbox guarantees that a holder does not outlive its
// sandbox: it exits and removes its socket once no writer is left on any of
// its read ends, and not before.
func TestExitsWithSandbox(t *testing.T) {
	for _, tc := range []struct {
		name   string
		closed []int // sandbox ends closed: 0 stdin, 1 stdout, 2 stderr
		exits  bool
	}{
		{"stdin reader gone", []int{0}, false},
		{"stdout writer gone", []int{1}, false},
		{"every writer gone", []int{1, 2}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStdio(t)
			h := spawn(t, s.daemon)
			s.crash()
			for _, i := range tc.closed {
				s.sandbox[i].Close()
			}
			if !tc.exits {
				time.Sleep(50 * time.Millisecond)
				if !running(h) {
					t.Fatal("the holder exited while its sandbox lives")
				}
				get(t, h.Socket)
				return
			}
			awaitExit(t, h)
			if _, err := os.Stat(h.Socket); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the socket is left: %v", err)
			}
			if _, err := Get(context.Background(), h.Socket); !errors.Is(err, ErrGone) {
				t.Fatalf("Get from an exited holder: %v, want ErrGone", err)
			}
		})
	}
}

// TestRelease guarantees that a released holder closes its fds (the sandbox
// loses its last reader), removes its socket and exits 0.
func TestRelease(t *testing.T) {
	s := newStdio(t)
	h := spawn(t, s.daemon)
	s.crash()
	if err := Release(context.Background(), h.Socket); err != nil {
		t.Fatal(err)
	}
	awaitExit(t, h)
	if _, err := os.Stat(h.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the socket is left: %v", err)
	}
	if _, err := s.sandbox[1].WriteString("x"); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("writing stdout after the release: %v, want EPIPE", err)
	}
	if err := Release(context.Background(), h.Socket); !errors.Is(err, ErrGone) {
		t.Fatalf("a second Release: %v, want ErrGone", err)
	}
}

// TestSignals guarantees that only SIGTERM, of the signals a terminal or
// an operator sends, ends a holder, and that it then removes its socket.
func TestSignals(t *testing.T) {
	for _, tc := range []struct {
		sig   syscall.Signal
		exits bool
	}{
		{syscall.SIGHUP, false},
		{syscall.SIGINT, false},
		{syscall.SIGTERM, true},
	} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			s := newStdio(t)
			h := spawn(t, s.daemon)
			if err := syscall.Kill(h.Pid, tc.sig); err != nil {
				t.Fatal(err)
			}
			if !tc.exits {
				get(t, h.Socket) // served after the signal arrived
				if !running(h) {
					t.Fatal("the holder exited")
				}
				return
			}
			awaitExit(t, h)
			if _, err := os.Stat(h.Socket); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the socket is left: %v", err)
			}
		})
	}
}

// TestGarbageRequests guarantees that a bad request gets an error reply and
// the holder goes on serving.
func TestGarbageRequests(t *testing.T) {
	s := newStdio(t)
	h := spawn(t, s.daemon)
	for _, tc := range []struct {
		req, want string
	}{
		{"bogus", `unknown request "bogus"`},
		{"get\n", `unknown request "get\n"`},
		{"GET", `unknown request "GET"`},
		{strings.Repeat("x", maxRequest+1), fmt.Sprintf("request longer than %d bytes", maxRequest)},
	} {
		_, files, err := roundTrip(context.Background(), h.Socket, tc.req)
		if err == nil || err.Error() != tc.want || files != nil {
			t.Errorf("request %q: %v, %d fds; want error %q", tc.req, err, len(files), tc.want)
		}
	}
	// A client that connects and leaves without asking.
	c, err := net.Dial("unixpacket", h.Socket)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	s.crash()
	s.check(t, get(t, h.Socket))
}

// TestRefusesOtherUsers guarantees that a peer of another uid gets no fds,
// even where the socket's mode would let it connect.
func TestRefusesOtherUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to connect as another user")
	}
	dir, err := os.MkdirTemp("", "holder")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	s := newStdio(t)
	h, err := Spawn(context.Background(), filepath.Join(dir, "h.sock"), s.daemon)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Release(context.Background(), h.Socket); awaitExit(t, h) })
	for _, tc := range []struct {
		name  string
		mode  os.FileMode
		check func(error) bool
	}{
		{"socket as made", 0o600, func(err error) bool { return errors.Is(err, syscall.EACCES) }},
		{"socket open to all", 0o666, func(err error) bool {
			return err != nil && strings.Contains(err.Error(), fmt.Sprintf("peer uid %d is not 0", nobody))
		}},
	} {
		if err := os.Chmod(h.Socket, tc.mode); err != nil {
			t.Fatal(err)
		}
		var files []*os.File
		err := asUser(nobody, func() (err error) {
			files, err = Get(context.Background(), h.Socket)
			return err
		})
		closeAll(files)
		if !tc.check(err) {
			t.Errorf("%s: Get as uid %d: %d fds, %v", tc.name, nobody, len(files), err)
		}
	}
	get(t, h.Socket)
}

// asUser runs f on a thread of its own whose uid is uid: setresuid(2) by
// raw system call changes only the calling thread's credentials, which
// connect(2) records for SO_PEERCRED.
func asUser(uid int, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread, unlike the rest of the process, is
		// not root, so it ends with the goroutine.
		runtime.LockOSThread()
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
			errc <- fmt.Errorf("setresuid: %w", e)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// TestClosesInheritedFds guarantees that a holder keeps no fd but its own:
// not one its daemon inherited and left open for exec.
func TestClosesInheritedFds(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if _, err := unix.FcntlInt(w.Fd(), unix.F_SETFD, 0); err != nil {
		t.Fatal(err)
	}
	s := newStdio(t)
	h := spawn(t, s.daemon)
	if _, err := unix.FcntlInt(w.Fd(), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	held := map[string]bool{}
	for _, f := range s.daemon {
		held[fdLink(t, "/proc/self/fd", fdOf(t, f))] = true
	}
	leaked := fdLink(t, "/proc/self/fd", int(w.Fd()))
	dir := fmt.Sprintf("/proc/%d/fd", h.Pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		fd, _ := strconv.Atoi(e.Name())
		link := fdLink(t, dir, fd)
		switch {
		case link == leaked:
			t.Errorf("the holder keeps the inherited fd as its fd %d", fd)
		case fd < readyFd && link != os.DevNull:
			t.Errorf("the holder's fd %d is %s, want %s", fd, link, os.DevNull)
		case fd >= firstHeldFd && fd < firstHeldFd+3:
			if !held[link] {
				t.Errorf("the holder's fd %d is %s, not one it was given", fd, link)
			}
			delete(held, link)
		}
	}
	if len(held) > 0 {
		t.Errorf("the holder lacks %v", held)
	}
}

func fdLink(t *testing.T, dir string, fd int) string {
	t.Helper()
	link, err := os.Readlink(filepath.Join(dir, strconv.Itoa(fd)))
	if err != nil {
		t.Fatal(err)
	}
	return link
}

// TestSpawnFails guarantees that Spawn says why a holder could not start
// and leaves no process behind.
func TestSpawnFails(t *testing.T) {
	s := newStdio(t)
	live := spawn(t, s.daemon)
	for _, tc := range []struct {
		name  string
		sock  string
		files []*os.File
		want  string
	}{
		{"no fds", filepath.Join(t.TempDir(), "h.sock"), nil, "0 fds, want 1 to 16"},
		{"too many fds", filepath.Join(t.TempDir(), "h.sock"), make([]*os.File, maxFiles+1), "17 fds"},
		{"no directory", filepath.Join(t.TempDir(), "missing", "h.sock"), s.daemon, "binding"},
		{"path too long", filepath.Join(t.TempDir(), strings.Repeat("x", maxSocketPath)), s.daemon, "longer than 107 bytes"},
		{"a live holder there", live.Socket, s.daemon, "another holder listens there"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := Spawn(context.Background(), tc.sock, tc.files)
			if err == nil {
				Release(context.Background(), h.Socket)
				t.Fatal("Spawn succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.sock) {
				t.Fatalf("error %q: want one that names the socket and says %q", err, tc.want)
			}
		})
	}
	get(t, live.Socket)
}

// TestGone guarantees that a caller can tell a holder that is gone, its
// socket missing or stale, from other failures, and that Spawn replaces a
// stale socket.
func TestGone(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, sock string)
	}{
		{"missing socket", func(*testing.T, string) {}},
		{"stale socket", func(t *testing.T, sock string) {
			l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: sock, Net: "unixpacket"})
			if err != nil {
				t.Fatal(err)
			}
			l.SetUnlinkOnClose(false)
			l.Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "h.sock")
			tc.setup(t, sock)
			if _, err := Get(context.Background(), sock); !errors.Is(err, ErrGone) || !strings.Contains(err.Error(), sock) {
				t.Fatalf("Get: %v, want ErrGone naming the socket", err)
			}
			if err := Release(context.Background(), sock); !errors.Is(err, ErrGone) {
				t.Fatalf("Release: %v, want ErrGone", err)
			}
			s := newStdio(t)
			h, err := Spawn(context.Background(), sock, s.daemon)
			if err != nil {
				t.Fatal(err)
			}
			defer awaitExit(t, h)
			defer Release(context.Background(), sock)
			s.check(t, get(t, sock))
		})
	}
}

// TestGetHonorsContext guarantees that a client waiting on a holder that
// does not answer (busy with another client) gives up with its context.
func TestGetHonorsContext(t *testing.T) {
	s := newStdio(t)
	h := spawn(t, s.daemon)
	// A client that connects and asks nothing holds the holder for up to
	// connTimeout.
	c, err := net.Dial("unixpacket", h.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := Get(ctx, h.Socket); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get: %v, want the context's deadline", err)
	}
}

// BenchmarkSpawn measures Spawn (to a listening holder) and reports what a
// running holder costs once b.N of them run, as a daemon's holders do: its
// resident memory, its proportional share of it (the binary's pages are
// shared) and its threads. SANDBOXD_HOLDER_EXE measures another binary,
// such as bin/sandboxd, in place of the test's.
func BenchmarkSpawn(b *testing.B) {
	if exe := os.Getenv("SANDBOXD_HOLDER_EXE"); exe != "" {
		defer func(old string) { executable = old }(executable)
		executable = exe
	}
	dir := b.TempDir()
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	var holders []*Holder
	defer func() {
		for _, h := range holders {
			if err := Release(context.Background(), h.Socket); err != nil {
				b.Error(err)
			}
			<-h.Done()
		}
	}()
	for b.Loop() {
		h, err := Spawn(context.Background(), filepath.Join(dir, strconv.Itoa(len(holders))), []*os.File{r})
		if err != nil {
			b.Fatal(err)
		}
		holders = append(holders, h)
	}
	// Let the holders settle in poll(2) before looking at one.
	time.Sleep(100 * time.Millisecond)
	rss, pss, threads := cost(b, holders[len(holders)-1].Pid)
	b.ReportMetric(rss, "rss-KiB")
	b.ReportMetric(pss, "pss-KiB")
	b.ReportMetric(threads, "threads")
}

// cost reads a process's VmRSS and thread count from /proc/PID/status and
// its Pss from /proc/PID/smaps_rollup.
func cost(b *testing.B, pid int) (rss, pss, threads float64) {
	b.Helper()
	fields := map[string]*float64{"VmRSS:": &rss, "Threads:": &threads, "Pss:": &pss}
	for _, name := range []string{"status", "smaps_rollup"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, name))
		if err != nil {
			b.Fatal(err)
		}
		for line := range strings.Lines(string(data)) {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			if p, ok := fields[f[0]]; ok {
				*p, _ = strconv.ParseFloat(f[1], 64)
			}
		}
	}
	return rss, pss, threads
}

// TestGetRetriesAReset guarantees that a connection the holder drops with
// the request unread (a reset) is asked again, so that a live holder's
// answer is not lost, and that a holder resetting every time still fails.
func TestGetRetriesAReset(t *testing.T) {
	for _, tc := range []struct {
		name   string
		resets int
		ok     bool
	}{
		{"one reset", 1, true},
		{"always resets", resetAttempts, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "h.sock")
			l, err := net.Listen("unixpacket", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				for i := 0; ; i++ {
					c, err := l.Accept()
					if err != nil {
						return
					}
					if i < tc.resets {
						time.Sleep(20 * time.Millisecond) // the request is in, unread
						c.Close()
						continue
					}
					buf := make([]byte, 64)
					c.Read(buf)
					c.Write([]byte(replyOK + " 0"))
					c.Close()
				}
			}()
			files, err := Get(context.Background(), sock)
			if tc.ok && (err != nil || len(files) != 0) {
				t.Fatalf("Get = %v, %v; want the answer after the reset", files, err)
			}
			if !tc.ok && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("Get = %v; want the reset after %d attempts", err, resetAttempts)
			}
		})
	}
}
