package holder

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// maxRequest bounds a request packet: requests are one short word, so
	// a longer packet is garbage.
	maxRequest = 64
	// maxReply bounds a reply packet: "ok N", or an error line that quotes
	// at most a maxRequest-byte request.
	maxReply = 256
	// connTimeout bounds how long one client may keep the holder, which
	// serves one connection at a time, waiting: a client sends its request
	// as soon as it is connected and reads the reply at once.
	connTimeout = time.Second
	// listenBacklog is the connections that may wait to be accepted: a
	// daemon connects once at a time per holder, so a few cover a restarted
	// daemon racing the old one's release.
	listenBacklog = 4
	// maxSocketPath is the longest socket path the kernel takes (sun_path
	// is 108 bytes, NUL included).
	maxSocketPath = 107
	// procName is the holder's name in ps and top (at most 15 bytes): the
	// kernel would name it after /proc/self/exe, "exe".
	procName = "sandboxd-holder"
)

// holder is the state of a running holder process.
type holder struct {
	sock  string
	uid   int   // the only peer uid served
	lfd   int   // the listening socket
	held  []int // the held fds, in the order Spawn got them
	watch []int // the held fds that are read ends
}

// Main runs a holder, as Spawn starts it: args are SOCKET COUNT, the ready
// pipe is fd 3 and the COUNT held fds follow it. It returns the process's
// exit code: 0 once released or once the sandbox is gone, 1 if it could not
// listen (having said why on the ready pipe), 2 on a usage error.
func Main(args []string) int {
	n := 0
	if len(args) == 2 {
		n, _ = strconv.Atoi(args[1])
	}
	if n < 1 || n > maxFiles {
		fmt.Fprintf(os.Stderr, "usage: sandboxd %s SOCKET COUNT (the ready pipe at fd %d, 1 to %d held fds after it)\n",
			Subcommand, readyFd, maxFiles)
		return 2
	}
	ready := os.NewFile(readyFd, "ready")
	h, err := start(args[0], n)
	if err != nil {
		fmt.Fprint(ready, err)
		return 1
	}
	_, _ = ready.WriteString(readyMsg)
	ready.Close()
	return h.serve()
}

// start sets the process up and listens on sock.
func start(sock string, n int) (*holder, error) {
	_ = os.WriteFile("/proc/self/comm", []byte(procName), 0) // cosmetic
	// With no terminal these only come from a stray kill; a holder is ended
	// by Release, by its sandbox's end or by SIGTERM.
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT)
	if err := closeInherited(firstHeldFd + n); err != nil {
		return nil, err
	}
	h := &holder{sock: sock, uid: os.Geteuid()}
	for fd := firstHeldFd; fd < firstHeldFd+n; fd++ {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err != nil {
			return nil, fmt.Errorf("checking held fd %d: %w", fd, err)
		}
		h.held = append(h.held, fd)
		if flags&unix.O_ACCMODE == unix.O_RDONLY {
			h.watch = append(h.watch, fd)
		}
	}
	var err error
	if h.lfd, err = listen(sock); err != nil {
		return nil, err
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		h.removeSocket()
		os.Exit(0)
	}()
	return h, nil
}

// closeInherited closes the fds from `from` on that reached the holder by
// accident, left open for exec by whoever started the daemon: every fd the
// Go runtime opens is close-on-exec, so one that is not came through exec.
func closeInherited(from int) error {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("listing fds: %w", err)
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < from {
			continue
		}
		if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil && flags&unix.FD_CLOEXEC == 0 {
			unix.Close(fd)
		}
	}
	return nil
}

// listen replaces a stale socket at sock with a listening one, mode 0600,
// non-blocking so that accepting a client who left returns at once.
func listen(sock string) (int, error) {
	if len(sock) > maxSocketPath {
		return -1, fmt.Errorf("socket path %s: longer than %d bytes", sock, maxSocketPath)
	}
	addr := &unix.SockaddrUnix{Name: sock}
	if live(addr) {
		return -1, fmt.Errorf("%s: another holder listens there", sock)
	}
	if err := os.Remove(sock); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return -1, fmt.Errorf("removing stale socket: %w", err)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("creating socket: %w", err)
	}
	// The holder creates no other file, so the umask can stay.
	unix.Umask(0o177)
	if err := unix.Bind(fd, addr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("binding %s: %w", sock, err)
	}
	if err := unix.Listen(fd, listenBacklog); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listening on %s: %w", sock, err)
	}
	return fd, nil
}

// live reports whether something accepts connections at addr.
func live(addr *unix.SockaddrUnix) bool {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return unix.Connect(fd, addr) == nil
}

// serve answers requests, one connection at a time, until a release or
// until no writer is left on any watched pipe. The one goroutine sleeps in
// poll(2) on the listening socket and the watched read ends, asking for no
// events on those: poll reports POLLHUP on a pipe's read end once every
// writer closed, without the holder ever reading the daemon's data.
func (h *holder) serve() int {
	fds := []unix.PollFd{{Fd: int32(h.lfd), Events: unix.POLLIN}}
	for _, fd := range h.watch {
		fds = append(fds, unix.PollFd{Fd: int32(fd)})
	}
	open := len(h.watch)
	for {
		if _, err := unix.Poll(fds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			h.removeSocket()
			return 1
		}
		for i := 1; i < len(fds); i++ {
			if fds[i].Fd >= 0 && fds[i].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
				fds[i].Fd = -1 // poll skips it from now on
				open--
			}
		}
		if len(h.watch) > 0 && open == 0 {
			h.removeSocket()
			return 0
		}
		if fds[0].Revents&unix.POLLIN != 0 && h.accept() {
			return 0
		}
	}
}

// accept serves one waiting connection, if any, and reports whether it
// released the holder.
func (h *holder) accept() (released bool) {
	cfd, _, err := unix.Accept4(h.lfd, unix.SOCK_CLOEXEC)
	if err != nil {
		return false // EAGAIN or ECONNABORTED: the client left
	}
	defer unix.Close(cfd)
	tv := unix.NsecToTimeval(connTimeout.Nanoseconds())
	if unix.SetsockoptTimeval(cfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv) != nil ||
		unix.SetsockoptTimeval(cfd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv) != nil {
		return false
	}
	buf := make([]byte, maxRequest)
	var n, flags int
	for {
		// A socket with a receive timeout is not restarted after a
		// signal (signal(7)): an interrupted read is tried again, since
		// closing the connection with its request unread resets it.
		n, _, flags, _, err = unix.Recvmsg(cfd, buf, nil, 0)
		if err != unix.EINTR {
			break
		}
	}
	switch {
	case err != nil || n == 0:
		return false // timed out or left without asking
	case flags&unix.MSG_TRUNC != 0:
		reply(cfd, fmt.Sprintf("%srequest longer than %d bytes", replyError, maxRequest), nil)
		return false
	}
	// Checked after the read: closing a connection with its request unread
	// would reset it, and the client would not see the reply.
	cred, err := unix.GetsockoptUcred(cfd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		reply(cfd, replyError+"reading peer credentials: "+err.Error(), nil)
		return false
	}
	if int(cred.Uid) != h.uid {
		reply(cfd, fmt.Sprintf("%speer uid %d is not %d", replyError, cred.Uid, h.uid), nil)
		return false
	}
	switch req := string(buf[:n]); req {
	case reqGet:
		reply(cfd, fmt.Sprintf("%s %d", replyOK, len(h.held)), unix.UnixRights(h.held...))
		return false
	case reqRelease:
		for _, fd := range h.held {
			unix.Close(fd)
		}
		h.removeSocket()
		reply(cfd, replyOK, nil)
		return true
	default:
		reply(cfd, fmt.Sprintf("%sunknown request %q", replyError, req), nil)
		return false
	}
}

// reply sends one packet (again if a signal interrupted it); a client that
// left gets nothing.
func reply(cfd int, msg string, rights []byte) {
	for unix.Sendmsg(cfd, []byte(msg), rights, nil, unix.MSG_NOSIGNAL) == unix.EINTR {
	}
}

// removeSocket removes the holder's socket, so that the next client gets
// ErrGone at once.
func (h *holder) removeSocket() { _ = os.Remove(h.sock) }
