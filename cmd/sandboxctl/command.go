package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// command is one verb of sandboxctl.
type command struct {
	name  string // the verb
	args  string // synopsis of the positional arguments, e.g. "ID [CODE]"
	short string // one line for the verb list
	long  string // what the verb does, for its --help

	// minArgs and maxArgs bound the number of positional arguments;
	// maxArgs < 0 means no upper bound.
	minArgs, maxArgs int

	flags *flag.FlagSet
	conn  connFlags // the connection flags given after the verb
	// run does the work, with the positional arguments already counted.
	run func(ctx context.Context, c *cli, args []string) error
}

// newCommand returns a command whose flag set has the global flags and
// reports errors only through the error it returns, so that sandboxctl
// prints them as one line.
func newCommand(name, args, short, long string, minArgs, maxArgs int) *command {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := &command{
		name: name, args: args, short: short, long: long,
		minArgs: minArgs, maxArgs: maxArgs,
		flags: fs,
	}
	addGlobalFlags(fs, &c.conn)
	return c
}

// findCommand returns the command named name, or nil.
func findCommand(cmds []*command, name string) *command {
	for _, c := range cmds {
		if c.name == name {
			return c
		}
	}
	return nil
}

// checkArgs returns a usage error when args has the wrong length.
func (c *command) checkArgs(args []string) error {
	switch {
	case len(args) < c.minArgs:
		return usagef("missing arguments: want %s", c.args)
	case c.maxArgs >= 0 && len(args) > c.maxArgs:
		return usagef("too many arguments: want %s", c.args)
	}
	return nil
}

// printUsage writes the verb's --help.
func (c *command) printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: sandboxctl %s [flags] %s\n\n%s\n", c.name, c.args, strings.TrimSpace(c.long))
	fmt.Fprintf(w, "\nFlags:\n")
	printFlags(w, c.flags)
}

// printFlags lists the flags of fs GNU-style: --name VALUE, then the usage
// text and any non-empty default.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	tw := newTable(w)
	fs.VisitAll(func(f *flag.Flag) {
		valueName, usage := flag.UnquoteUsage(f)
		if isBoolFlag(f) {
			valueName = ""
		}
		switch f.DefValue {
		case "", "false", "0", "0s":
		default:
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(tw, "  --%s %s\t%s\n", f.Name, valueName, usage)
	})
	tw.Flush()
}

// isBoolFlag reports whether f takes no value (--json rather than --json X).
func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// parseInterspersed parses the flags of fs wherever they appear in args,
// before or after the positional arguments (sandboxctl get ID --json), and
// returns the positional arguments in order. "--" ends the flags; "-" alone
// is a positional argument (standard input). Errors other than flag.ErrHelp
// are usage errors.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		// A flag that takes a value takes the next argument, whatever it is.
		if f := fs.Lookup(name); f != nil && !isBoolFlag(f) && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	if err := fs.Parse(flags); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, &usageError{err.Error()}
	}
	return pos, nil
}
