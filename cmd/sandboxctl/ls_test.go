package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// TestLsPrintsEntriesAndSaysWhenCut guarantees ls's table (mode, size,
// time, path with "/" for directories), that it passes the path and depth
// on, and that a cut listing is noted.
func TestLsPrintsEntriesAndSaysWhenCut(t *testing.T) {
	var got *sandboxv1.ListFilesRequest
	at := timestamppb.New(time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC))
	f := &fakeServer{list: func(req *sandboxv1.ListFilesRequest) (*sandboxv1.ListFilesResponse, error) {
		got = req
		return &sandboxv1.ListFilesResponse{Truncated: true, Entries: []*sandboxv1.FileEntry{
			{Path: "/workspace/data", Mode: 0o755, IsDir: true, Size: 4096, ModifiedAt: at},
			{Path: "/workspace/data/a.csv", Mode: 0o644, Size: 12, ModifiedAt: at},
		}}, nil
	}}
	r := runOn(t, startFake(t, f), "", "ls", "--depth", "2", "sb-1", "data")
	wantExit(t, r, 0)
	if got.GetSandboxId() != "sb-1" || got.GetPath() != "data" || got.GetDepth() != 2 {
		t.Fatalf("request %v", got)
	}
	for _, want := range []string{"drwxr-xr-x  4096  2026-11-30 09:00:00  /workspace/data/", "-rw-r--r--  12    2026-11-30 09:00:00  /workspace/data/a.csv"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("ls output lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "cut") {
		t.Errorf("a truncated listing is not noted: %q", r.stderr)
	}
}

// TestExecSavesFiguresAndNamesFiles guarantees that exec writes the
// figures a result carries into --images DIR and notes each, notes the
// reported files, and passes --report-files and bash-session on.
func TestExecSavesFiguresAndNamesFiles(t *testing.T) {
	png := []byte("\x89PNG\r\n\x1a\nfake")
	var req *sandboxv1.ExecRequest
	f := &fakeServer{exec: func(r *sandboxv1.ExecRequest, s grpc.ServerStreamingServer[sandboxv1.ExecEvent]) error {
		req = r
		return s.Send(resultEvent(&sandboxv1.ExecResult{Status: sandboxv1.ExecStatus_EXEC_STATUS_OK,
			Images: []*sandboxv1.Image{{MimeType: "image/png", Data: png}, {MimeType: "image/png", Data: png}},
			Files:  []*sandboxv1.FileEntry{{Path: "/workspace/out.csv", Size: 42}}, FilesTruncated: true}))
	}}
	dir := filepath.Join(t.TempDir(), "figs")
	r := runOn(t, startFake(t, f), "", "exec", "--images", dir, "--report-files", "sb-1", "plot()")
	wantExit(t, r, 0)
	if !req.GetReportFiles() {
		t.Error("--report-files was not passed on")
	}
	for _, name := range []string{"figure-1.png", "figure-2.png"} {
		if data, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(data) != string(png) {
			t.Errorf("%s: %q %v", name, data, err)
		}
	}
	for _, want := range []string{"figure saved: " + filepath.Join(dir, "figure-2.png"), "file /workspace/out.csv (42 bytes)", "more files"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}

	r = runOn(t, startFake(t, f), "", "exec", "--lang", "bash-session", "--restart-session", "sb-1", "pwd")
	wantExit(t, r, 0)
	if req.GetLanguage() != sandboxv1.Language_LANGUAGE_BASH_SESSION || !req.GetRestartSession() {
		t.Errorf("request %v", req)
	}
	if !strings.Contains(r.stderr, "2 figure(s) returned") {
		t.Errorf("without --images the figures are not counted: %q", r.stderr)
	}
	r = runOn(t, startFake(t, f), "", "exec", "--restart-session", "sb-1", "pwd")
	wantExit(t, r, exitUsage)
}
