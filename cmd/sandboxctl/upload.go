package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// uploadChunkSize is how many bytes of the file each Upload message carries.
const uploadChunkSize = 256 << 10

// uploadCommand is "sandboxctl upload".
func uploadCommand() *command {
	cmd := newCommand("upload", "ID LOCAL [REMOTE]", "copy a local file into a sandbox", `
Upload streams the local file LOCAL into the sandbox, in chunks, at REMOTE.
A relative REMOTE is under /workspace; it defaults to the base name of LOCAL,
and a REMOTE ending in / is a directory that receives that base name. LOCAL
- reads standard input, and then REMOTE must name the file. The file appears at
REMOTE only once it is complete. Prints the sandbox path and size written.`, 2, 3)
	mode := cmd.flags.String("mode", "", "permission bits of the file, in `OCTAL` (default: 0755 when LOCAL is executable by its owner, else 0644)")
	parents := cmd.flags.Bool("parents", false, "create missing parent directories of REMOTE")

	cmd.run = func(ctx context.Context, c *cli, args []string) error {
		id, local, remote := args[0], args[1], ""
		if len(args) == 3 {
			remote = args[2]
		}
		var perm uint32 = 0o644
		if *mode != "" {
			m, err := strconv.ParseUint(strings.TrimPrefix(*mode, "0o"), 8, 32)
			if err != nil || m > 0o7777 {
				return usagef("bad --mode %q: want octal permission bits such as 0644", *mode)
			}
			perm = uint32(m)
		}
		var src io.Reader = c.stdin
		if local == "-" {
			if remote == "" || strings.HasSuffix(remote, "/") {
				return usagef("REMOTE must name the file when LOCAL is - (standard input)")
			}
		} else {
			f, err := os.Open(local)
			if err != nil {
				return err
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			if fi.IsDir() {
				return fmt.Errorf("%s is a directory", local)
			}
			if *mode == "" && fi.Mode().Perm()&0o100 != 0 {
				perm = 0o755
			}
			src = f
		}
		if remote == "" || strings.HasSuffix(remote, "/") {
			remote += filepath.Base(local)
		}
		resp, err := c.upload(ctx, &sandboxv1.FileHeader{
			SandboxId:   id,
			Path:        remote,
			Mode:        perm,
			MakeParents: *parents,
		}, src, inputName(local))
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.stdout, "%s (%d bytes)\n", resp.GetPath(), resp.GetSize())
		return err
	}
	return cmd
}

// upload sends header, then src in chunks of uploadChunkSize; srcName
// names src in errors. Any failure cancels the stream, so the daemon never
// installs a partial file.
func (c *cli) upload(ctx context.Context, header *sandboxv1.FileHeader, src io.Reader, srcName string) (*sandboxv1.UploadResponse, error) {
	client, err := c.client()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Upload(ctx)
	if err != nil {
		return nil, err
	}
	send := func(req *sandboxv1.UploadRequest) error {
		err := stream.Send(req)
		if err == io.EOF {
			// The daemon ended the call early; its status says why.
			_, err = stream.CloseAndRecv()
		}
		return err
	}
	if err := send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Header{Header: header}}); err != nil {
		return nil, err
	}
	for {
		// A fresh buffer each time: gRPC may still hold the last one.
		buf := make([]byte, uploadChunkSize)
		n, rerr := io.ReadFull(src, buf)
		if n > 0 {
			if err := send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Chunk{Chunk: buf[:n]}}); err != nil {
				return nil, err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("read %s: %w", srcName, rerr)
		}
	}
	return stream.CloseAndRecv()
}
