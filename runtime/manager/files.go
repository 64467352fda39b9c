package manager

import (
	"context"
	"errors"
	"fmt"
	"io"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"github.com/sandboxd/sandboxd/runtime/errdefs"
	"github.com/sandboxd/sandboxd/runtime/identifiers"
	"github.com/sandboxd/sandboxd/runtime/sandbox"
)

// Upload writes a file into a sandbox. next returns the file's chunks in
// order and io.EOF after the last one. The template's upload_file and
// upload_total limits apply; over them the upload is abandoned (the agent
// removes its temporary file, an existing file stays as it was).
func (m *Manager) Upload(ctx context.Context, hdr *sandboxv1.FileHeader, next func() ([]byte, error)) (*sandboxv1.UploadResponse, error) {
	if hdr == nil {
		return nil, fmt.Errorf("the first Upload message must be a header: %w", errdefs.ErrInvalidArgument)
	}
	if err := m.checkID(hdr.GetSandboxId()); err != nil {
		return nil, err
	}
	path, err := identifiers.SandboxPath(hdr.GetPath())
	if err != nil {
		return nil, err
	}
	if hdr.GetMode()&^0o777 != 0 {
		return nil, fmt.Errorf("mode %#o has bits other than permissions (0777): %w", hdr.GetMode(), errdefs.ErrInvalidArgument)
	}
	e, err := m.lookup(ctx, hdr.GetSandboxId())
	if err != nil {
		return nil, err
	}
	sb, done, err := m.use(ctx, e)
	if err != nil {
		return nil, err
	}
	defer done()

	// Cancelling actx on any early return makes the agent drop the
	// temporary file.
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := sb.Agent().WriteFile(actx)
	if err != nil {
		return nil, m.fileFailed(e, sb, "uploading", path, err)
	}
	h := &sandboxv1.FileHeader{Path: path, Mode: hdr.GetMode(), MakeParents: hdr.GetMakeParents()}
	if err := stream.Send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Header{Header: h}}); err != nil {
		return nil, m.fileFailed(e, sb, "uploading", path, recvErr(stream, err))
	}
	limits := e.tmpl.Limits
	// Each chunk is charged to the sandbox's upload_total before it is
	// passed on, so that uploads running at the same time cannot each see
	// the whole budget; a failed upload gives its bytes back.
	var size, charged int64
	completed := false
	defer func() {
		if !completed {
			e.uploaded.Add(-charged)
		}
	}()
	for {
		chunk, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		n := int64(len(chunk))
		size += n
		if size > limits.UploadFile {
			return nil, fmt.Errorf("upload of %q is larger than %d bytes (policy limits.upload_file): %w", path, limits.UploadFile, errdefs.ErrResourceExhausted)
		}
		if e.uploaded.Add(n) > limits.UploadTotal {
			e.uploaded.Add(-n)
			return nil, fmt.Errorf("sandbox %q would exceed its %d bytes of uploads (policy limits.upload_total): %w", e.id, limits.UploadTotal, errdefs.ErrResourceExhausted)
		}
		charged += n
		if err := stream.Send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Chunk{Chunk: chunk}}); err != nil {
			return nil, m.fileFailed(e, sb, "uploading", path, recvErr(stream, err))
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, m.fileFailed(e, sb, "uploading", path, err)
	}
	completed = true
	m.saveRecord(e) // the new upload total survives a restart
	return &sandboxv1.UploadResponse{Path: resp.GetPath(), Size: size}, nil
}

// recvErr returns the agent's real error after a failed Send, which itself
// only says the stream ended.
func recvErr(stream interface {
	CloseAndRecv() (*sandboxv1.UploadResponse, error)
}, sendErr error) error {
	if errors.Is(sendErr, io.EOF) {
		if _, err := stream.CloseAndRecv(); err != nil {
			return err
		}
	}
	return sendErr
}

// Download streams a file out of a sandbox: first its info, then chunks.
func (m *Manager) Download(ctx context.Context, id, path string, send func(*sandboxv1.DownloadResponse) error) error {
	if err := m.checkID(id); err != nil {
		return err
	}
	path, err := identifiers.SandboxPath(path)
	if err != nil {
		return err
	}
	e, err := m.lookup(ctx, id)
	if err != nil {
		return err
	}
	sb, done, err := m.use(ctx, e)
	if err != nil {
		return err
	}
	defer done()
	// The download total, charged chunk by chunk, survives a restart.
	defer m.saveRecord(e)

	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := sb.Agent().ReadFile(actx, &sandboxv1.DownloadRequest{Path: path})
	if err != nil {
		return m.fileFailed(e, sb, "downloading", path, err)
	}
	first := true
	limits := e.tmpl.Limits
	var size int64 // bytes of this file sent so far
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			if first {
				return m.fileFailed(e, sb, "downloading", path, errors.New("agent sent no file info"))
			}
			return nil
		}
		if err != nil {
			return m.fileFailed(e, sb, "downloading", path, err)
		}
		if _, isInfo := msg.GetMsg().(*sandboxv1.DownloadResponse_Info); isInfo != first {
			return m.fileFailed(e, sb, "downloading", path, errors.New("agent broke the download protocol"))
		}
		// The announced size is checked first, so an oversized file fails
		// before any byte moves; the chunks are counted too, as the file may
		// grow while it is read (and the agent is not trusted).
		n := int64(len(msg.GetChunk()))
		if first {
			n = msg.GetInfo().GetSize()
		}
		if size+n > limits.DownloadFile {
			return fmt.Errorf("download of %q is larger than %d bytes (policy limits.download_file): %w", path, limits.DownloadFile, errdefs.ErrResourceExhausted)
		}
		total := e.downloaded.Load() + n
		if !first {
			// Charged before it is sent: concurrent downloads cannot
			// together slip past the cap.
			size += n
			total = e.downloaded.Add(n)
		}
		if total > limits.DownloadTotal {
			return fmt.Errorf("sandbox %q would exceed its %d bytes of downloads (policy limits.download_total): %w", e.id, limits.DownloadTotal, errdefs.ErrResourceExhausted)
		}
		first = false
		if err := send(msg); err != nil {
			return err
		}
	}
}

// fileFailed classifies a failed file transfer.
func (m *Manager) fileFailed(e *entry, sb *sandbox.Sandbox, doing, path string, err error) error {
	if isClosed(sb.Exited()) {
		return fmt.Errorf("%s %q: sandbox %q ended (%s): %w", doing, path, e.id, sb.ExitReason(), errdefs.ErrFailedPrecondition)
	}
	return fmt.Errorf("%s %q: %w", doing, path, errdefs.FromGRPC(err))
}
