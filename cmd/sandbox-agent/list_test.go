package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// listPaths lists path to depth and returns the entries' paths relative to
// root, directories with a trailing slash.
func listPaths(t *testing.T, a *agent, path string, depth int32, root string) ([]string, *sandboxv1.ListFilesResponse) {
	t.Helper()
	resp, err := a.ListFiles(context.Background(), &sandboxv1.ListFilesRequest{Path: path, Depth: depth})
	if err != nil {
		t.Fatalf("ListFiles %q depth %d: %v", path, depth, err)
	}
	var paths []string
	for _, e := range resp.Entries {
		rel, err := filepath.Rel(root, e.Path)
		if err != nil || !filepath.IsAbs(e.Path) {
			t.Fatalf("entry %q is not an absolute path under %s", e.Path, root)
		}
		if e.IsDir {
			rel += "/"
		}
		paths = append(paths, rel)
	}
	return paths, resp
}

// TestListFilesDepthAndOrder guarantees that ListFiles lists absolute
// paths sorted, hidden entries included, down to the depth asked (0 and 1:
// the directory's own entries), with size, mode and time, and lists a
// symlink without following it.
func TestListFilesDepthAndOrder(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	ws := a.workspace
	for _, d := range []string{"a/b/c", ".git", "inside"} {
		if err := os.MkdirAll(filepath.Join(ws, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"a.txt", "a/b/c/deep.txt", ".git/HEAD", "inside/x"} {
		if err := os.WriteFile(filepath.Join(ws, f), []byte("12345"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(ws, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("inside", filepath.Join(ws, "in")); err != nil {
		t.Fatal(err)
	}
	// By path: ".../a" < ".../a.txt" < ".../a/b".
	top := []string{".git/", "a/", "a.txt", "in", "inside/", "out"}
	for _, c := range []struct {
		path  string
		depth int32
		want  []string
	}{
		{"", 0, top},
		{"", 1, top},
		{".", 1, top},
		{ws, 1, top},
		{ws + "/", 1, top},
		{"", 2, []string{".git/", ".git/HEAD", "a/", "a.txt", "a/b/", "in", "inside/", "inside/x", "out"}},
		{"", 10, []string{".git/", ".git/HEAD", "a/", "a.txt", "a/b/", "a/b/c/", "a/b/c/deep.txt", "in", "inside/", "inside/x", "out"}},
		{"a/", 3, []string{"a/b/", "a/b/c/", "a/b/c/deep.txt"}},
		{"in", 1, []string{"in/x"}}, // the listed directory itself may be a symlink within the workspace
	} {
		got, _ := listPaths(t, a, c.path, c.depth, ws)
		if !slices.Equal(got, c.want) {
			t.Errorf("%q depth %d: got %q, want %q", c.path, c.depth, got, c.want)
		}
	}
	_, resp := listPaths(t, a, "a/b/c", 1, ws)
	e := resp.Entries[0]
	if e.Size != 5 || e.Mode != 0o640 || e.IsDir || e.ModifiedAt.AsTime().IsZero() || resp.Truncated {
		t.Fatalf("entry %v, truncated %v", e, resp.Truncated)
	}
}

// TestListFilesErrors guarantees the refusals: a depth out of [0, 10], a
// file, a missing directory, and paths leading out of the workspace.
func TestListFilesErrors(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	if err := os.WriteFile(filepath.Join(a.workspace, "f.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(a.workspace, "out")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path  string
		depth int32
		code  codes.Code
		words string
	}{
		{"", -1, codes.InvalidArgument, "depth -1 must be in [0, 10]"},
		{"", 11, codes.InvalidArgument, "depth 11 must be in [0, 10]"},
		{"f.txt", 1, codes.InvalidArgument, "not a directory"},
		{"missing", 1, codes.NotFound, "missing"},
		{"..", 1, codes.InvalidArgument, "out of the workspace"},
		{"out", 1, codes.InvalidArgument, "out of the workspace"},
	} {
		_, err := a.ListFiles(context.Background(), &sandboxv1.ListFilesRequest{Path: c.path, Depth: c.depth})
		if status.Code(err) != c.code || !strings.Contains(status.Convert(err).Message(), c.words) {
			t.Errorf("%q depth %d: got %v, want %v with %q", c.path, c.depth, err, c.code, c.words)
		}
	}
}

// TestListFilesTruncates guarantees that ListFiles stops at 10,000 entries
// and says so.
func TestListFilesTruncates(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	for i := range listMaxEntries + 1 {
		if err := os.WriteFile(filepath.Join(a.workspace, fmt.Sprintf("f%05d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, resp := listPaths(t, a, "", 1, a.workspace)
	if len(resp.Entries) != listMaxEntries || !resp.Truncated {
		t.Fatalf("%d entries, truncated %v", len(resp.Entries), resp.Truncated)
	}
	if err := os.Remove(filepath.Join(a.workspace, "f00000")); err != nil {
		t.Fatal(err)
	}
	if _, resp := listPaths(t, a, "", 1, a.workspace); len(resp.Entries) != listMaxEntries || resp.Truncated {
		t.Fatalf("exactly the limit: %d entries, truncated %v", len(resp.Entries), resp.Truncated)
	}
}

// TestListWalkStopsAtMaxNames guarantees that a walk reads at most maxNames
// directory entries, hidden ones included, and says it was cut, but not
// when the last name read ends the directory.
func TestListWalkStopsAtMaxNames(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, f := range []string{".h1", ".h2", "a", "b"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root, err := openBeneath(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.close()
	for _, c := range []struct {
		maxNames  int
		truncated bool
	}{{3, true}, {4, false}} {
		w := walker{root: root, rootPath: dir, verb: "walking", depth: 1, maxEntries: 10, maxNames: c.maxNames}
		res, err := w.walk(context.Background())
		if err != nil || res.truncated != c.truncated || (!c.truncated && len(res.entries) != 2) {
			t.Fatalf("maxNames %d: %d entries, truncated %v, %v", c.maxNames, len(res.entries), res.truncated, err)
		}
	}
}
