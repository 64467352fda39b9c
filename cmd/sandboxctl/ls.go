package main

import (
	"context"
	"fmt"
	"io/fs"
	"strconv"

	"google.golang.org/protobuf/proto"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// lsCommand is "sandboxctl ls".
func lsCommand() *command {
	cmd := newCommand("ls", "ID [PATH]", "list the files in a sandbox", `
Ls lists a directory of a sandbox (default /workspace; relative paths are
under it), one entry a row: MODE, SIZE, MODIFIED (UTC) and PATH; directories
end in "/". --depth N descends N levels (at most 10). The daemon lists at
most 10,000 entries; a note says when the listing was cut. With --json, a
JSON array of entries.`, 1, 2)
	depth := cmd.flags.Int("depth", 1, "descend `N` levels (1: the directory's own entries)")
	asJSON := cmd.flags.Bool("json", false, "print a JSON array of entries")

	cmd.run = func(ctx context.Context, c *cli, args []string) error {
		if *depth < 1 {
			return usagef("--depth must be at least 1")
		}
		client, err := c.client()
		if err != nil {
			return err
		}
		req := &sandboxv1.ListFilesRequest{SandboxId: args[0], Depth: int32(min(*depth, 1<<20))}
		if len(args) == 2 {
			req.Path = args[1]
		}
		resp, err := client.ListFiles(ctx, req)
		if err != nil {
			return err
		}
		if *asJSON {
			msgs := make([]proto.Message, len(resp.GetEntries()))
			for i, e := range resp.GetEntries() {
				msgs[i] = e
			}
			if err := writeJSON(c.stdout, true, msgs...); err != nil {
				return err
			}
		} else {
			tw := newTable(c.stdout)
			fmt.Fprintln(tw, "MODE\tSIZE\tMODIFIED\tPATH")
			for _, e := range resp.GetEntries() {
				mode, name := fs.FileMode(e.GetMode()).Perm(), e.GetPath()
				if e.GetIsDir() {
					mode |= fs.ModeDir
					name += "/"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", mode, strconv.FormatInt(e.GetSize(), 10),
					e.GetModifiedAt().AsTime().UTC().Format("2006-01-02 15:04:05"), name)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		if resp.GetTruncated() {
			c.note(cmd.name, "the listing was cut at the daemon's limit; list a subdirectory or a smaller --depth")
		}
		return nil
	}
	return cmd
}
