package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// upload sends data in 1 MiB chunks.
func (d *daemon) upload(t testing.TB, id, path string, data []byte) (*sandboxv1.UploadResponse, error) {
	t.Helper()
	stream, err := d.client.Upload(ctx(t))
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Header{Header: &sandboxv1.FileHeader{SandboxId: id, Path: path}}}); err != nil {
		return stream.CloseAndRecv()
	}
	for len(data) > 0 {
		n := min(len(data), 1<<20)
		if err := stream.Send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Chunk{Chunk: data[:n]}}); err != nil {
			return stream.CloseAndRecv()
		}
		data = data[n:]
	}
	return stream.CloseAndRecv()
}

func (d *daemon) download(t testing.TB, id, path string) ([]byte, *sandboxv1.FileInfo, error) {
	t.Helper()
	stream, err := d.client.Download(ctx(t), &sandboxv1.DownloadRequest{SandboxId: id, Path: path})
	if err != nil {
		return nil, nil, err
	}
	var buf bytes.Buffer
	var info *sandboxv1.FileInfo
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			return buf.Bytes(), info, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if i := msg.GetInfo(); i != nil {
			info = i
		}
		buf.Write(msg.GetChunk())
	}
}

// TestUploadDownloadIsByteIdentical guarantees that a 20 MiB file survives
// the round trip unchanged and is visible to code in the sandbox.
func TestUploadDownloadIsByteIdentical(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)
	data := make([]byte, 20<<20)
	rand.Read(data)
	resp, err := d.upload(t, id, "data/blob.bin", nil)
	if status.Code(err) != codes.NotFound {
		t.Fatalf("upload into a missing directory without make_parents: %v %v", resp, err)
	}
	resp, err = d.upload(t, id, "blob.bin", data)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Path != "/workspace/blob.bin" || resp.Size != int64(len(data)) {
		t.Fatalf("upload response %v", resp)
	}
	sum := sha256.Sum256(data)
	r := py(t, d, id, "import hashlib\nhashlib.sha256(open('blob.bin','rb').read()).hexdigest()")
	if strings.Trim(r.result.Value, "'") != hex.EncodeToString(sum[:]) {
		t.Fatalf("sandbox sees sha256 %s, want %x", r.result.Value, sum)
	}
	got, info, err := d.download(t, id, "/workspace/blob.bin")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("downloaded %d bytes differ from the %d uploaded", len(got), len(data))
	}
	if info.Size != int64(len(data)) || info.Path != "/workspace/blob.bin" {
		t.Fatalf("info %v", info)
	}
}

// TestDownloadMissingFileIsNotFound guarantees a clear NotFound.
func TestDownloadMissingFileIsNotFound(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)
	_, _, err := d.download(t, id, "nope.txt")
	if status.Code(err) != codes.NotFound {
		t.Fatalf("got %v, want NotFound", err)
	}
}

// TestPathTraversalIsRejected guarantees that relative paths cannot climb
// out of /workspace, through ".." or through a symlink the sandbox made.
func TestPathTraversalIsRejected(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)
	for _, p := range []string{"../etc/passwd", "a/../../x", ".."} {
		if _, err := d.upload(t, id, p, []byte("x")); status.Code(err) != codes.InvalidArgument {
			t.Errorf("upload %q: %v, want InvalidArgument", p, err)
		}
		if _, _, err := d.download(t, id, p); status.Code(err) != codes.InvalidArgument {
			t.Errorf("download %q: %v, want InvalidArgument", p, err)
		}
	}
	wantOK(t, sh(t, d, id, "ln -s /etc escape"))
	if _, _, err := d.download(t, id, "escape/hostname"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("download through a symlink out of /workspace: %v, want InvalidArgument", err)
	}
	// Absolute paths address the sandbox's own file system.
	got, _, err := d.download(t, id, "/etc/hostname")
	if err != nil || strings.TrimSpace(string(got)) == "" {
		t.Errorf("absolute download: %q %v", got, err)
	}
}

// TestUploadReplacesFileAtomically guarantees that an upload rejected
// half-way leaves an existing file as it was.
func TestUploadReplacesFileAtomically(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id := d.create(t)
	if _, err := d.upload(t, id, "keep.txt", []byte("original")); err != nil {
		t.Fatal(err)
	}
	stream, err := d.client.Upload(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Header{Header: &sandboxv1.FileHeader{SandboxId: id, Path: "keep.txt"}}})
	stream.Send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Chunk{Chunk: []byte("partial")}})
	// A second header is a protocol error: the upload must be abandoned.
	stream.Send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Header{Header: &sandboxv1.FileHeader{SandboxId: id, Path: "x"}}})
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("second header: %v, want InvalidArgument", err)
	}
	got, _, err := d.download(t, id, "keep.txt")
	if err != nil || string(got) != "original" {
		t.Fatalf("after a failed upload the file holds %q (%v)", got, err)
	}
	r := sh(t, d, id, "ls -A /workspace")
	if strings.TrimSpace(r.stdout) != "keep.txt" {
		t.Fatalf("temporary files left behind: %q", r.stdout)
	}
}
