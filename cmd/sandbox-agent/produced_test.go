package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// writeFilesAt writes empty files (and their directories) under dir with the
// modification time mtime.
func writeFilesAt(t testing.TB, dir string, mtime time.Time, names ...string) {
	t.Helper()
	for _, name := range names {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

// entryPaths returns the entries' paths relative to dir.
func entryPaths(t testing.TB, dir string, entries []*sandboxv1.FileEntry) []string {
	t.Helper()
	var paths []string
	for _, e := range entries {
		rel, err := filepath.Rel(dir, e.Path)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, rel)
	}
	return paths
}

// TestProducedFilesSinceSnapshot guarantees that producedFiles lists,
// sorted, the regular files new or changed since the snapshot (hidden and
// deep ones included; a rewrite that kept the old times too) and not
// files written just before the snapshot, untouched files, directories,
// symlinks or what a symlinked directory holds.
func TestProducedFilesSinceSnapshot(t *testing.T) {
	t.Parallel()
	ws, outside := t.TempDir(), t.TempDir()
	start := time.Now()
	writeFilesAt(t, ws, start.Add(-time.Hour), "old.txt", "d/old.txt", "rewritten.txt")
	writeFilesAt(t, ws, start, "just-before.txt")
	before := snapshotWorkspace(context.Background(), ws, start)
	if !before.complete || len(before.files) != 4 {
		t.Fatalf("snapshot: complete %v, %d files", before.complete, len(before.files))
	}
	writeFilesAt(t, ws, start.Add(time.Second), "new.txt", "d/e/f/new.txt", ".hidden/new", "z.txt")
	// Rewritten with its old times put back, as tar or cp -p would.
	writeFilesAt(t, ws, start.Add(-time.Hour), "rewritten.txt")
	writeFilesAt(t, outside, start.Add(time.Second), "escaped.txt")
	if err := os.Symlink(outside, filepath.Join(ws, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("new.txt", filepath.Join(ws, "link.txt")); err != nil {
		t.Fatal(err)
	}
	files, truncated := producedFiles(context.Background(), ws, before)
	want := []string{".hidden/new", "d/e/f/new.txt", "new.txt", "rewritten.txt", "z.txt"}
	if got := entryPaths(t, ws, files); !slices.Equal(got, want) || truncated {
		t.Fatalf("got %q truncated %v, want %q", got, truncated, want)
	}
	if e := files[2]; e.Size != 1 || e.Mode != 0o644 || e.IsDir || !e.ModifiedAt.AsTime().Equal(start.Add(time.Second).Round(0)) {
		t.Fatalf("entry %v", e)
	}
}

// TestProducedFilesIncompleteSnapshot guarantees that when the snapshot
// could not see the whole workspace, files it missed count by their times:
// recent ones are listed, older ones not.
func TestProducedFilesIncompleteSnapshot(t *testing.T) {
	t.Parallel()
	ws := t.TempDir()
	writeFilesAt(t, ws, time.Now().Add(-time.Hour), "a-old.txt", "b-old.txt", "c-old.txt")
	time.Sleep(2 * producedSlack) // their ctimes are now, as the files were just made
	start := time.Now()
	before := snapshotBounded(context.Background(), ws, start, 1)
	if before.complete {
		t.Fatal("a snapshot cut at one entry says it is complete")
	}
	writeFilesAt(t, ws, start.Add(time.Second), "new.txt")
	files, _ := producedFiles(context.Background(), ws, before)
	if got := entryPaths(t, ws, files); !slices.Equal(got, []string{"new.txt"}) {
		t.Fatalf("got %q, want only new.txt", got)
	}
}

// TestProducedFilesBounds guarantees that producedFiles returns at most
// maxFiles files, reads at most maxNames entries, and says when either cut
// the list, and that a missing workspace yields none, truncated.
func TestProducedFilesBounds(t *testing.T) {
	t.Parallel()
	ws := t.TempDir()
	start := time.Now()
	before := snapshotWorkspace(context.Background(), ws, start)
	var names []string
	for i := range 30 {
		names = append(names, fmt.Sprintf("f%02d", i))
	}
	writeFilesAt(t, ws, start, names...)
	for _, c := range []struct {
		maxFiles, maxNames, want int
		truncated                bool
	}{
		{30, 100, 30, false},
		{29, 100, 29, true},
		{100, 30, 30, false},
		{100, 29, 29, true},
	} {
		files, truncated := findProduced(context.Background(), ws, before, c.maxFiles, c.maxNames)
		if len(files) != c.want || truncated != c.truncated {
			t.Errorf("maxFiles %d maxNames %d: %d files, truncated %v; want %d, %v", c.maxFiles, c.maxNames, len(files), truncated, c.want, c.truncated)
		}
	}
	if files, truncated := producedFiles(context.Background(), filepath.Join(ws, "missing"), before); files != nil || !truncated {
		t.Fatalf("missing workspace: %v %v", files, truncated)
	}
}

// TestProducedFilesReportedByExec guarantees that an Exec with report_files lists the
// files its code created or modified, and one without lists none.
func TestProducedFilesReportedByExec(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	writeFilesAt(t, a.workspace, time.Now().Add(-time.Hour), "old.txt", "kept.txt")
	req := bashReq("echo hi > out.txt && mkdir -p d && echo x > d/y.csv && echo more >> old.txt")
	req.ReportFiles = true
	o := a.run(t, req)
	wantResult(t, o, ok, 0, false)
	want := []string{"d/y.csv", "old.txt", "out.txt"}
	if got := entryPaths(t, a.workspace, o.result.Files); !slices.Equal(got, want) || o.result.FilesTruncated {
		t.Fatalf("got %q truncated %v, want %q", got, o.result.FilesTruncated, want)
	}
	o = a.run(t, bashReq("echo again > out.txt"))
	if len(o.result.Files) != 0 || o.result.FilesTruncated {
		t.Fatalf("files reported unasked: %v", o.result.Files)
	}
}

// BenchmarkProducedFiles measures what report_files adds to an Exec in a
// workspace of 1,000 files in 10 directories, all written by the Exec (the
// most one Exec reports): the snapshot before and the walk after.
func BenchmarkProducedFiles(b *testing.B) {
	ws := b.TempDir()
	start := time.Now()
	var names []string
	for i := range producedMaxFiles {
		names = append(names, fmt.Sprintf("d%d/f%03d.txt", i%10, i))
	}
	empty := snapshotWorkspace(context.Background(), ws, start)
	writeFilesAt(b, ws, start, names...)
	for b.Loop() {
		snapshotWorkspace(context.Background(), ws, start)
		if files, truncated := producedFiles(context.Background(), ws, empty); len(files) != producedMaxFiles || truncated {
			b.Fatalf("%d files, truncated %v", len(files), truncated)
		}
	}
}
