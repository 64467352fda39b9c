package main

// This file is EditFile: the commands of the text-editor tool models are
// trained on (str_replace_based_edit_tool): view, create, str_replace and
// insert. Paths resolve as in WriteFile and ReadFile (files.go); writes are
// atomic, a temporary file renamed over the old one in the directory opened
// once. Messages are written for a model to act on.
//
// Choices where the tool's reference leaves room:
//   - create needs the parent directory to exist (NOT_FOUND otherwise, as an
//     upload without make_parents), so a typo in a path does not silently
//     make a new tree;
//   - the writing commands refuse a symlink at the path (FAILED_PRECONDITION
//     naming its target) rather than replace it or write through it;
//   - a file whose first line ends in CRLF is edited in CRLF: old_str and
//     new_str written with LF match and are written with CRLF, and view shows
//     lines without the CR;
//   - insert adds whole lines: a final newline in new_str ends its last line
//     rather than adding an empty one, and a file without a final newline
//     keeps lacking one.

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// editMaxBytes bounds the files the editor reads and writes and the strings
// of a request. An edit holds the file a few times in memory, so this keeps
// one edit to some tens of MiB in a sandbox of a few hundred. It equals
// maxMessage, so that a file one CREATE can carry the other commands can
// edit. Text a model edits by hand is far smaller; larger files are data,
// for code to process.
const editMaxBytes = 4 << 20

// viewDefaultChars is a VIEW's max_characters when the request says 0
// (sandbox.proto): about 400 lines of code, a screenful for a model.
const viewDefaultChars = 16_000

// viewMaxChars is the largest max_characters a VIEW accepts (sandbox.proto):
// even at 4 bytes a character the content fits in maxMessage.
const viewMaxChars = 1_000_000

// viewDirDepth is how deep a VIEW of a directory lists, as the tool's
// reference does (find DIR -maxdepth 2).
const viewDirDepth = 2

// viewDirMaxEntries bounds a VIEW of a directory: more than a model can use
// in one reply (a line is ~50 characters, so 1,000 exceed the default
// max_characters threefold), while walking that many stays cheap.
const viewDirMaxEntries = 1_000

// snippetContext is how many lines around an edit its snippet shows, as the
// tool's reference does.
const snippetContext = 4

// snippetMaxChars bounds a snippet (it is in the reply twice, in content and
// snippet): an edit of long lines shows their start, and VIEW the rest.
const snippetMaxChars = viewDefaultChars

// dupLinesShown is how many line numbers a STR_REPLACE whose old_str occurs
// more than once names: enough to find the one meant, short enough to read.
const dupLinesShown = 20

// editNote ends the content of a successful STR_REPLACE or INSERT, as the
// tool's reference does, so that the model checks its edit.
const editNote = "Review the changes and make sure they are as expected (correct indentation, no duplicate lines, etc). Edit the file again if necessary."

// EditFile runs one text-editor command.
func (s *server) EditFile(ctx context.Context, req *sandboxv1.EditFileRequest) (*sandboxv1.EditFileResponse, error) {
	for _, field := range []struct{ name, value string }{
		{"file_text", req.GetFileText()}, {"old_str", req.GetOldStr()}, {"new_str", req.GetNewStr()},
	} {
		if len(field.value) > editMaxBytes {
			return nil, status.Errorf(codes.InvalidArgument, "%s is %d bytes, more than the editor's limit of %d", field.name, len(field.value), editMaxBytes)
		}
	}
	switch req.GetCommand() {
	case sandboxv1.EditCommand_EDIT_COMMAND_VIEW:
		return s.view(ctx, req)
	case sandboxv1.EditCommand_EDIT_COMMAND_CREATE:
		return s.create(req)
	case sandboxv1.EditCommand_EDIT_COMMAND_STR_REPLACE:
		return s.strReplace(req)
	case sandboxv1.EditCommand_EDIT_COMMAND_INSERT:
		return s.insert(req)
	default:
		return nil, status.Errorf(codes.InvalidArgument,
			"command %v is not an editor command: use EDIT_COMMAND_VIEW, EDIT_COMMAND_CREATE, EDIT_COMMAND_STR_REPLACE or EDIT_COMMAND_INSERT", req.GetCommand())
	}
}

// view shows a file's numbered lines or lists a directory.
func (s *server) view(ctx context.Context, req *sandboxv1.EditFileRequest) (*sandboxv1.EditFileResponse, error) {
	budget := int(req.GetMaxCharacters())
	if budget < 0 || budget > viewMaxChars {
		return nil, status.Errorf(codes.InvalidArgument, "max_characters %d must be in [1, %d] (0: %d)", budget, viewMaxChars, viewDefaultChars)
	}
	if budget == 0 {
		budget = viewDefaultChars
	}
	vr := req.GetViewRange()
	if len(vr) != 0 && len(vr) != 2 {
		return nil, status.Errorf(codes.InvalidArgument, "view_range has %d numbers; give two, [first, last], or none", len(vr))
	}
	t, err := s.resolve(trimSlashes(req.GetPath()))
	if err != nil {
		return nil, err
	}
	defer t.close()
	// O_NONBLOCK: opening a FIFO must not hang; it is refused below.
	fd, err := t.open(t.name, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fileError("viewing "+t.abs, err)
	}
	f := os.NewFile(uintptr(fd), t.abs)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileError("viewing "+t.abs, err)
	}
	if fi.IsDir() {
		if len(vr) != 0 {
			return nil, status.Errorf(codes.InvalidArgument, "%s is a directory: view_range applies to files", t.abs)
		}
		return viewDir(ctx, &beneath{fd: fd}, t.abs, budget)
	}
	if !fi.Mode().IsRegular() {
		return nil, status.Errorf(codes.InvalidArgument, "viewing %s: not a regular file", t.abs)
	}
	text, err := readText(f, fi.Size(), t.abs)
	if err != nil {
		return nil, err
	}
	n := countLines(text)
	resp := &sandboxv1.EditFileResponse{Path: t.abs}
	first, last, toEnd := 1, n, true
	if len(vr) == 2 {
		first, last, toEnd = int(vr[0]), int(vr[1]), vr[1] == -1
		if toEnd {
			last = n
		}
		if first < 1 || first > n || last < first || last > n {
			if n == 0 {
				return nil, status.Errorf(codes.InvalidArgument, "view_range [%d, %d] does not fit %s, which is empty: view it without view_range", vr[0], vr[1], t.abs)
			}
			return nil, status.Errorf(codes.InvalidArgument,
				"view_range [%d, %d] does not fit %s, which has %d lines: first must be in [1, %d] and last in [first, %d], or -1 for the end",
				vr[0], vr[1], t.abs, n, n, n)
		}
	}
	if n == 0 {
		resp.Content = fmt.Sprintf("The file %s is empty.\n", t.abs)
		return resp, nil
	}
	out, next := numberLines(text, first, last, budget)
	resp.Content = out
	if next <= last {
		resp.Truncated = true
		rest := strconv.Itoa(last)
		if toEnd {
			rest = "-1"
		}
		if next > first {
			resp.Content += fmt.Sprintf("[Cut at max_characters=%d after line %d of %d. Use view_range [%d, %s] to see the next lines.]\n",
				budget, next-1, n, next, rest)
		} else {
			resp.Content += fmt.Sprintf("\n[Cut at max_characters=%d inside line %d of %d, which is longer. Use a larger max_characters (at most %d) or read the line with code.]\n",
				budget, next, n, viewMaxChars)
		}
	}
	return resp, nil
}

// viewDir lists a directory two levels deep, without hidden entries, like
// `find DIR -maxdepth 2 -not -path '*/.*'`; directories end in a slash.
func viewDir(ctx context.Context, dir *beneath, abs string, budget int) (*sandboxv1.EditFileResponse, error) {
	w := walker{root: dir, rootPath: abs, verb: "viewing", depth: viewDirDepth,
		maxEntries: viewDirMaxEntries, maxNames: walkMaxNames}
	res, err := w.walk(ctx)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Here are the files and directories up to %d levels deep in %s, excluding hidden items:\n", viewDirDepth, abs)
	used := utf8.RuneCountInString(b.String())
	cut := false
	for _, e := range res.entries {
		line := e.Path + "\n"
		if e.IsDir {
			line = e.Path + "/\n"
		}
		if used += utf8.RuneCountInString(line); used > budget {
			cut = true
			break
		}
		b.WriteString(line)
	}
	switch {
	case cut:
		fmt.Fprintf(&b, "[Cut at max_characters=%d. View a subdirectory, or use a larger max_characters, to see the rest.]\n", budget)
	case res.truncated:
		fmt.Fprintf(&b, "[The listing stopped at %d entries. View a subdirectory to see the rest.]\n", len(res.entries))
	}
	return &sandboxv1.EditFileResponse{Content: b.String(), Path: abs, Truncated: cut || res.truncated}, nil
}

// create writes file_text to the path, replacing a file there whole.
func (s *server) create(req *sandboxv1.EditFileRequest) (*sandboxv1.EditFileResponse, error) {
	e, err := s.openEdit(req.GetPath(), "creating")
	if err != nil {
		return nil, err
	}
	defer e.close()
	if err := e.write(req.GetFileText()); err != nil {
		return nil, err
	}
	resp := &sandboxv1.EditFileResponse{Path: e.t.abs, Created: !e.exists}
	if resp.Created {
		resp.Content = "File created successfully at: " + e.t.abs
	} else {
		resp.Content = "File overwritten successfully at: " + e.t.abs
	}
	return resp, nil
}

// strReplace replaces the one occurrence of old_str with new_str.
func (s *server) strReplace(req *sandboxv1.EditFileRequest) (*sandboxv1.EditFileResponse, error) {
	old, repl := req.GetOldStr(), req.GetNewStr()
	if old == "" {
		return nil, status.Error(codes.InvalidArgument, "old_str is empty: give the exact text to replace, which must occur once in the file")
	}
	e, err := s.openEdit(req.GetPath(), "editing")
	if err != nil {
		return nil, err
	}
	defer e.close()
	text, err := e.read()
	if err != nil {
		return nil, err
	}
	if usesCRLF(text) {
		if !strings.Contains(text, old) {
			old = toCRLF(old)
		}
		repl = toCRLF(repl)
	}
	at, err := findOnce(text, old, e.t.abs)
	if err != nil {
		return nil, err
	}
	edited := text[:at] + repl + text[at+len(old):]
	first := 1 + strings.Count(text[:at], "\n")
	return e.finish(edited, first, first+strings.Count(repl, "\n"))
}

// insert adds new_str as whole lines after line insert_line.
func (s *server) insert(req *sandboxv1.EditFileRequest) (*sandboxv1.EditFileResponse, error) {
	e, err := s.openEdit(req.GetPath(), "editing")
	if err != nil {
		return nil, err
	}
	defer e.close()
	text, err := e.read()
	if err != nil {
		return nil, err
	}
	n, after := countLines(text), int(req.GetInsertLine())
	if after < 0 || after > n {
		return nil, status.Errorf(codes.InvalidArgument,
			"insert_line %d does not fit %s, which has %d lines: it must be in [0, %d] (0 inserts before the first line, %d after the last)",
			after, e.t.abs, n, n, n)
	}
	eol, lines := "\n", req.GetNewStr()
	if usesCRLF(text) {
		eol, lines = "\r\n", toCRLF(lines)
	}
	lines = strings.TrimSuffix(lines, eol)
	var edited string
	if after == n && n > 0 && !strings.HasSuffix(text, "\n") {
		edited = text + eol + lines // the file still lacks a final newline
	} else {
		at := lineStart(text, after+1)
		edited = text[:at] + lines + eol + text[at:]
	}
	return e.finish(edited, after+1, after+1+strings.Count(lines, "\n"))
}

// editTarget is a file an edit command writes: the directory holding it,
// opened once so that every later step works in that same directory, and
// what lstat found at the file's name there.
type editTarget struct {
	t      *target
	dir    int    // the directory, O_PATH
	base   string // the file's name in dir
	exists bool
	st     unix.Stat_t // valid when exists
}

// openEdit resolves path for writing: the directory holding it must exist,
// and the name must be a regular file or nothing.
func (s *server) openEdit(path, verb string) (*editTarget, error) {
	t, err := s.resolve(path)
	if err != nil {
		return nil, err
	}
	dir, err := t.open(filepath.Dir(t.name), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.close()
		if errors.Is(err, unix.ENOENT) {
			return nil, status.Errorf(codes.NotFound, "%s %s: the directory %s does not exist; create it first (mkdir -p)", verb, t.abs, filepath.Dir(t.abs))
		}
		return nil, fileError(verb+" "+t.abs, err)
	}
	e := &editTarget{t: t, dir: dir, base: filepath.Base(t.name)}
	err = unix.Fstatat(dir, e.base, &e.st, unix.AT_SYMLINK_NOFOLLOW)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		e.close()
		return nil, fileError(verb+" "+t.abs, err)
	}
	e.exists = err == nil
	if !e.exists {
		return e, nil
	}
	switch e.st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return e, nil
	case unix.S_IFDIR:
		err = status.Errorf(codes.InvalidArgument, "%s %s: is a directory; create, str_replace and insert work on files (view lists a directory)", verb, t.abs)
	case unix.S_IFLNK:
		dest := make([]byte, unix.PathMax)
		n, lerr := unix.Readlinkat(dir, e.base, dest)
		if lerr != nil {
			n = copy(dest, "?")
		}
		err = status.Errorf(codes.FailedPrecondition, "%s %s: is a symbolic link to %s; edit the file it points to by that file's own path", verb, t.abs, dest[:n])
	default:
		err = status.Errorf(codes.InvalidArgument, "%s %s: not a regular file", verb, t.abs)
	}
	e.close()
	return nil, err
}

// close releases the directory and the target.
func (e *editTarget) close() {
	unix.Close(e.dir)
	e.t.close()
}

// read returns the file's text: it must exist, be the file lstat saw, and
// be UTF-8 text of at most editMaxBytes.
func (e *editTarget) read() (string, error) {
	if !e.exists {
		return "", status.Errorf(codes.NotFound, "editing %s: no such file; create makes a new one", e.t.abs)
	}
	root := &beneath{fd: e.dir}
	fd, err := root.open(e.base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return "", fileError("reading "+e.t.abs, err)
	}
	f := os.NewFile(uintptr(fd), e.t.abs)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", fileError("reading "+e.t.abs, err)
	}
	if st.Dev != e.st.Dev || st.Ino != e.st.Ino {
		return "", status.Errorf(codes.Aborted, "%s was replaced while being edited; try again", e.t.abs)
	}
	return readText(f, st.Size, e.t.abs)
}

// write replaces the file with text atomically: a temporary file in the
// same directory, renamed over it. A new file gets defaultFileMode, a
// replaced one keeps its mode.
func (e *editTarget) write(text string) error {
	mode := uint32(defaultFileMode)
	if e.exists {
		mode = e.st.Mode & 0o7777
	}
	tmp := "." + e.base + ".edit-" + rand.Text()[:12]
	fd, err := openRetry(func() (int, error) {
		return unix.Openat(e.dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	})
	if err != nil {
		return fileError("writing "+e.t.abs, err)
	}
	f := os.NewFile(uintptr(fd), e.t.abs)
	done := false
	defer func() {
		if !done { // a second Close is harmless
			f.Close()
			_ = unix.Unlinkat(e.dir, tmp, 0)
		}
	}()
	if _, err := io.WriteString(f, text); err != nil {
		return fileError("writing "+e.t.abs, err)
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return fileError("setting the mode of "+e.t.abs, err)
	}
	if err := f.Sync(); err != nil {
		return fileError("writing "+e.t.abs, err)
	}
	if err := f.Close(); err != nil {
		return fileError("writing "+e.t.abs, err)
	}
	if err := unix.Renameat(e.dir, tmp, e.dir, e.base); err != nil {
		return fileError("writing "+e.t.abs, err)
	}
	done = true
	return nil
}

// finish writes the edited text and answers with a snippet of lines
// first..last (1-based) and snippetContext lines around them.
func (e *editTarget) finish(edited string, first, last int) (*sandboxv1.EditFileResponse, error) {
	if len(edited) > editMaxBytes {
		return nil, status.Errorf(codes.FailedPrecondition, "editing %s: the result would be %d bytes, more than the editor's limit of %d; use code to change the file",
			e.t.abs, len(edited), editMaxBytes)
	}
	if err := e.write(edited); err != nil {
		return nil, err
	}
	n := countLines(edited)
	from, to := max(1, first-snippetContext), min(n, last+snippetContext)
	snippet, next := numberLines(edited, from, to, snippetMaxChars)
	if next <= to {
		if !strings.HasSuffix(snippet, "\n") {
			snippet += "\n"
		}
		snippet += fmt.Sprintf("[Snippet cut at %d characters; view the file to see the rest.]\n", snippetMaxChars)
	}
	return &sandboxv1.EditFileResponse{
		Path:    e.t.abs,
		Snippet: snippet,
		Content: fmt.Sprintf("The file %s has been edited. Here's the result of running `cat -n` on a snippet of %s:\n%s%s", e.t.abs, e.t.abs, snippet, editNote),
	}, nil
}

// readText reads a file of the given size that the editor can work on:
// at most editMaxBytes of UTF-8 without NUL bytes.
func readText(f *os.File, size int64, abs string) (string, error) {
	if size > editMaxBytes {
		return "", tooLarge(abs, size)
	}
	data, err := io.ReadAll(io.LimitReader(f, editMaxBytes+1))
	if err != nil {
		return "", fileError("reading "+abs, err)
	}
	if len(data) > editMaxBytes {
		return "", tooLarge(abs, int64(len(data)))
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return "", status.Errorf(codes.FailedPrecondition, "%s is not a text file (a NUL byte at offset %d): the editor works on UTF-8 text; use code to inspect or change it", abs, i)
	}
	if !utf8.Valid(data) {
		return "", status.Errorf(codes.FailedPrecondition, "%s is not a text file (invalid UTF-8 at offset %d): the editor works on UTF-8 text; use code to inspect or change it", abs, invalidUTF8(data))
	}
	return string(data), nil
}

// tooLarge is the error for a file above editMaxBytes.
func tooLarge(abs string, size int64) error {
	return status.Errorf(codes.FailedPrecondition, "%s is %d bytes, more than the editor's limit of %d; use code to read or change it (e.g. sed -n '1,100p' %s)",
		abs, size, editMaxBytes, abs)
}

// invalidUTF8 returns the offset of the first invalid UTF-8 in data.
func invalidUTF8(data []byte) int {
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(data)
}

// findOnce returns where old occurs in text, or a FAILED_PRECONDITION
// status saying it occurs nowhere or several times (overlapping or not)
// and on which lines.
func findOnce(text, old, abs string) (int, error) {
	at := strings.Index(text, old)
	if at < 0 {
		return 0, status.Errorf(codes.FailedPrecondition,
			"No replacement was performed: old_str did not appear verbatim in %s. View the file and copy the text exactly, whitespace and indentation included.", abs)
	}
	starts := []int{at}
	for len(starts) <= dupLinesShown {
		last := starts[len(starts)-1]
		i := strings.Index(text[last+1:], old)
		if i < 0 {
			break
		}
		starts = append(starts, last+1+i)
	}
	if len(starts) == 1 {
		return at, nil
	}
	count := len(starts)
	if count > dupLinesShown {
		starts = starts[:dupLinesShown]
		count = max(count, strings.Count(text, old))
	}
	lines := make([]string, len(starts))
	line, prev := 1, 0
	for i, start := range starts {
		line += strings.Count(text[prev:start], "\n")
		prev = start
		lines[i] = strconv.Itoa(line)
	}
	where := "starting on lines " + strings.Join(lines, ", ")
	if count > len(starts) {
		where = fmt.Sprintf("the first %d starting on lines %s", len(starts), strings.Join(lines, ", "))
	}
	return 0, status.Errorf(codes.FailedPrecondition,
		"No replacement was performed: old_str occurs %d times in %s, %s. Include more of the surrounding lines in old_str to make it unique.", count, abs, where)
}

// countLines returns the number of lines of text: a final line without a
// newline counts, an empty text has none.
func countLines(text string) int {
	n := strings.Count(text, "\n")
	if text != "" && !strings.HasSuffix(text, "\n") {
		n++
	}
	return n
}

// lineStart returns the offset of line n (1-based) of text, or len(text)
// past the last line.
func lineStart(text string, n int) int {
	off := 0
	for ; n > 1; n-- {
		i := strings.IndexByte(text[off:], '\n')
		if i < 0 {
			return len(text)
		}
		off += i + 1
	}
	return off
}

// numberLines formats lines first..last (1-based, inclusive, existing) of
// text like `cat -n`, at most budget characters of it. It returns the
// output and the first line not shown whole (last+1 when all were); when
// not even line first fits, the output is its start.
func numberLines(text string, first, last, budget int) (string, int) {
	var b strings.Builder
	off, used := lineStart(text, first), 0
	for n := first; n <= last; n++ {
		line := text[off:]
		if i := strings.IndexByte(line, '\n'); i >= 0 {
			line = line[:i]
		}
		off += len(line) + 1
		row := fmt.Sprintf("%6d\t%s\n", n, strings.TrimSuffix(line, "\r"))
		c := utf8.RuneCountInString(row)
		if used+c > budget {
			if n == first {
				b.WriteString(prefixRunes(row, budget))
			}
			return b.String(), n
		}
		b.WriteString(row)
		used += c
	}
	return b.String(), last + 1
}

// prefixRunes returns the first n runes of s.
func prefixRunes(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}

// usesCRLF reports whether text's first line ends in CRLF, which the
// editor takes for the file's line ending.
func usesCRLF(text string) bool {
	i := strings.IndexByte(text, '\n')
	return i > 0 && text[i-1] == '\r'
}

// toCRLF gives every line ending of s as CRLF.
func toCRLF(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}
