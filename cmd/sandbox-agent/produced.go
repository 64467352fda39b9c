package main

// This file finds the files an Exec produced (ExecRequest.report_files):
// the regular files under the workspace that are new or changed since a
// snapshot of the workspace taken before the Exec ran, by bounded walks
// that follow no symlink (list.go).
//
// A snapshot, not a time threshold: the kernel stamps file times with a
// coarse clock that lags the one an Exec's start is read from by up to a
// jiffy (4 ms measured at HZ=250), so a threshold needs slack, and with it
// reports files an earlier Exec wrote just before. Comparing inode, size,
// mtime and ctime with the snapshot reports exactly what changed, also a
// file unpacked with old times kept (tar, cp -p), whose ctime moves.

import (
	"context"
	"math"
	"time"

	"golang.org/x/sys/unix"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// producedMaxFiles is the most files one ExecResult lists (sandbox.proto):
// about 100 KB of result.
const producedMaxFiles = 1_000

// producedSlack is how long before the Exec's start a file's mtime or ctime
// may be and still count, for files the snapshot did not see because the
// workspace was too large to walk whole: the kernel's coarse clock lags by
// up to a jiffy (4 ms at HZ=250, 10 ms at HZ=100); twice the worst covers
// it.
const producedSlack = 20 * time.Millisecond

// fileStamp is what changes when a file is written or replaced.
type fileStamp struct {
	ino          uint64
	size         int64
	mtime, ctime unix.Timespec
}

func stampOf(st *unix.Stat_t) fileStamp {
	return fileStamp{ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
}

// workspaceState is the workspace's regular files before an Exec.
type workspaceState struct {
	files map[string]fileStamp // by absolute path
	// complete says the walk saw every file (no bound cut it, nothing was
	// unreadable): then a path it lacks is a new file.
	complete bool
	// start is when the Exec started: files the snapshot missed count when
	// their times are at or after it (less producedSlack).
	start time.Time
}

// snapshotWorkspace records the regular files under workspace, reading at
// most walkMaxNames directory entries.
func snapshotWorkspace(ctx context.Context, workspace string, start time.Time) *workspaceState {
	return snapshotBounded(ctx, workspace, start, walkMaxNames)
}

// snapshotBounded is snapshotWorkspace with its bound as an argument.
func snapshotBounded(ctx context.Context, workspace string, start time.Time, maxNames int) *workspaceState {
	s := &workspaceState{files: map[string]fileStamp{}, start: start}
	root, err := openBeneath(workspace)
	if err != nil {
		return s // no workspace: every file found later is new
	}
	defer root.close()
	w := walker{root: root, rootPath: workspace, verb: "walking", depth: math.MaxInt,
		maxEntries: maxNames, maxNames: maxNames, hidden: true,
		keep: func(path string, st *unix.Stat_t) bool {
			if st.Mode&unix.S_IFMT == unix.S_IFREG {
				s.files[path] = stampOf(st)
			}
			return false
		}}
	res, err := w.walk(ctx)
	s.complete = err == nil && !res.truncated && !res.incomplete
	return s
}

// changed reports whether the regular file at path, as st describes it,
// is new or changed since the snapshot.
func (s *workspaceState) changed(path string, st *unix.Stat_t) bool {
	if was, seen := s.files[path]; seen {
		return was != stampOf(st)
	}
	if s.complete {
		return true
	}
	after := s.start.Add(-producedSlack)
	return !time.Unix(st.Mtim.Unix()).Before(after) || !time.Unix(st.Ctim.Unix()).Before(after)
}

// producedFiles lists, by path, the regular files under workspace that are
// new or changed since before: at most producedMaxFiles, found reading at
// most walkMaxNames directory entries. truncated says a bound cut the
// list, or that part of the workspace could not be walked.
func producedFiles(ctx context.Context, workspace string, before *workspaceState) (files []*sandboxv1.FileEntry, truncated bool) {
	return findProduced(ctx, workspace, before, producedMaxFiles, walkMaxNames)
}

// findProduced is producedFiles with its bounds as arguments.
func findProduced(ctx context.Context, workspace string, before *workspaceState, maxFiles, maxNames int) ([]*sandboxv1.FileEntry, bool) {
	root, err := openBeneath(workspace)
	if err != nil {
		return nil, true
	}
	defer root.close()
	w := walker{root: root, rootPath: workspace, verb: "walking", depth: math.MaxInt,
		maxEntries: maxFiles, maxNames: maxNames, hidden: true,
		keep: func(path string, st *unix.Stat_t) bool {
			return st.Mode&unix.S_IFMT == unix.S_IFREG && before.changed(path, st)
		}}
	res, err := w.walk(ctx)
	if err != nil { // cancelled: the Exec's reply will not go out anyway
		return nil, true
	}
	return res.entries, res.truncated || res.incomplete
}
