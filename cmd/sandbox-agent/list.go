package main

// This file is ListFiles and the directory walk it shares with a directory
// VIEW (edit.go) and the files an Exec produced (produced.go). The walk never
// follows a symlink: it lists what lstat sees, opens each directory beneath
// the walk's root with openat2(RESOLVE_BENEATH) (beneath.go says why not
// os.Root) and checks that it opened the directory it had lstat'ed, so a
// symlink swapped in during the walk cannot lead it anywhere else.

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// listMaxDepth is the deepest ListFiles descends (sandbox.proto): deeper
// trees are listed a subdirectory at a time.
const listMaxDepth = 10

// listMaxEntries is the most entries one ListFiles returns (sandbox.proto):
// about 1 MB of reply, well inside maxMessage.
const listMaxEntries = 10_000

// walkMaxNames bounds the directory entries one walk reads, listed or not:
// 100,000 lstat calls take about 0.1 s on Linux and a few times that in
// gVisor, a tolerable worst case for one call, and real workspaces (a
// virtualenv is ~10,000 files) stay below it.
const walkMaxNames = 100_000

// readdirBatch is how many names one getdents round reads.
const readdirBatch = 1024

// permBits are the permission bits FileEntry.mode reports.
const permBits = 0o777

// ListFiles lists the entries beneath a directory down to a depth, sorted by
// path. Symlinks are listed, never followed; directories that cannot be read
// below the listed one are listed without their contents.
func (s *server) ListFiles(ctx context.Context, req *sandboxv1.ListFilesRequest) (*sandboxv1.ListFilesResponse, error) {
	depth := int(req.GetDepth())
	if depth < 0 || depth > listMaxDepth {
		return nil, status.Errorf(codes.InvalidArgument, "depth %d must be in [0, %d] (0 and 1 list the directory's own entries)", depth, listMaxDepth)
	}
	depth = max(depth, 1)
	path := trimSlashes(req.GetPath())
	if path == "" {
		path = "."
	}
	t, err := s.resolve(path)
	if err != nil {
		return nil, err
	}
	defer t.close()
	fd, err := t.open(t.name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, fileError("listing "+t.abs, err)
	}
	defer unix.Close(fd)
	w := walker{root: &beneath{fd: fd}, rootPath: t.abs, verb: "listing", depth: depth,
		maxEntries: listMaxEntries, maxNames: walkMaxNames, hidden: true}
	res, err := w.walk(ctx)
	if err != nil {
		return nil, err
	}
	return &sandboxv1.ListFilesResponse{Entries: res.entries, Truncated: res.truncated}, nil
}

// trimSlashes drops the trailing slashes of a directory path, which
// resolve refuses for files, keeping "/" itself.
func trimSlashes(path string) string {
	if trimmed := strings.TrimRight(path, "/"); trimmed != "" || path == "" {
		return trimmed
	}
	return "/"
}

// walker walks a directory tree breadth-first, shallowest entries first,
// without following symlinks.
type walker struct {
	// root is the directory walked; the walk does not close it.
	root *beneath
	// rootPath is root's absolute path, the prefix of every entry's.
	rootPath string
	// verb names the operation in error messages ("listing").
	verb string
	// depth is how many levels below root to list: 1 lists its entries.
	depth int
	// maxEntries is the most entries kept; one more sets truncated.
	maxEntries int
	// maxNames is the most directory entries read, kept or not; reaching
	// it sets truncated.
	maxNames int
	// hidden lists names starting with '.' and descends into them.
	hidden bool
	// keep chooses the entries to return, given their absolute path; nil
	// keeps all.
	keep func(path string, st *unix.Stat_t) bool
}

// walkResult is what a walk found.
type walkResult struct {
	// entries are sorted by path; when truncated, they are the ones the
	// walk found first (shallowest first).
	entries []*sandboxv1.FileEntry
	// truncated says maxEntries or maxNames stopped the walk.
	truncated bool
	// incomplete says a directory below the root could not be read (or was
	// replaced during the walk), so its entries are missing.
	incomplete bool
}

// pendingDir is a directory the walk has lstat'ed and will read.
type pendingDir struct {
	rel   string // beneath the root
	level int    // 0 for the root, 1 for its entries
	dev   uint64 // what lstat saw, to check that the open finds the same
	ino   uint64
}

// child is one entry of a directory being read.
type child struct {
	name string
	st   unix.Stat_t
}

// dirRead is what reading one directory found.
type dirRead struct {
	// children are the entries listed, sorted by name.
	children []child
	// names counts the names read, listed or not.
	names int
	// full says the directory was read to its end.
	full bool
	// unreadable says some entries could not be lstat'ed.
	unreadable bool
}

// walk lists the tree; its error, a gRPC status, is about the root only
// (or cancellation): deeper failures set incomplete.
func (w *walker) walk(ctx context.Context) (walkResult, error) {
	var res walkResult
	names := 0
	queue := []pendingDir{{rel: ".", level: 0}}
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return res, status.FromContextError(err).Err()
		}
		dir := queue[0]
		queue = queue[1:]
		read, err := w.readDir(dir, w.maxNames-names)
		if err != nil {
			if dir.level == 0 {
				return res, fileError(w.verb+" "+w.rootPath, err)
			}
			res.incomplete = true
			continue
		}
		names += read.names
		res.incomplete = res.incomplete || read.unreadable
		for _, c := range read.children {
			rel := filepath.Join(dir.rel, c.name)
			abs := filepath.Join(w.rootPath, rel)
			if w.keep == nil || w.keep(abs, &c.st) {
				if len(res.entries) == w.maxEntries {
					res.truncated = true
					queue = nil
					break
				}
				res.entries = append(res.entries, fileEntry(abs, &c.st))
			}
			if c.st.Mode&unix.S_IFMT == unix.S_IFDIR && dir.level+1 < w.depth {
				queue = append(queue, pendingDir{rel: rel, level: dir.level + 1, dev: c.st.Dev, ino: c.st.Ino})
			}
		}
		if !read.full {
			res.truncated = true
			break
		}
	}
	slices.SortFunc(res.entries, func(a, b *sandboxv1.FileEntry) int { return strings.Compare(a.Path, b.Path) })
	return res, nil
}

// readDir reads at most budget names of dir and lstats the ones listed
// (entries that vanish meanwhile are left out).
func (w *walker) readDir(dir pendingDir, budget int) (dirRead, error) {
	fd, err := w.root.open(dir.rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return dirRead{}, err
	}
	f := os.NewFile(uintptr(fd), dir.rel)
	defer f.Close()
	if dir.level > 0 {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return dirRead{}, err
		}
		if st.Dev != dir.dev || st.Ino != dir.ino {
			return dirRead{}, errors.New("replaced during the walk")
		}
	}
	var names []string
	read := dirRead{full: true}
	for len(names) < budget {
		batch, err := f.Readdirnames(min(readdirBatch, budget-len(names)))
		names = append(names, batch...)
		if err == io.EOF {
			break
		}
		if err != nil {
			return dirRead{}, err
		}
	}
	// Reaching the budget exactly at the end of the directory is no cut:
	// one more read tells.
	if len(names) >= budget {
		if _, err := f.Readdirnames(1); err != io.EOF {
			read.full = false
		}
	}
	read.names = len(names)
	slices.Sort(names)
	read.children = make([]child, 0, len(names))
	for _, name := range names {
		if !w.hidden && strings.HasPrefix(name, ".") {
			continue
		}
		c := child{name: name}
		if err := unix.Fstatat(fd, name, &c.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			read.unreadable = read.unreadable || !errors.Is(err, unix.ENOENT)
			continue
		}
		read.children = append(read.children, c)
	}
	return read, nil
}

// fileEntry describes the file at path as lstat saw it.
func fileEntry(path string, st *unix.Stat_t) *sandboxv1.FileEntry {
	return &sandboxv1.FileEntry{
		Path:       path,
		Size:       st.Size,
		Mode:       st.Mode & permBits,
		IsDir:      st.Mode&unix.S_IFMT == unix.S_IFDIR,
		ModifiedAt: timestamppb.New(time.Unix(st.Mtim.Unix())),
	}
}
