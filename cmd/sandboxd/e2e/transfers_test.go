package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestOversizedUploadsAreResourceExhausted guarantees the upload caps of a
// template (upload_file 1Mi, upload_total 3Mi here): a file over
// upload_file fails with ResourceExhausted naming the policy key and leaves
// the file it would have replaced unchanged; uploads adding up past
// upload_total fail the same way, also when sent all at once; a gRPC
// message over the daemon's 8 MiB maximum fails with ResourceExhausted.
// The daemon keeps serving.
func TestOversizedUploadsAreResourceExhausted(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, resourcesPolicy)})
	id := d.createTemplate(t, "uploads")
	const mib = 1 << 20
	data := make([]byte, 4*mib)
	rand.Read(data)

	original := []byte("original contents\n")
	if err := uploadErr(t, d, id, "keep.txt", original); err != nil {
		t.Fatal(err)
	}
	err := uploadErr(t, d, id, "keep.txt", data[:mib+1])
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "limits.upload_file") {
		t.Errorf("upload of 1 MiB + 1 byte: %v, want ResourceExhausted naming limits.upload_file", err)
	}
	if got, _, err := d.download(t, id, "keep.txt"); err != nil || !bytes.Equal(got, original) {
		t.Errorf("after the rejected upload keep.txt holds %q (%v), want %q", got, err, original)
	}
	// Exactly upload_file is allowed; two of them and keep.txt make
	// 2 MiB + 18 bytes of the 3 MiB.
	for _, name := range []string{"a.bin", "b.bin"} {
		if err := uploadErr(t, d, id, name, data[:mib]); err != nil {
			t.Fatalf("upload of exactly upload_file: %v", err)
		}
	}
	err = uploadErr(t, d, id, "c.bin", data[:mib])
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "limits.upload_total") {
		t.Errorf("upload past 3 MiB in total: %v, want ResourceExhausted naming limits.upload_total", err)
	}
	r := sh(t, d, id, "ls -A /workspace")
	if got := strings.Fields(r.stdout); strings.Join(got, " ") != "a.bin b.bin keep.txt" {
		t.Errorf("workspace after the rejected uploads: %q, want a.bin b.bin keep.txt", r.stdout)
	}

	// Uploads sent at the same time must not each see the whole budget.
	fresh := d.createTemplate(t, "uploads")
	var wg sync.WaitGroup
	var okCount atomic.Int32
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := uploadErr(t, d, fresh, fmt.Sprintf("p%d.bin", i), data[:mib])
			switch {
			case err == nil:
				okCount.Add(1)
			case status.Code(err) != codes.ResourceExhausted:
				t.Errorf("concurrent upload %d: %v, want success or ResourceExhausted", i, err)
			}
		}()
	}
	wg.Wait()
	r = sh(t, d, fresh, "cat /workspace/*.bin | wc -c")
	t.Logf("6 concurrent 1 MiB uploads under a 3 MiB upload_total: %d succeeded, %s bytes in the workspace", okCount.Load(), strings.TrimSpace(r.stdout))
	if okCount.Load() > 3 {
		t.Errorf("%d concurrent 1 MiB uploads succeeded under upload_total 3 MiB, want at most 3", okCount.Load())
	}

	// One message over the daemon's maximum (maxMessage, 8 MiB), into a
	// template whose caps would allow the file.
	big := d.create(t)
	stream, err := d.client.Upload(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Header{Header: &sandboxv1.FileHeader{SandboxId: big, Path: "huge.bin"}}})
	stream.Send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Chunk{Chunk: make([]byte, 9*mib)}})
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a 9 MiB upload chunk: %v, want ResourceExhausted", err)
	}
	_, err = d.tryRun(ctx(t), big, &sandboxv1.ExecRequest{Language: sandboxv1.Language_LANGUAGE_BASH, Code: strings.Repeat("#", 9*mib)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a 9 MiB Exec request: %v, want ResourceExhausted", err)
	}
	if _, _, err := d.download(t, big, "huge.bin"); status.Code(err) != codes.NotFound {
		t.Errorf("the rejected huge.bin: %v, want NotFound", err)
	}
	wantSandboxWorks(t, d, big, "the oversized messages")
	wantSandboxWorks(t, d, id, "the oversized uploads")
	wantDaemonServes(t, d)
}

// TestOversizedDownloadsAreResourceExhausted guarantees the download caps
// of a template (download_file 1Mi, download_total 3Mi here): a file over
// download_file fails with ResourceExhausted naming the policy key before
// any of it is sent; downloads adding up past download_total fail the same
// way. The sandbox and the daemon keep serving.
func TestOversizedDownloadsAreResourceExhausted(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, resourcesPolicy)})
	id := d.createTemplate(t, "downloads")
	wantOK(t, sh(t, d, id, "head -c 1048577 /dev/urandom > big.bin && head -c 1048576 /dev/urandom > ok.bin"))
	got, _, err := d.download(t, id, "big.bin")
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "limits.download_file") || len(got) != 0 {
		t.Errorf("download of 1 MiB + 1 byte: %d bytes, %v; want nothing and ResourceExhausted naming limits.download_file", len(got), err)
	}
	for i := range 3 {
		got, _, err := d.download(t, id, "ok.bin")
		if err != nil {
			t.Fatalf("download %d of 1 MiB under a 3 MiB download_total: %v", i+1, err)
		}
		if len(got) != 1<<20 {
			t.Fatalf("download %d: %d bytes", i+1, len(got))
		}
	}
	_, _, err = d.download(t, id, "ok.bin")
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "limits.download_total") {
		t.Errorf("a fourth 1 MiB download under a 3 MiB download_total: %v, want ResourceExhausted naming limits.download_total", err)
	}
	wantSandboxWorks(t, d, id, "the oversized downloads")
	wantDaemonServes(t, d)
}

// uploadErr uploads data and returns only the error.
func uploadErr(t *testing.T, d *daemon, id, path string, data []byte) error {
	t.Helper()
	_, err := d.upload(t, id, path, data)
	return err
}
