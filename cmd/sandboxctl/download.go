package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"google.golang.org/grpc"

	"github.com/sandboxd/sandboxd/cmd/sandboxctl/internal/filestream"
	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// downloadCommand is "sandboxctl download".
func downloadCommand() *command {
	cmd := newCommand("download", "ID REMOTE [LOCAL]", "copy a file out of a sandbox", `
Download streams the sandbox file REMOTE (relative paths are under
/workspace) to LOCAL: by default the base name of REMOTE in the current
directory, inside LOCAL when LOCAL is a directory, and standard output when
LOCAL is -. The file is written beside LOCAL under a temporary name and
renamed into place only once complete, so a failed download leaves neither a
partial file nor a damaged existing one. An existing LOCAL is refused unless
--force. LOCAL gets the sandbox file's permission bits, without write access
for group and others. Prints the local path and size written.`, 2, 3)
	force := cmd.flags.Bool("force", false, "overwrite LOCAL if it exists")

	cmd.run = func(ctx context.Context, c *cli, args []string) error {
		id, remote, local := args[0], args[1], ""
		if len(args) == 3 {
			local = args[2]
		}
		if local == "" || (local != "-" && isDir(local)) {
			base := path.Base(remote)
			if strings.HasSuffix(remote, "/") || base == "/" || base == "." || base == ".." {
				return usagef("cannot name a local file after %q: give LOCAL", remote)
			}
			local = filepath.Join(local, base)
		}
		if local != "-" && !*force {
			if _, err := os.Lstat(local); err == nil {
				return errExists(local)
			}
		}

		client, err := c.client()
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := client.Download(ctx, &sandboxv1.DownloadRequest{SandboxId: id, Path: remote})
		if err != nil {
			return err
		}
		first, err := stream.Recv()
		if err == io.EOF {
			return errors.New("the daemon sent no file")
		}
		if err != nil {
			return err
		}
		info := first.GetInfo()
		if info == nil {
			return errors.New("the daemon sent file data before the file's description")
		}
		if local == "-" {
			_, err := filestream.Receive(stream, c.stdout, info.GetSize())
			return err
		}
		n, err := saveFile(stream, local, fs.FileMode(info.GetMode())&0o755, info.GetSize(), *force)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.stdout, "%s (%d bytes)\n", local, n)
		return err
	}
	return cmd
}

// isDir reports whether p is a directory, or a symbolic link to one.
func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// errExists refuses to overwrite local.
func errExists(local string) error {
	return fmt.Errorf("%s already exists (use --force to overwrite it)", local)
}

// saveFile receives the rest of stream into a temporary file beside local
// and renames it to local once complete, replacing an existing local only
// when force is set. On any failure the temporary file is removed.
func saveFile(stream grpc.ServerStreamingClient[sandboxv1.DownloadResponse], local string, perm fs.FileMode, size int64, force bool) (int64, error) {
	if perm == 0 {
		perm = 0o644
	}
	tmp, err := os.CreateTemp(filepath.Dir(local), "."+filepath.Base(local)+".sandboxctl-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return 0, fmt.Errorf("cannot create %s: %w", local, err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name()) // fails harmlessly once renamed
	}()
	n, err := filestream.Receive(stream, tmp, size)
	if err != nil {
		return n, err
	}
	if err := tmp.Chmod(perm); err != nil {
		return n, err
	}
	if err := tmp.Sync(); err != nil {
		return n, err
	}
	if err := tmp.Close(); err != nil {
		return n, err
	}
	if force {
		return n, os.Rename(tmp.Name(), local)
	}
	// A hard link fails if local exists, even if it appeared since the
	// first check; the deferred Remove then drops the temporary name.
	err = os.Link(tmp.Name(), local)
	switch {
	case errors.Is(err, fs.ErrExist):
		return n, errExists(local)
	case err != nil:
		// A file system without hard links: check, then rename.
		if _, err := os.Lstat(local); err == nil {
			return n, errExists(local)
		}
		return n, os.Rename(tmp.Name(), local)
	}
	return n, nil
}
