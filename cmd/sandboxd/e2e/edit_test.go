package e2e

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// TestEditFileCommandsEndToEnd guarantees the text-editor contract through
// the daemon, in a real sandbox: each command's effect and answer, and
// each error case's gRPC code (missing file, no or two matches with their
// line numbers, a directory, a range beyond the end, a path out of the
// workspace, a binary file).
func TestEditFileCommandsEndToEnd(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)
	edit := func(req *sandboxv1.EditFileRequest) (*sandboxv1.EditFileResponse, error) {
		req.SandboxId = id
		return d.client.EditFile(ctx(t), req)
	}
	const (
		view    = sandboxv1.EditCommand_EDIT_COMMAND_VIEW
		create  = sandboxv1.EditCommand_EDIT_COMMAND_CREATE
		replace = sandboxv1.EditCommand_EDIT_COMMAND_STR_REPLACE
		insert  = sandboxv1.EditCommand_EDIT_COMMAND_INSERT
	)

	resp, err := edit(&sandboxv1.EditFileRequest{Command: create, Path: "notes.txt", FileText: "alpha\nbeta\ngamma\n"})
	if err != nil || !resp.Created || resp.Path != "/workspace/notes.txt" {
		t.Fatalf("create: %v %v", resp, err)
	}
	if resp, err = edit(&sandboxv1.EditFileRequest{Command: create, Path: "notes.txt", FileText: "alpha\nbeta\ngamma\n"}); err != nil || resp.Created {
		t.Fatalf("create over an existing file must say it replaced it: %v %v", resp, err)
	}
	if resp, err = edit(&sandboxv1.EditFileRequest{Command: view, Path: "notes.txt"}); err != nil || !strings.Contains(resp.Content, "1\talpha") || !strings.Contains(resp.Content, "3\tgamma") {
		t.Fatalf("view: %v %v", resp, err)
	}
	if resp, err = edit(&sandboxv1.EditFileRequest{Command: view, Path: "notes.txt", ViewRange: []int32{2, -1}}); err != nil || strings.Contains(resp.Content, "alpha") || !strings.Contains(resp.Content, "2\tbeta") {
		t.Fatalf("view of [2, -1]: %v %v", resp, err)
	}
	if resp, err = edit(&sandboxv1.EditFileRequest{Command: replace, Path: "notes.txt", OldStr: "beta", NewStr: "BETA"}); err != nil || !strings.Contains(resp.Snippet, "2\tBETA") {
		t.Fatalf("str_replace: %v %v", resp, err)
	}
	if resp, err = edit(&sandboxv1.EditFileRequest{Command: insert, Path: "notes.txt", InsertLine: 0, NewStr: "top"}); err != nil || !strings.Contains(resp.Snippet, "1\ttop") {
		t.Fatalf("insert at 0: %v %v", resp, err)
	}
	if r := py(t, d, id, "open('notes.txt').read()"); r.result.Value != `'top\nalpha\nBETA\ngamma\n'` {
		t.Fatalf("the code sees %s after the edits", r.result.Value)
	}
	if _, err := edit(&sandboxv1.EditFileRequest{Command: create, Path: "twice.txt", FileText: "x = 1\ny = 2\nx = 1\n"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.upload(t, id, "blob.bin", []byte("\x00\x01\x02binary")); err != nil {
		t.Fatal(err)
	}
	wantOK(t, sh(t, d, id, "mkdir -p sub/deep"))
	if _, err := edit(&sandboxv1.EditFileRequest{Command: create, Path: "sub/deep/file.txt", FileText: "deep\n"}); err != nil {
		t.Fatal(err)
	}
	if resp, err = edit(&sandboxv1.EditFileRequest{Command: view, Path: "."}); err != nil || !strings.Contains(resp.Content, "notes.txt") || !strings.Contains(resp.Content, "sub/deep") {
		t.Fatalf("view of the workspace (two levels): %v %v", resp, err)
	}

	for _, c := range []struct {
		name string
		req  *sandboxv1.EditFileRequest
		code codes.Code
		msg  []string // in the message
	}{
		{"missing file", &sandboxv1.EditFileRequest{Command: view, Path: "nope.txt"}, codes.NotFound, nil},
		{"no match", &sandboxv1.EditFileRequest{Command: replace, Path: "notes.txt", OldStr: "delta", NewStr: "x"}, codes.FailedPrecondition, nil},
		{"two matches", &sandboxv1.EditFileRequest{Command: replace, Path: "twice.txt", OldStr: "x = 1", NewStr: "x = 3"}, codes.FailedPrecondition, []string{"1", "3"}},
		{"range beyond the end", &sandboxv1.EditFileRequest{Command: view, Path: "notes.txt", ViewRange: []int32{7, 9}}, codes.InvalidArgument, nil},
		{"insert beyond the end", &sandboxv1.EditFileRequest{Command: insert, Path: "notes.txt", InsertLine: 99, NewStr: "x"}, codes.InvalidArgument, nil},
		{"str_replace on a directory", &sandboxv1.EditFileRequest{Command: replace, Path: "sub", OldStr: "a", NewStr: "b"}, codes.InvalidArgument, nil},
		{"out of the workspace", &sandboxv1.EditFileRequest{Command: view, Path: "../etc/passwd"}, codes.InvalidArgument, nil},
		{"binary file", &sandboxv1.EditFileRequest{Command: view, Path: "blob.bin"}, codes.FailedPrecondition, nil},
		{"no command", &sandboxv1.EditFileRequest{Path: "notes.txt"}, codes.InvalidArgument, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := edit(c.req)
			if status.Code(err) != c.code {
				t.Fatalf("got %v, want %v", err, c.code)
			}
			for _, m := range c.msg {
				if !strings.Contains(status.Convert(err).Message(), m) {
					t.Errorf("message %q lacks %q", status.Convert(err).Message(), m)
				}
			}
		})
	}
	if r := py(t, d, id, "open('twice.txt').read()"); r.result.Value != `'x = 1\ny = 2\nx = 1\n'` {
		t.Fatalf("a refused str_replace changed the file: %s", r.result.Value)
	}

	list, err := d.client.ListFiles(ctx(t), &sandboxv1.ListFilesRequest{SandboxId: id, Depth: 3})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range list.Entries {
		paths = append(paths, e.Path)
	}
	for _, want := range []string{"/workspace/notes.txt", "/workspace/sub", "/workspace/sub/deep/file.txt"} {
		if !slices.Contains(paths, want) {
			t.Errorf("ListFiles depth 3 lacks %s: %v", want, paths)
		}
	}
	if _, err := d.client.ListFiles(ctx(t), &sandboxv1.ListFilesRequest{SandboxId: id, Depth: 11}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("depth 11: %v", err)
	}
}

// TestReportFilesListsWhatTheExecWrote guarantees report_files: the result
// names exactly the files under /workspace that this Exec created or
// modified, not older ones.
func TestReportFilesListsWhatTheExecWrote(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)
	wantOK(t, sh(t, d, id, "echo old > old.txt && mkdir -p out"))
	r, err := d.tryRun(ctx(t), id, &sandboxv1.ExecRequest{Language: sandboxv1.Language_LANGUAGE_PYTHON, ReportFiles: true,
		Code: "open('result.csv', 'w').write('a,b\\n1,2\\n')\nopen('out/summary.txt', 'w').write('done')"})
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, r)
	var got []string
	for _, f := range r.result.Files {
		got = append(got, f.Path)
	}
	if !slices.Equal(got, []string{"/workspace/out/summary.txt", "/workspace/result.csv"}) || r.result.FilesTruncated {
		t.Fatalf("files %v (truncated %v), want the two written, by path", got, r.result.FilesTruncated)
	}
	if r.result.Files[1].Size != 8 || r.result.Files[1].ModifiedAt == nil {
		t.Errorf("result.csv entry %v", r.result.Files[1])
	}
	if r := py(t, d, id, "1"); len(r.result.Files) != 0 {
		t.Errorf("files listed without report_files: %v", r.result.Files)
	}
}
