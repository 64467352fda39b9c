package main

// This file resolves relative paths beneath the workspace with openat2(2)
// and RESOLVE_BENEATH, so that neither ".." nor a symlink can lead out of
// it. os.Root would be the obvious tool, but it relies on
// openat(O_NOFOLLOW|O_DIRECTORY) failing on a symlink, and in gVisor (the
// runsc pinned in go.mod) that call follows the symlink: os.Root then lets
// "link/file" through when link points out of the root. RESOLVE_BENEATH is
// enforced by gVisor and Linux alike.

import (
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// resolveBeneath keeps a resolution inside the starting directory and also
// refuses /proc "magic" links, which could jump anywhere.
const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS

// beneath is an open directory that names are resolved beneath.
type beneath struct {
	fd int
}

// openBeneath opens dir for resolving names beneath it.
func openBeneath(dir string) (*beneath, error) {
	fd, err := openRetry(func() (int, error) {
		return unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return nil, err
	}
	return &beneath{fd: fd}, nil
}

func (b *beneath) close() { unix.Close(b.fd) }

// open opens a local name beneath b; an escape fails with EXDEV.
func (b *beneath) open(name string, flags int, perm uint32) (int, error) {
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: resolveBeneath}
	if flags&unix.O_CREAT != 0 {
		how.Mode = uint64(perm) // openat2 refuses a mode without O_CREAT
	}
	return openRetry(func() (int, error) { return unix.Openat2(b.fd, name, how) })
}

// mkdirAll creates the local directory name and its missing parents beneath
// b, each inside a parent that was itself opened beneath b.
func (b *beneath) mkdirAll(name string, perm uint32) error {
	dir := "."
	for _, elem := range strings.Split(filepath.Clean(name), "/") {
		if elem == "." {
			continue
		}
		parent, err := b.open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		err = unix.Mkdirat(parent, elem, perm)
		unix.Close(parent)
		if err != nil && err != unix.EEXIST {
			return err
		}
		dir = filepath.Join(dir, elem)
	}
	return nil
}

// openRetry calls open until it is not interrupted by a signal.
func openRetry(open func() (int, error)) (int, error) {
	for {
		fd, err := open()
		if err != unix.EINTR {
			return fd, err
		}
	}
}
