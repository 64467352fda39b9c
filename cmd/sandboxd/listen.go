package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// socketMode lets root and the socket's group use the API, nobody else.
const socketMode = 0o660

// listen opens the unix socket (replacing a stale one) and, if asked, the
// loopback TCP listener.
func listen(socket, tcp string) ([]net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		return nil, fmt.Errorf("creating socket directory: %w", err)
	}
	if _, err := os.Lstat(socket); err == nil {
		// A live daemon answers; a stale socket from a crash does not.
		if c, err := net.DialTimeout("unix", socket, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("another daemon is serving on %s", socket)
		}
		if err := os.Remove(socket); err != nil {
			return nil, fmt.Errorf("removing stale socket: %w", err)
		}
	}
	// The socket is created with socketMode from the start: no window in
	// which other users could connect.
	old := syscall.Umask(0o777 &^ socketMode)
	ul, err := net.Listen("unix", socket)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", socket, err)
	}
	ls := []net.Listener{ul}
	if tcp != "" {
		tl, err := net.Listen("tcp", tcp)
		if err != nil {
			ul.Close()
			return nil, fmt.Errorf("listening on %s: %w", tcp, err)
		}
		ls = append(ls, tl)
	}
	return ls, nil
}

// lockStateDir makes sure one daemon at a time uses a state directory: the
// daemon deletes every sandbox it finds there at start.
func lockStateDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "sandboxd.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another sandboxd is using state directory %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
