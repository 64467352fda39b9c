package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// The editor's commands, short.
const (
	cmdView       = sandboxv1.EditCommand_EDIT_COMMAND_VIEW
	cmdCreate     = sandboxv1.EditCommand_EDIT_COMMAND_CREATE
	cmdStrReplace = sandboxv1.EditCommand_EDIT_COMMAND_STR_REPLACE
	cmdInsert     = sandboxv1.EditCommand_EDIT_COMMAND_INSERT
)

// editCase is one EditFile request and what it must answer.
type editCase struct {
	name string
	req  *sandboxv1.EditFileRequest
	// code is the status wanted; OK: success.
	code codes.Code
	// content is the whole content wanted on success, or words the error
	// message must contain.
	content string
	// file is the file's content wanted afterwards ("" leaves it unchecked).
	file string
}

// runEdits runs each case as a subtest against a, with the files of setup
// written afresh in its workspace before each.
func runEdits(t *testing.T, a *agent, setup map[string]string, cases []editCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for name, data := range setup {
				if err := os.WriteFile(filepath.Join(a.workspace, name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			resp, err := a.EditFile(context.Background(), c.req)
			if status.Code(err) != c.code {
				t.Fatalf("got %v, want code %v", err, c.code)
			}
			if err != nil {
				if msg := status.Convert(err).Message(); !strings.Contains(msg, c.content) {
					t.Fatalf("message %q lacks %q", msg, c.content)
				}
				return
			}
			if resp.Content != c.content {
				t.Fatalf("content:\n%s\nwant:\n%s", resp.Content, c.content)
			}
			if c.file != "" {
				got, err := os.ReadFile(filepath.Join(a.workspace, c.req.Path))
				if err != nil || string(got) != c.file {
					t.Fatalf("file %q, %v; want %q", got, err, c.file)
				}
			}
		})
	}
}

// TestEditViewNumbersLines guarantees VIEW's `cat -n` output, its ranges
// and their limits (errors give the line count), and the CR of CRLF lines
// left out.
func TestEditViewNumbersLines(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	setup := map[string]string{"f.txt": "one\ntwo\nthree\n", "crlf.txt": "a\r\nb\r\n", "nonl.txt": "x\ny", "empty.txt": ""}
	v := func(path string, vr ...int32) *sandboxv1.EditFileRequest {
		return &sandboxv1.EditFileRequest{Command: cmdView, Path: path, ViewRange: vr}
	}
	runEdits(t, a, setup, []editCase{
		{"whole file", v("f.txt"), codes.OK, "     1\tone\n     2\ttwo\n     3\tthree\n", ""},
		{"range", v("f.txt", 2, 3), codes.OK, "     2\ttwo\n     3\tthree\n", ""},
		{"range to the end", v("f.txt", 2, -1), codes.OK, "     2\ttwo\n     3\tthree\n", ""},
		{"one line", v("f.txt", 3, 3), codes.OK, "     3\tthree\n", ""},
		{"crlf", v("crlf.txt"), codes.OK, "     1\ta\n     2\tb\n", ""},
		{"no final newline", v("nonl.txt"), codes.OK, "     1\tx\n     2\ty\n", ""},
		{"empty file", v("empty.txt"), codes.OK, "The file " + filepath.Join(a.workspace, "empty.txt") + " is empty.\n", ""},
		{"first beyond the end", v("f.txt", 4, -1), codes.InvalidArgument, "which has 3 lines", ""},
		{"last beyond the end", v("f.txt", 1, 4), codes.InvalidArgument, "which has 3 lines", ""},
		{"first zero", v("f.txt", 0, 2), codes.InvalidArgument, "first must be in [1, 3]", ""},
		{"last before first", v("f.txt", 3, 2), codes.InvalidArgument, "which has 3 lines", ""},
		{"range of an empty file", v("empty.txt", 1, -1), codes.InvalidArgument, "which is empty", ""},
		{"one number", v("f.txt", 1), codes.InvalidArgument, "give two", ""},
		{"missing file", v("missing.txt"), codes.NotFound, "missing.txt", ""},
	})
}

// TestEditViewCutsAtMaxCharacters guarantees that VIEW stops at
// max_characters (default 16,000) after whole lines, says so and how to see
// the rest, and refuses a max_characters out of bounds.
func TestEditViewCutsAtMaxCharacters(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	var long strings.Builder
	for range 2000 {
		long.WriteString("0123456789\n") // 18 characters numbered
	}
	setup := map[string]string{"f.txt": "one\ntwo\nthree\n", "long.txt": long.String(), "wide.txt": strings.Repeat("é", 100) + "\n"}
	v := func(path string, maxChars int32) *sandboxv1.EditFileRequest {
		return &sandboxv1.EditFileRequest{Command: cmdView, Path: path, MaxCharacters: maxChars}
	}
	runEdits(t, a, setup, []editCase{
		{"cut after line 2", v("f.txt", 25), codes.OK,
			"     1\tone\n     2\ttwo\n[Cut at max_characters=25 after line 2 of 3. Use view_range [3, -1] to see the next lines.]\n", ""},
		// "     1\t" is 7 characters, so 3 é fit in 10.
		{"cut inside the first line, by characters", v("wide.txt", 10), codes.OK,
			"     1\tééé\n[Cut at max_characters=10 inside line 1 of 1, which is longer. Use a larger max_characters (at most 1000000) or read the line with code.]\n", ""},
		{"negative", v("f.txt", -1), codes.InvalidArgument, "max_characters -1", ""},
		{"above the limit", v("f.txt", 1_000_001), codes.InvalidArgument, "[1, 1000000]", ""},
	})
	resp, err := a.EditFile(context.Background(), v("long.txt", 0))
	if err != nil {
		t.Fatal(err)
	}
	// 16,000 characters are 888 lines of 18.
	if !resp.Truncated || !strings.HasSuffix(resp.Content, "after line 888 of 2000. Use view_range [889, -1] to see the next lines.]\n") {
		t.Fatalf("truncated %v, content ends %q", resp.Truncated, resp.Content[len(resp.Content)-200:])
	}
	if resp, err := a.EditFile(context.Background(), v("f.txt", 0)); err != nil || resp.Truncated {
		t.Fatalf("%v %v", resp, err)
	}
}

// TestEditViewDirectoryListsTwoLevels guarantees that VIEW of a directory
// lists its non-hidden entries two levels deep, sorted, directories with a
// slash, without following symlinks, and refuses a view_range.
func TestEditViewDirectoryListsTwoLevels(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	ws := a.workspace
	for _, d := range []string{"src/pkg/deep", ".git/objects", "src/.cache"} {
		if err := os.MkdirAll(filepath.Join(ws, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"README.md", "src/main.go", "src/pkg/deep/x.go", ".env", "src/.hidden"} {
		if err := os.WriteFile(filepath.Join(ws, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(t.TempDir(), filepath.Join(ws, "out")); err != nil {
		t.Fatal(err)
	}
	want := "Here are the files and directories up to 2 levels deep in " + ws + ", excluding hidden items:\n" +
		ws + "/README.md\n" + ws + "/out\n" + ws + "/src/\n" + ws + "/src/main.go\n" + ws + "/src/pkg/\n"
	for _, p := range []string{".", ws, ws + "/"} {
		resp, err := a.EditFile(context.Background(), &sandboxv1.EditFileRequest{Command: cmdView, Path: p})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Content != want || resp.Truncated || resp.Path != ws {
			t.Fatalf("%s: got\n%s\nwant\n%s", p, resp.Content, want)
		}
	}
	_, err := a.EditFile(context.Background(), &sandboxv1.EditFileRequest{Command: cmdView, Path: "src", ViewRange: []int32{1, 2}})
	wantCode(t, err, codes.InvalidArgument)
	resp, err := a.EditFile(context.Background(), &sandboxv1.EditFileRequest{Command: cmdView, Path: ".", MaxCharacters: 150})
	if err != nil || !resp.Truncated || !strings.Contains(resp.Content, "[Cut at max_characters=150") {
		t.Fatalf("%v %v", resp, err)
	}
}

// TestEditCreate guarantees that CREATE writes a new file with mode 0644
// (created true), replaces an existing one keeping its mode (created
// false), needs the parent directory, and refuses directories and symlinks.
func TestEditCreate(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	ws := a.workspace
	c := func(path, text string) *sandboxv1.EditFileRequest {
		return &sandboxv1.EditFileRequest{Command: cmdCreate, Path: path, FileText: text}
	}
	resp, err := a.EditFile(context.Background(), c("new.txt", "hello\n"))
	if err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(ws, "new.txt")
	if !resp.Created || resp.Path != abs || resp.Content != "File created successfully at: "+abs {
		t.Fatalf("%v", resp)
	}
	if fi, err := os.Stat(abs); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("%v %v", fi, err)
	}
	if err := os.Chmod(abs, 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err = a.EditFile(context.Background(), c("new.txt", "bye"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Created || resp.Content != "File overwritten successfully at: "+abs {
		t.Fatalf("%v", resp)
	}
	if got, err := os.ReadFile(abs); err != nil || string(got) != "bye" {
		t.Fatalf("%q %v", got, err)
	}
	if fi, err := os.Stat(abs); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the mode changed: %v %v", fi, err)
	}
	// Absolute paths address the sandbox's file system, workspace or not.
	other := filepath.Join(t.TempDir(), "abs.txt")
	for _, req := range []*sandboxv1.EditFileRequest{
		c(other, "a\n"),
		{Command: cmdInsert, Path: other, InsertLine: 1, NewStr: "b"},
		{Command: cmdStrReplace, Path: other, OldStr: "a", NewStr: "A"},
	} {
		if resp, err := a.EditFile(context.Background(), req); err != nil || resp.Path != other {
			t.Fatalf("%v: %v %v", req, resp, err)
		}
	}
	if got, err := os.ReadFile(other); err != nil || string(got) != "A\nb\n" {
		t.Fatalf("%q %v", got, err)
	}
	if err := os.Mkdir(filepath.Join(ws, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("new.txt", filepath.Join(ws, "link.txt")); err != nil {
		t.Fatal(err)
	}
	runEdits(t, a, nil, []editCase{
		{"missing parent", c("nodir/x.txt", "x"), codes.NotFound, "the directory " + ws + "/nodir does not exist", ""},
		{"a directory", c("dir", "x"), codes.InvalidArgument, "is a directory", ""},
		{"a symlink", c("link.txt", "x"), codes.FailedPrecondition, "is a symbolic link to new.txt", ""},
		{"empty path", c("", "x"), codes.InvalidArgument, "empty path", ""},
	})
	entries, err := os.ReadDir(ws)
	if err != nil || len(entries) != 3 {
		t.Fatalf("a temporary file was left behind: %v %v", entries, err)
	}
}

// TestEditStrReplace guarantees STR_REPLACE's result, snippet and message,
// the trailing newline kept, CRLF files edited with LF strings, and the
// refusals: empty old_str, no match, several (with their lines).
func TestEditStrReplace(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	abs := filepath.Join(a.workspace, "f.txt")
	lines := "l1\nl2\nl3\nl4\nl5\nl6\nl7\nl8\nl9\nl10\n"
	setup := map[string]string{"f.txt": lines, "dup.txt": "x = 1\nfoo()\ny\nfoo()\n", "nonl.txt": "a\nb", "crlf.txt": "a\r\nb\r\nc\r\n"}
	r := func(path, old, repl string) *sandboxv1.EditFileRequest {
		return &sandboxv1.EditFileRequest{Command: cmdStrReplace, Path: path, OldStr: old, NewStr: repl}
	}
	edited := func(path, snippet string) string {
		return "The file " + path + " has been edited. Here's the result of running `cat -n` on a snippet of " + path + ":\n" + snippet + editNote
	}
	runEdits(t, a, setup, []editCase{
		{"one line, snippet of 4 lines around", r("f.txt", "l6\n", "six\n"), codes.OK,
			edited(abs, "     2\tl2\n     3\tl3\n     4\tl4\n     5\tl5\n     6\tsix\n     7\tl7\n     8\tl8\n     9\tl9\n    10\tl10\n"),
			"l1\nl2\nl3\nl4\nl5\nsix\nl7\nl8\nl9\nl10\n"},
		{"more lines in", r("f.txt", "l1\n", "a\nb\n"), codes.OK,
			edited(abs, "     1\ta\n     2\tb\n     3\tl2\n     4\tl3\n     5\tl4\n     6\tl5\n     7\tl6\n"),
			"a\nb\nl2\nl3\nl4\nl5\nl6\nl7\nl8\nl9\nl10\n"},
		{"deleting", r("f.txt", "l10\n", ""), codes.OK,
			edited(abs, "     6\tl6\n     7\tl7\n     8\tl8\n     9\tl9\n"),
			"l1\nl2\nl3\nl4\nl5\nl6\nl7\nl8\nl9\n"},
		{"no final newline stays so", r("nonl.txt", "b", "c"), codes.OK,
			edited(filepath.Join(a.workspace, "nonl.txt"), "     1\ta\n     2\tc\n"), "a\nc"},
		{"crlf", r("crlf.txt", "a\nb\n", "A\nB\nB2\n"), codes.OK,
			edited(filepath.Join(a.workspace, "crlf.txt"), "     1\tA\n     2\tB\n     3\tB2\n     4\tc\n"), "A\r\nB\r\nB2\r\nc\r\n"},
		{"crlf, one line for several", r("crlf.txt", "b", "b1\nb2"), codes.OK,
			edited(filepath.Join(a.workspace, "crlf.txt"), "     1\ta\n     2\tb1\n     3\tb2\n     4\tc\n"), "a\r\nb1\r\nb2\r\nc\r\n"},
		{"no match", r("f.txt", "l11", "x"), codes.FailedPrecondition, "old_str did not appear verbatim in " + abs, lines},
		{"two matches", r("dup.txt", "foo()", "bar()"), codes.FailedPrecondition, "occurs 2 times in " + filepath.Join(a.workspace, "dup.txt") + ", starting on lines 2, 4", ""},
		{"overlapping matches", r("f.txt", "l", "L"), codes.FailedPrecondition, "occurs 10 times", ""},
		{"empty old_str", r("f.txt", "", "x"), codes.InvalidArgument, "old_str is empty", lines},
		{"missing file", r("missing.txt", "a", "b"), codes.NotFound, "no such file; create makes a new one", ""},
	})
	if got, _ := os.ReadFile(filepath.Join(a.workspace, "dup.txt")); string(got) != setup["dup.txt"] {
		t.Fatalf("a refused edit changed the file: %q", got)
	}
}

// TestEditStrReplaceManyMatches guarantees that the message for an old_str
// found very often names its count and the first lines only.
func TestEditStrReplaceManyMatches(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	runEdits(t, a, map[string]string{"f.txt": strings.Repeat("x\n", 100)}, []editCase{
		{"100 matches", &sandboxv1.EditFileRequest{Command: cmdStrReplace, Path: "f.txt", OldStr: "x", NewStr: "y"}, codes.FailedPrecondition,
			"occurs 100 times in " + filepath.Join(a.workspace, "f.txt") + ", the first 20 starting on lines 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20.", ""},
		{"overlapping", &sandboxv1.EditFileRequest{Command: cmdStrReplace, Path: "f.txt", OldStr: "x\nx", NewStr: "y"}, codes.FailedPrecondition,
			"the first 20 starting on lines 1, 2, 3,", ""},
	})
}

// TestEditInsert guarantees INSERT at the top, in the middle and at the
// end, the final-newline state kept, CRLF kept, and a line out of range
// refused with the valid range.
func TestEditInsert(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	abs := filepath.Join(a.workspace, "f.txt")
	setup := map[string]string{"f.txt": "a\nb\nc\n", "nonl.txt": "a\nb", "empty.txt": "", "crlf.txt": "a\r\nb\r\n"}
	in := func(path string, after int32, text string) *sandboxv1.EditFileRequest {
		return &sandboxv1.EditFileRequest{Command: cmdInsert, Path: path, InsertLine: after, NewStr: text}
	}
	edited := func(path, snippet string) string {
		return "The file " + path + " has been edited. Here's the result of running `cat -n` on a snippet of " + path + ":\n" + snippet + editNote
	}
	runEdits(t, a, setup, []editCase{
		{"at 0", in("f.txt", 0, "top"), codes.OK, edited(abs, "     1\ttop\n     2\ta\n     3\tb\n     4\tc\n"), "top\na\nb\nc\n"},
		{"in the middle, two lines", in("f.txt", 1, "x\ny\n"), codes.OK, edited(abs, "     1\ta\n     2\tx\n     3\ty\n     4\tb\n     5\tc\n"), "a\nx\ny\nb\nc\n"},
		{"at the end", in("f.txt", 3, "z"), codes.OK, edited(abs, "     1\ta\n     2\tb\n     3\tc\n     4\tz\n"), "a\nb\nc\nz\n"},
		{"at the end without a final newline", in("nonl.txt", 2, "z\n"), codes.OK,
			edited(filepath.Join(a.workspace, "nonl.txt"), "     1\ta\n     2\tb\n     3\tz\n"), "a\nb\nz"},
		{"into an empty file", in("empty.txt", 0, "z"), codes.OK, edited(filepath.Join(a.workspace, "empty.txt"), "     1\tz\n"), "z\n"},
		{"crlf", in("crlf.txt", 1, "x\ny"), codes.OK,
			edited(filepath.Join(a.workspace, "crlf.txt"), "     1\ta\n     2\tx\n     3\ty\n     4\tb\n"), "a\r\nx\r\ny\r\nb\r\n"},
		{"beyond the end", in("f.txt", 4, "z"), codes.InvalidArgument, "which has 3 lines: it must be in [0, 3]", "a\nb\nc\n"},
		{"negative", in("f.txt", -1, "z"), codes.InvalidArgument, "it must be in [0, 3]", ""},
		{"missing file", in("missing.txt", 0, "z"), codes.NotFound, "no such file", ""},
	})
}

// TestEditRefusesWhatItCannotEdit guarantees the refusals common to the
// commands that read a file: binary (NUL, invalid UTF-8) and too large are
// FAILED_PRECONDITION, a directory for the writing commands and a FIFO are
// INVALID_ARGUMENT, an unspecified command names the valid ones.
func TestEditRefusesWhatItCannotEdit(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	ws := a.workspace
	if err := os.Mkdir(filepath.Join(ws, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(ws, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", editMaxBytes) + "\n"
	setup := map[string]string{"nul.txt": "a\x00b\n", "latin1.txt": "caf\xe9\n", "big.txt": big}
	var cases []editCase
	for _, cmd := range []sandboxv1.EditCommand{cmdView, cmdStrReplace, cmdInsert} {
		req := func(path string) *sandboxv1.EditFileRequest {
			return &sandboxv1.EditFileRequest{Command: cmd, Path: path, OldStr: "a", NewStr: "b"}
		}
		cases = append(cases,
			editCase{cmd.String() + " NUL", req("nul.txt"), codes.FailedPrecondition, "not a text file (a NUL byte at offset 1)", ""},
			editCase{cmd.String() + " invalid UTF-8", req("latin1.txt"), codes.FailedPrecondition, "not a text file (invalid UTF-8 at offset 3)", ""},
			editCase{cmd.String() + " too large", req("big.txt"), codes.FailedPrecondition, "is 4194305 bytes, more than the editor's limit of 4194304", ""},
		)
		cases = append(cases, editCase{cmd.String() + " FIFO, without hanging", req("fifo"), codes.InvalidArgument, "not a regular file", ""})
		if cmd != cmdView {
			cases = append(cases, editCase{cmd.String() + " directory", req("dir"), codes.InvalidArgument, "is a directory", ""})
		}
	}
	cases = append(cases,
		editCase{"create on a directory", &sandboxv1.EditFileRequest{Command: cmdCreate, Path: "dir"}, codes.InvalidArgument, "is a directory", ""},
		editCase{"unspecified command", &sandboxv1.EditFileRequest{Path: "nul.txt"}, codes.InvalidArgument, "use EDIT_COMMAND_VIEW, EDIT_COMMAND_CREATE, EDIT_COMMAND_STR_REPLACE or EDIT_COMMAND_INSERT", ""},
	)
	runEdits(t, a, setup, cases)
	if got, _ := os.ReadFile(filepath.Join(ws, "nul.txt")); string(got) != "a\x00b\n" {
		t.Fatalf("nul.txt changed: %q", got)
	}
}

// TestEditRefusesLargeRequests guarantees that request strings above
// editMaxBytes are INVALID_ARGUMENT. They cannot reach the agent over gRPC
// (maxMessage), so the server is called directly.
func TestEditRefusesLargeRequests(t *testing.T) {
	t.Parallel()
	s := &server{workspace: t.TempDir()}
	big := strings.Repeat("x", editMaxBytes+1)
	for _, req := range []*sandboxv1.EditFileRequest{
		{Command: cmdCreate, Path: "f", FileText: big},
		{Command: cmdStrReplace, Path: "f", OldStr: big},
		{Command: cmdInsert, Path: "f", NewStr: big},
	} {
		_, err := s.EditFile(context.Background(), req)
		wantCode(t, err, codes.InvalidArgument)
	}
	if entries, _ := os.ReadDir(s.workspace); len(entries) != 0 {
		t.Fatalf("written: %v", entries)
	}
}

// TestEditPathEscapes guarantees that relative paths cannot leave the
// workspace with ".." or through a symlink, for every command, and that
// nothing outside changes.
func TestEditPathEscapes(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(a.workspace, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(a.workspace, "secretlink")); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(a.workspace, outside)
	if err != nil {
		t.Fatal(err)
	}
	var cases []editCase
	for _, cmd := range []sandboxv1.EditCommand{cmdView, cmdCreate, cmdStrReplace, cmdInsert} {
		for _, p := range []string{"../secret", "link/secret", "link/new", filepath.Join(rel, "secret")} {
			req := &sandboxv1.EditFileRequest{Command: cmd, Path: p, FileText: "x", OldStr: "s", NewStr: "x"}
			cases = append(cases, editCase{cmd.String() + " " + p, req, codes.InvalidArgument, "out of the workspace", ""})
		}
	}
	cases = append(cases, editCase{"view through a symlink", &sandboxv1.EditFileRequest{Command: cmdView, Path: "secretlink"},
		codes.InvalidArgument, "out of the workspace", ""})
	for _, cmd := range []sandboxv1.EditCommand{cmdCreate, cmdStrReplace, cmdInsert} {
		req := &sandboxv1.EditFileRequest{Command: cmd, Path: "secretlink", FileText: "x", OldStr: "s", NewStr: "x"}
		cases = append(cases, editCase{cmd.String() + " of a symlink", req, codes.FailedPrecondition, "is a symbolic link to " + secret, ""})
	}
	runEdits(t, a, nil, cases)
	entries, _ := os.ReadDir(outside)
	if len(entries) != 1 {
		t.Fatalf("something was written outside: %v", entries)
	}
	if got, _ := os.ReadFile(secret); string(got) != "s\n" {
		t.Fatalf("secret changed to %q", got)
	}
}
