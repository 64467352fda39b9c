package main

import (
	"context"
	"errors"
	"os"

	"github.com/sandboxd/sandboxd/cmd/sandboxctl/bench"
)

// defaultRunsc and defaultRootfs are the defaults of bench --runsc and
// --rootfs: the Makefile sets them with -ldflags '-X main.defaultRunsc=...'
// to the runsc binary and the rootfs it builds. Empty in a plain go build,
// and then --baselines needs the flags.
var (
	defaultRunsc  string
	defaultRootfs string
)

// benchCommand is "sandboxctl bench"; package bench does the work.
func benchCommand() *command {
	cmd := newCommand("bench", "", bench.Short, bench.Help, 0, 0)
	o := bench.AddFlags(cmd.flags, defaultRunsc, defaultRootfs)

	cmd.run = func(ctx context.Context, c *cli, _ []string) error {
		err := bench.Run(ctx, bench.Env{
			Stdout:   c.stdout,
			Stderr:   c.stderr,
			Client:   c.client,
			Address:  resolveAddrs(c.flags.addrs, os.Getenv(socketEnv))[0],
			Describe: c.describe,
			Note:     func(msg string) { c.note(cmd.name, msg) },
		}, o)
		var ue *bench.UsageError
		if errors.As(err, &ue) {
			return usagef("%s", ue.Error())
		}
		return err
	}
	return cmd
}
