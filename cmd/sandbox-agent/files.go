package main

// This file is WriteFile and ReadFile: path resolution (relative paths stay
// inside the workspace, see beneath.go), atomic writes, chunked reads, and
// the mapping of file system errors to gRPC codes.

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// fileChunk is the most file data in one ReadFile message: large enough that
// per-message costs vanish, small next to maxMessage.
const fileChunk = 256 << 10

// defaultFileMode is the mode of a written file whose header says 0.
const defaultFileMode = 0o644

// parentDirMode is the mode of directories that make_parents creates.
const parentDirMode = 0o755

// target is the file a request names: a name beneath the workspace for
// relative paths, or an absolute path in the sandbox's file system.
type target struct {
	ws   *beneath // nil for absolute paths
	name string   // local to the workspace, or absolute
	abs  string   // the absolute path, for replies and messages
}

// resolve maps a request path to its target. Relative paths may not climb
// out of the workspace, lexically (here) or through symlinks (beneath.go).
func (s *server) resolve(path string) (*target, error) {
	if path == "" {
		return nil, status.Error(codes.InvalidArgument, "empty path")
	}
	if strings.HasSuffix(path, "/") {
		return nil, status.Errorf(codes.InvalidArgument, "%s: names a directory", path)
	}
	clean := filepath.Clean(path)
	if filepath.IsAbs(clean) {
		return &target{name: clean, abs: clean}, nil
	}
	if !filepath.IsLocal(clean) {
		return nil, status.Errorf(codes.InvalidArgument, "%s: leads out of the workspace", path)
	}
	ws, err := openBeneath(s.workspace)
	if err != nil {
		return nil, fileError("opening the workspace "+s.workspace, err)
	}
	return &target{ws: ws, name: clean, abs: filepath.Join(s.workspace, clean)}, nil
}

func (t *target) close() {
	if t.ws != nil {
		t.ws.close()
	}
}

// open opens name (local or absolute, as t's own name) with open(2) flags.
func (t *target) open(name string, flags int, perm uint32) (int, error) {
	if t.ws != nil {
		return t.ws.open(name, flags, perm)
	}
	return openRetry(func() (int, error) { return unix.Open(name, flags|unix.O_CLOEXEC, perm) })
}

func (t *target) mkdirAll(name string) error {
	if t.ws != nil {
		return t.ws.mkdirAll(name, parentDirMode)
	}
	return os.MkdirAll(name, parentDirMode)
}

// WriteFile writes the uploaded bytes to a temporary file next to the
// target and renames it over the target once every chunk has arrived. On
// any error or cancellation the temporary file is removed and an existing
// target is left untouched. All of it happens in the target's directory as
// opened once, so a concurrent symlink swap cannot redirect a later step. A
// symlink at the target's own name is replaced, not written through.
func (s *server) WriteFile(stream grpc.ClientStreamingServer[sandboxv1.UploadRequest, sandboxv1.UploadResponse]) error {
	first, err := stream.Recv()
	if err == io.EOF {
		return status.Error(codes.InvalidArgument, "upload without a header")
	}
	if err != nil {
		return err
	}
	h := first.GetHeader()
	if h == nil {
		return status.Error(codes.InvalidArgument, "the first upload message must be the header")
	}
	t, err := s.resolve(h.GetPath())
	if err != nil {
		return err
	}
	defer t.close()
	if h.GetMakeParents() {
		if err := t.mkdirAll(filepath.Dir(t.name)); err != nil {
			return fileError("creating the parents of "+t.abs, err)
		}
	}
	dir, err := t.open(filepath.Dir(t.name), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return fileError("writing "+t.abs, err)
	}
	defer unix.Close(dir)
	base := filepath.Base(t.name)
	var st unix.Stat_t
	if err := unix.Fstatat(dir, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return status.Errorf(codes.InvalidArgument, "writing %s: is a directory", t.abs)
	}
	mode := fs.FileMode(h.GetMode()) & fs.ModePerm
	if mode == 0 {
		mode = defaultFileMode
	}

	tmp := "." + base + ".upload-" + rand.Text()[:12]
	fd, err := openRetry(func() (int, error) {
		return unix.Openat(dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	})
	if err != nil {
		return fileError("writing "+t.abs, err)
	}
	f := os.NewFile(uintptr(fd), t.abs)
	done := false
	defer func() {
		if !done { // a second Close is harmless
			f.Close()
			_ = unix.Unlinkat(dir, tmp, 0)
		}
	}()
	var size int64
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if msg.GetHeader() != nil {
			return status.Error(codes.InvalidArgument, "a second upload header")
		}
		n, err := f.Write(msg.GetChunk())
		size += int64(n)
		if err != nil {
			return fileError("writing "+t.abs, err)
		}
	}
	if err := f.Chmod(mode); err != nil {
		return fileError("setting the mode of "+t.abs, err)
	}
	if err := f.Sync(); err != nil {
		return fileError("writing "+t.abs, err)
	}
	if err := f.Close(); err != nil {
		return fileError("writing "+t.abs, err)
	}
	if err := unix.Renameat(dir, tmp, dir, base); err != nil {
		return fileError("writing "+t.abs, err)
	}
	done = true
	return stream.SendAndClose(&sandboxv1.UploadResponse{Path: t.abs, Size: size})
}

// ReadFile sends the file's info, then its bytes in chunks until EOF.
func (s *server) ReadFile(req *sandboxv1.DownloadRequest, stream grpc.ServerStreamingServer[sandboxv1.DownloadResponse]) error {
	t, err := s.resolve(req.GetPath())
	if err != nil {
		return err
	}
	defer t.close()
	// O_NONBLOCK: opening a FIFO must not hang; it is refused below.
	fd, err := t.open(t.name, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return fileError("reading "+t.abs, err)
	}
	f := os.NewFile(uintptr(fd), t.abs)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fileError("reading "+t.abs, err)
	}
	if fi.IsDir() {
		return status.Errorf(codes.InvalidArgument, "reading %s: is a directory", t.abs)
	}
	if !fi.Mode().IsRegular() {
		return status.Errorf(codes.InvalidArgument, "reading %s: not a regular file", t.abs)
	}
	info := &sandboxv1.FileInfo{Path: t.abs, Size: fi.Size(), Mode: uint32(fi.Mode().Perm())}
	if err := stream.Send(&sandboxv1.DownloadResponse{Msg: &sandboxv1.DownloadResponse_Info{Info: info}}); err != nil {
		return err
	}
	buf := make([]byte, fileChunk)
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			if err := stream.Send(&sandboxv1.DownloadResponse{Msg: &sandboxv1.DownloadResponse_Chunk{Chunk: buf[:n]}}); err != nil {
				return err
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return fileError("reading "+t.abs, err)
		}
	}
}

// fileError turns a file system error into a gRPC status whose message
// names what was being done and the path, without Go's operation names.
func fileError(what string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, unix.EXDEV):
		return status.Errorf(codes.InvalidArgument, "%s: leads out of the workspace", what)
	case errors.Is(err, fs.ErrNotExist):
		code = codes.NotFound
	case errors.Is(err, fs.ErrPermission):
		code = codes.PermissionDenied
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		code = codes.ResourceExhausted
	case errors.Is(err, unix.EISDIR), errors.Is(err, unix.ENOTDIR),
		errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENAMETOOLONG),
		errors.Is(err, unix.EINVAL):
		code = codes.InvalidArgument
	}
	return status.Error(code, fmt.Sprintf("%s: %v", what, err))
}
