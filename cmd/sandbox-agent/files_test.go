package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// upload writes data to path in 100 KiB chunks.
func (a *agent) upload(ctx context.Context, header *sandboxv1.FileHeader, data []byte) (*sandboxv1.UploadResponse, error) {
	stream, err := a.WriteFile(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Header{Header: header}}); err != nil {
		return nil, err
	}
	for len(data) > 0 {
		n := min(len(data), 100<<10)
		if err := stream.Send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Chunk{Chunk: data[:n]}}); err != nil {
			break // the agent answered early; CloseAndRecv has its reason
		}
		data = data[n:]
	}
	return stream.CloseAndRecv()
}

// download reads path, checking that info comes first and chunks are
// at most fileChunk.
func (a *agent) download(path string) (*sandboxv1.FileInfo, []byte, error) {
	stream, err := a.ReadFile(context.Background(), &sandboxv1.DownloadRequest{Path: path})
	if err != nil {
		return nil, nil, err
	}
	first, err := stream.Recv()
	if err != nil {
		return nil, nil, err
	}
	var data bytes.Buffer
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			return first.GetInfo(), data.Bytes(), nil
		}
		if err != nil {
			return nil, nil, err
		}
		if len(msg.GetChunk()) > fileChunk || msg.GetInfo() != nil {
			return nil, nil, io.ErrUnexpectedEOF
		}
		data.Write(msg.GetChunk())
	}
}

// TestFileRoundTrip guarantees that a 5 MiB random file written (with
// make_parents and a mode) reads back byte-identical with its info.
func TestFileRoundTrip(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	data := make([]byte, 5<<20)
	rand.Read(data)
	resp, err := a.upload(context.Background(), &sandboxv1.FileHeader{Path: "a/b/c.bin", Mode: 0o600, MakeParents: true}, data)
	if err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(a.workspace, "a/b/c.bin")
	if resp.Path != abs || resp.Size != int64(len(data)) {
		t.Fatalf("response %v", resp)
	}
	info, got, err := a.download("a/b/c.bin")
	if err != nil {
		t.Fatal(err)
	}
	if info.Path != abs || info.Size != int64(len(data)) || info.Mode != 0o600 || !bytes.Equal(got, data) {
		t.Fatalf("info %v, %d bytes, equal %v", info, len(got), bytes.Equal(got, data))
	}
	// Absolute paths address the whole file system; mode 0 means 0644.
	other := filepath.Join(t.TempDir(), "abs.txt")
	if _, err := a.upload(context.Background(), &sandboxv1.FileHeader{Path: other}, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(other); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("%v %v", fi, err)
	}
}

// TestWriteFileAtomic guarantees that a cancelled upload leaves the old
// content in place and no temporary file behind.
func TestWriteFileAtomic(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	if _, err := a.upload(context.Background(), &sandboxv1.FileHeader{Path: "f.txt"}, []byte("old")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := a.WriteFile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Header{Header: &sandboxv1.FileHeader{Path: "f.txt"}}})
	stream.Send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Chunk{Chunk: []byte("new, partial")}})
	time.Sleep(100 * time.Millisecond) // let the agent start writing
	cancel()
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		entries, err := os.ReadDir(a.workspace)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) == 1 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("temporary file left: %v", entries)
		}
	}
	if _, got, err := a.download("f.txt"); err != nil || string(got) != "old" {
		t.Fatalf("got %q, %v", got, err)
	}
}

// TestPathEscapes guarantees that relative paths cannot leave the
// workspace, with .. or through a symlink, for reads and writes.
func TestPathEscapes(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(a.workspace, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(a.workspace, "secretlink")); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(a.workspace, outside)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(rel, filepath.Join(a.workspace, "rellink")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"../x", "sub/../../x", "link/x", "link/new/x", "rellink/x"} {
		_, err := a.upload(context.Background(), &sandboxv1.FileHeader{Path: p, MakeParents: true}, []byte("x"))
		wantCode(t, err, codes.InvalidArgument)
	}
	// Writing replaces a symlink itself (rename), never writes through it.
	if _, err := a.upload(context.Background(), &sandboxv1.FileHeader{Path: "secretlink"}, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(a.workspace, "secretlink")); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("secretlink: %v %v", fi, err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(a.workspace, "secretlink2")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"../secret", "link/secret", "secretlink2", "rellink/secret"} {
		_, _, err := a.download(p)
		wantCode(t, err, codes.InvalidArgument)
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 1 {
		t.Fatalf("something was written outside: %v", entries)
	}
	if got, _ := os.ReadFile(filepath.Join(outside, "secret")); string(got) != "s" {
		t.Fatalf("secret changed to %q", got)
	}
}

// TestFileErrors guarantees the status codes of the usual mistakes: a
// missing file or parent is NotFound; a directory, a FIFO (without hanging)
// or an empty path is InvalidArgument.
func TestFileErrors(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	if err := os.Mkdir(filepath.Join(a.workspace, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, _, err := a.download("missing.txt")
	wantCode(t, err, codes.NotFound)
	_, err = a.upload(context.Background(), &sandboxv1.FileHeader{Path: "nodir/x"}, []byte("x"))
	wantCode(t, err, codes.NotFound)
	for _, p := range []string{"dir", ".", a.workspace, "dir/"} {
		_, _, err = a.download(p)
		wantCode(t, err, codes.InvalidArgument)
		_, err = a.upload(context.Background(), &sandboxv1.FileHeader{Path: p}, []byte("x"))
		wantCode(t, err, codes.InvalidArgument)
	}
	_, err = a.upload(context.Background(), &sandboxv1.FileHeader{}, nil)
	wantCode(t, err, codes.InvalidArgument)
	if err := syscall.Mkfifo(filepath.Join(a.workspace, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = a.download("fifo")
	wantCode(t, err, codes.InvalidArgument)
}
