package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// writeFile creates path with data, failing the test on error.
func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestUploadChunks guarantees that a 3 MiB file reaches the daemon
// byte for byte, as a header first and then chunks of at most 256 KiB, with
// REMOTE defaulting to the base name and the mode to 0644.
func TestUploadChunks(t *testing.T) {
	f := &fakeServer{}
	sock := startFake(t, f)
	data := make([]byte, 3<<20)
	rand.Read(data)
	local := filepath.Join(t.TempDir(), "data.bin")
	writeFile(t, local, string(data))

	r := runOn(t, sock, "", "upload", "sb", local)
	wantExit(t, r, 0)
	if want := "/workspace/data.bin (3145728 bytes)\n"; r.stdout != want {
		t.Errorf("stdout = %q, want %q", r.stdout, want)
	}
	f.locked(func() {
		if len(f.uploads) != 1 {
			t.Fatalf("%d uploads", len(f.uploads))
		}
		u := f.uploads[0]
		if len(u.protoErrs) > 0 {
			t.Errorf("protocol: %v", u.protoErrs)
		}
		h := u.header
		if h.GetSandboxId() != "sb" || h.GetPath() != "data.bin" || h.GetMode() != 0o644 || h.GetMakeParents() {
			t.Errorf("header = %v", h)
		}
		if !bytes.Equal(u.data, data) {
			t.Errorf("received %d bytes that differ from the %d sent", len(u.data), len(data))
		}
		if u.chunks != 12 || u.maxChunk != uploadChunkSize {
			t.Errorf("%d chunks of at most %d bytes, want 12 of 256 KiB", u.chunks, u.maxChunk)
		}
	})
}

// TestUploadOptions guarantees --mode, --parents, a directory REMOTE, an
// executable file's default mode, and LOCAL "-" reading stdin.
func TestUploadOptions(t *testing.T) {
	f := &fakeServer{}
	sock := startFake(t, f)
	dir := t.TempDir()
	script := filepath.Join(dir, "run.sh")
	writeFile(t, script, "echo hi")
	if err := os.Chmod(script, 0o700); err != nil {
		t.Fatal(err)
	}

	wantExit(t, runOn(t, sock, "", "upload", "sb", script, "bin/"), 0)
	wantExit(t, runOn(t, sock, "", "upload", "--mode", "0600", "--parents", "sb", script, "x/y.sh"), 0)
	wantExit(t, runOn(t, sock, "from stdin", "upload", "sb", "-", "in.txt"), 0)
	wantExit(t, runOn(t, sock, "", "upload", "sb", "-", "empty.txt"), 0)
	f.locked(func() {
		for i, want := range []struct {
			path    string
			mode    uint32
			parents bool
			data    string
		}{
			{"bin/run.sh", 0o755, false, "echo hi"},
			{"x/y.sh", 0o600, true, "echo hi"},
			{"in.txt", 0o644, false, "from stdin"},
			{"empty.txt", 0o644, false, ""},
		} {
			u := f.uploads[i]
			h := u.header
			if h.GetPath() != want.path || h.GetMode() != want.mode || h.GetMakeParents() != want.parents ||
				string(u.data) != want.data || len(u.protoErrs) > 0 {
				t.Errorf("upload %d: header %v, data %q, protocol %v; want %+v", i, h, u.data, u.protoErrs, want)
			}
		}
	})

	r := runOn(t, sock, "", "upload", "sb", dir)
	wantExit(t, r, 1)
	if want := "sandboxctl: upload: " + dir + " is a directory\n"; r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
}

// downloadStream is the stream type a fake Download writes to.
type downloadStream = grpc.ServerStreamingServer[sandboxv1.DownloadResponse]

// serveFile returns a fake Download that sends data in 1000-byte chunks
// after a header claiming size bytes, then fails with failWith if not nil.
func serveFile(data []byte, size int64, failWith error) func(*sandboxv1.DownloadRequest, downloadStream) error {
	return func(req *sandboxv1.DownloadRequest, s downloadStream) error {
		info := &sandboxv1.FileInfo{Path: "/workspace/" + req.GetPath(), Size: size, Mode: 0o640}
		if err := s.Send(&sandboxv1.DownloadResponse{Msg: &sandboxv1.DownloadResponse_Info{Info: info}}); err != nil {
			return err
		}
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1000)
			msg := &sandboxv1.DownloadResponse{Msg: &sandboxv1.DownloadResponse_Chunk{Chunk: rest[:n]}}
			if err := s.Send(msg); err != nil {
				return err
			}
			rest = rest[n:]
		}
		return failWith
	}
}

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestDownload guarantees that a download lands whole at LOCAL (by default
// the base name of REMOTE in the current directory, or inside a directory
// LOCAL) with the file's mode, and leaves no temporary file.
func TestDownload(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 2500)
	f := &fakeServer{download: serveFile(data, int64(len(data)), nil)}
	sock := startFake(t, f)
	dir := t.TempDir()

	local := filepath.Join(dir, "out.bin")
	r := runOn(t, sock, "", "download", "sb", "res/out.bin", local)
	wantExit(t, r, 0)
	if want := local + " (25000 bytes)\n"; r.stdout != want {
		t.Errorf("stdout = %q, want %q", r.stdout, want)
	}
	got, err := os.ReadFile(local)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("LOCAL holds %d bytes (err %v), want the %d sent", len(got), err, len(data))
	}
	if fi, _ := os.Stat(local); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	f.locked(func() {
		if f.downloadReq.GetSandboxId() != "sb" || f.downloadReq.GetPath() != "res/out.bin" {
			t.Errorf("request = %v", f.downloadReq)
		}
	})

	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	wantExit(t, runOn(t, sock, "", "download", "sb", "/tmp/a.txt", sub), 0)
	t.Chdir(sub)
	wantExit(t, runOn(t, sock, "", "download", "sb", "b.txt"), 0)
	if names := strings.Join(dirNames(t, sub), " "); names != "a.txt b.txt" {
		t.Errorf("directory holds %q, want a.txt b.txt", names)
	}
}

// TestDownloadFailure guarantees that a download failing mid-stream leaves
// no file and no temporary file, and leaves an existing LOCAL untouched
// even with --force; also that a short stream counts as a failure.
func TestDownloadFailure(t *testing.T) {
	for name, fn := range map[string]func(*sandboxv1.DownloadRequest, downloadStream) error{
		"error":     serveFile(make([]byte, 5000), 10000, status.Error(codes.Internal, "disk on fire")),
		"too short": serveFile(make([]byte, 5000), 10000, nil),
	} {
		t.Run(name, func(t *testing.T) {
			sock := startFake(t, &fakeServer{download: fn})
			dir := t.TempDir()
			local := filepath.Join(dir, "out.bin")

			r := runOn(t, sock, "", "download", "sb", "out.bin", local)
			wantExit(t, r, 1)
			if !strings.HasPrefix(r.stderr, "sandboxctl: download: ") || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("stderr = %q", r.stderr)
			}
			if names := dirNames(t, dir); len(names) != 0 {
				t.Errorf("failed download left %q", names)
			}

			writeFile(t, local, "precious")
			wantExit(t, runOn(t, sock, "", "download", "--force", "sb", "out.bin", local), 1)
			if got, _ := os.ReadFile(local); string(got) != "precious" {
				t.Errorf("existing LOCAL now holds %q", got)
			}
			if names := dirNames(t, dir); len(names) != 1 {
				t.Errorf("failed download left %q", names)
			}
		})
	}
}

// TestDownloadExisting guarantees that an existing LOCAL is refused without
// --force (before any RPC) and replaced with it.
func TestDownloadExisting(t *testing.T) {
	f := &fakeServer{download: serveFile([]byte("new"), 3, nil)}
	sock := startFake(t, f)
	local := filepath.Join(t.TempDir(), "out.txt")
	writeFile(t, local, "old")

	r := runOn(t, sock, "", "download", "sb", "out.txt", local)
	wantExit(t, r, 1)
	if want := "sandboxctl: download: " + local + " already exists (use --force to overwrite it)\n"; r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
	f.locked(func() {
		if f.downloadReq != nil {
			t.Error("refused download still called the daemon")
		}
	})
	if got, _ := os.ReadFile(local); string(got) != "old" {
		t.Errorf("LOCAL now holds %q", got)
	}

	wantExit(t, runOn(t, sock, "", "download", "sb", "out.txt", local, "--force"), 0)
	if got, _ := os.ReadFile(local); string(got) != "new" {
		t.Errorf("after --force LOCAL holds %q", got)
	}
}

// TestDownloadStdout guarantees that LOCAL "-" writes the file, and only
// the file, to stdout.
func TestDownloadStdout(t *testing.T) {
	data := bytes.Repeat([]byte("line\n"), 1000)
	sock := startFake(t, &fakeServer{download: serveFile(data, int64(len(data)), nil)})
	t.Chdir(t.TempDir())
	r := runOn(t, sock, "", "download", "sb", "log.txt", "-")
	wantExit(t, r, 0)
	if r.stdout != string(data) {
		t.Errorf("stdout holds %d bytes, want the %d sent", len(r.stdout), len(data))
	}
	if names := dirNames(t, "."); len(names) != 0 {
		t.Errorf("download to stdout created %q", names)
	}
}
