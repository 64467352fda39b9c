// Command sandboxctl is the command-line client of sandboxd: it creates
// sandboxes, runs Python and bash in them, moves files in and out and
// destroys them, over the daemon's gRPC API (sandbox.v1.SandboxService).
//
//	id=$(sandboxctl create)
//	sandboxctl exec "$id" 'print(6*7)'
//	sandboxctl destroy "$id"
//
// Run "sandboxctl help" for the list of commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit statuses of sandboxctl itself; exec also passes on the exit status of
// the code it ran (see execHelp).
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitInterrupted = 130 // 128 + SIGINT, as shells report it
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, let a second one kill the process outright.
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// commands returns the verbs of sandboxctl, in the order help lists them.
// Each call builds fresh flag sets, so run can be called more than once.
func commands() []*command {
	return []*command{
		createCommand(),
		execCommand(),
		uploadCommand(),
		downloadCommand(),
		lsCommand(),
		destroyCommand(),
		pauseCommand(),
		resumeCommand(),
		getCommand(),
		egressCommand(),
		listCommand(),
		poolsCommand(),
		mcpCommand(),
		benchCommand(),
	}
}

// run is sandboxctl minus the process: it parses args (without the program
// name), runs one verb against the daemon and returns the exit status.
// Cancelling ctx cancels the running RPC and makes run return 130.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cli := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	defer cli.close()
	cmds := commands()

	global := flag.NewFlagSet("sandboxctl", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	addGlobalFlags(global, &cli.flags)
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout, cmds)
			return exitOK
		}
		fmt.Fprintf(stderr, "sandboxctl: %v (see 'sandboxctl help')\n", err)
		return exitUsage
	}
	if global.NArg() == 0 {
		printUsage(stderr, cmds)
		return exitUsage
	}
	verb, rest := global.Arg(0), global.Args()[1:]
	if verb == "help" {
		return help(stdout, stderr, cmds, rest)
	}
	cmd := findCommand(cmds, verb)
	if cmd == nil {
		fmt.Fprintf(stderr, "sandboxctl: unknown command %q (see 'sandboxctl help')\n", verb)
		return exitUsage
	}
	pos, err := parseInterspersed(cmd.flags, rest)
	cli.flags.merge(cmd.conn) // flags after the verb win over those before it
	if errors.Is(err, flag.ErrHelp) {
		cmd.printUsage(stdout)
		return exitOK
	}
	if err == nil {
		err = cmd.checkArgs(pos)
	}
	if err == nil {
		err = cmd.run(ctx, cli, pos)
	}
	return cli.exitStatus(ctx, cmd.name, err)
}

// help implements "sandboxctl help [COMMAND]".
func help(stdout, stderr io.Writer, cmds []*command, args []string) int {
	if len(args) == 0 {
		printUsage(stdout, cmds)
		return exitOK
	}
	cmd := findCommand(cmds, args[0])
	if cmd == nil || len(args) > 1 {
		fmt.Fprintf(stderr, "sandboxctl: help: unknown command %q (see 'sandboxctl help')\n", args[0])
		return exitUsage
	}
	cmd.printUsage(stdout)
	return exitOK
}

// printUsage writes the top-level help: global flags and the verbs.
func printUsage(w io.Writer, cmds []*command) {
	fmt.Fprint(w, `sandboxctl controls sandboxd, the self-hosted code-execution daemon.

Usage:
  sandboxctl [--socket ADDR] COMMAND [flags] [args]

Commands:
`)
	tw := newTable(w)
	for _, c := range cmds {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.short)
	}
	fmt.Fprintf(tw, "  help\tshow help for sandboxctl or one of its commands\n")
	tw.Flush()
	fmt.Fprint(w, "\nGlobal flags (also accepted after COMMAND):\n")
	global := flag.NewFlagSet("sandboxctl", flag.ContinueOnError)
	addGlobalFlags(global, new(connFlags))
	printFlags(w, global)
	fmt.Fprint(w, `
Errors are one line on stderr, "sandboxctl: COMMAND: MESSAGE", with exit
status 1; usage errors exit 2; an interrupted command (Ctrl-C) exits 130.
Run 'sandboxctl COMMAND --help' for the flags and exit statuses of a command.
`)
}
