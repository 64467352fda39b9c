package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// maxExecInput bounds the code and the stdin of one Exec, as the API does.
const maxExecInput = 1 << 20

// Exit statuses of exec besides the code's own (see execHelp).
const (
	exitTimeout     = 124 // like timeout(1)
	exitSandboxDied = 125
	exitKilled      = 137 // 128 + SIGKILL
	exitTruncated   = 141 // 128 + SIGPIPE: the output's reader went away
)

// languages maps --lang to the API's languages.
var languages = map[string]sandboxv1.Language{
	"python":       sandboxv1.Language_LANGUAGE_PYTHON,
	"bash":         sandboxv1.Language_LANGUAGE_BASH,
	"bash-session": sandboxv1.Language_LANGUAGE_BASH_SESSION,
}

const execHelp = `
Exec runs code in a sandbox and copies its standard output and standard error
to sandboxctl's own as they are produced. The code is the CODE argument, else
the contents of --file FILE, else sandboxctl's standard input (also when CODE
is -); giving both CODE and --file is a usage error.

Python runs in the sandbox's persistent interpreter: variables survive from
one exec to the next, and the interpreter prints the value of a final
expression (its repr, when not None) on standard output, like a notebook
cell. Bash runs the code as a script in a new bash process; bash-session
runs it in the sandbox's persistent bash session, where the working
directory, variables, functions and aliases survive from one exec to the
next (--restart-session starts the session afresh first).

Figures a Python exec leaves open come back as PNG: with --images DIR they
are written there as figure-1.png, figure-2.png, ... (a note names each);
without it a note says how many came back. With --report-files a note
names each file under /workspace that the exec created or modified.

Exit status:
  0-255  the code's exit status (Python: 0, or 1 when the code raised)
  124    the code ran out of time (--timeout or the template's default)
  125    the sandbox died during the exec
  137    the code was killed: out of memory, or another reason (e.g. its
         interpreter died)
  141    the output went over the template's limit (limits.output) and the
         code was stopped
  130    interrupted by Ctrl-C (the daemon kills the code)
  1      also: sandboxctl failed (no such sandbox, daemon unreachable,
         unreadable file) or the daemon reported an unknown status
  2      usage error
The daemon's message about the result, if any (why the code was stopped, a
Python restart that lost earlier variables, bash's exit code), goes to
standard error as a note: "sandboxctl: exec: MESSAGE".

With --stats, once the code has ended (whatever its status), a last note
says what it used, as the sandbox's host cgroup counts it:
"sandboxctl: exec: cpu 1.234s, peak memory 180Mi, took 2.301s". The CPU
time is the whole sandbox's during the exec; the peak memory is "unknown"
where the host cannot measure it per exec. --stats leaves the exit status
as it is.

With --trace, a last table on standard error says how long each stage of
the exec took: the client's round trip to the daemon (connection set-up
included), the daemon's own work, the daemon<->agent transport, and the
agent's and the interpreter's stages, adding up to the total the client
saw.`

// execCommand is "sandboxctl exec".
func execCommand() *command {
	cmd := newCommand("exec", "ID [CODE]", "run Python or bash code in a sandbox", execHelp, 1, 2)
	lang := cmd.flags.String("lang", "python", "`LANGUAGE` of the code: python, bash or bash-session")
	timeout := cmd.flags.Duration("timeout", 0, "wall-clock `LIMIT` such as 30s or 5m (default: the template's)")
	env := keyValues{}
	cmd.flags.Var(env, "env", "set environment variable `KEY=VALUE` for this exec (repeatable)")
	workdir := cmd.flags.String("workdir", "", "working `DIR`, relative ones under /workspace (default: /workspace for bash, the interpreter's current directory for python)")
	file := cmd.flags.String("file", "", "read the code from `FILE` (- for standard input)")
	stdinFile := cmd.flags.String("stdin-file", "", "give the contents of `FILE` (at most 1 MiB; - for standard input) to the code on its standard input (default: none)")
	stats := cmd.flags.Bool("stats", false, "once the code ends, print its CPU time, peak memory and duration on standard error")
	trace := cmd.flags.Bool("trace", false, "once the code ends, print how long each stage of the exec took (client, daemon, agent, interpreter) on standard error")
	restart := cmd.flags.Bool("restart-session", false, "with --lang bash-session: start the session afresh before running the code")
	reportFiles := cmd.flags.Bool("report-files", false, "once the code ends, name each file under /workspace it created or modified on standard error")
	images := cmd.flags.String("images", "", "write the figures a Python exec returns into `DIR` as figure-N.png")

	cmd.run = func(ctx context.Context, c *cli, args []string) error {
		language, ok := languages[*lang]
		if !ok {
			return usagef("unknown --lang %q: want python, bash or bash-session", *lang)
		}
		if *restart && language != sandboxv1.Language_LANGUAGE_BASH_SESSION {
			return usagef("--restart-session needs --lang bash-session")
		}
		if *timeout < 0 {
			return usagef("--timeout must not be negative")
		}
		// codeFrom is where to read the code from; "" when it is args[1].
		codeFrom := *file
		switch {
		case len(args) == 2 && *file != "":
			return usagef("give the code as CODE or --file, not both")
		case len(args) == 2 && args[1] != "-":
		case *file == "":
			codeFrom = "-"
		}
		if codeFrom == "-" && *stdinFile == "-" {
			return usagef("standard input cannot be both the code and --stdin-file")
		}
		req := &sandboxv1.ExecRequest{
			SandboxId: args[0],
			Language:  language,
			Env:       env,
			Workdir:   *workdir,
			Trace:     *trace,

			RestartSession: *restart,
			ReportFiles:    *reportFiles,
		}
		if *timeout > 0 {
			req.Timeout = durationpb.New(*timeout)
		}
		if codeFrom == "" {
			req.Code = args[1]
		} else {
			code, err := c.readInput(codeFrom, "the code")
			if err != nil {
				return err
			}
			req.Code = string(code)
		}
		if !utf8.ValidString(req.Code) {
			return errors.New("the code is not valid UTF-8")
		}
		if *stdinFile != "" {
			stdin, err := c.readInput(*stdinFile, "--stdin-file")
			if err != nil {
				return err
			}
			req.Stdin = stdin
		}
		return c.exec(ctx, cmd.name, req, execOutputs{stats: *stats, images: *images})
	}
	return cmd
}

// readInput reads a file, or standard input for "-", of at most
// maxExecInput bytes; what names the input in errors. Standard input that
// is a terminal is refused rather than waited on.
func (c *cli) readInput(name, what string) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		if f, ok := c.stdin.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				return nil, usagef("%s would be read from standard input, which is a terminal: pipe it in or give a file", what)
			}
		}
		r = c.stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxExecInput+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", inputName(name), err)
	}
	if len(b) > maxExecInput {
		return nil, fmt.Errorf("%s (%s) is larger than 1 MiB", what, inputName(name))
	}
	return b, nil
}

// inputName names a file argument in messages.
func inputName(name string) string {
	if name == "-" {
		return "standard input"
	}
	return name
}

// execOutputs says what exec reports besides the code's output.
type execOutputs struct {
	stats  bool   // a last note with execStats
	images string // the directory figures are written to; "" for none
}

// exec runs req and copies its output as it arrives; it returns an
// exitError carrying the status that execHelp documents. Notes follow
// about the files the exec reported and the figures it returned, and with
// o.stats the note of execStats.
func (c *cli) exec(ctx context.Context, verb string, req *sandboxv1.ExecRequest, o execOutputs) error {
	client, err := c.client()
	if err != nil {
		return err
	}
	// Returning early (a failed write) cancels the stream and so the code.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	stream, err := client.Exec(ctx, req)
	if err != nil {
		return err
	}
	stderr := &lineWriter{w: c.stderr}
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return errors.New("the daemon ended the exec without a result")
		}
		if err != nil {
			return err
		}
		switch e := ev.GetEvent().(type) {
		case *sandboxv1.ExecEvent_Stdout:
			if _, err := c.stdout.Write(e.Stdout); err != nil {
				return err
			}
		case *sandboxv1.ExecEvent_Stderr:
			if _, err := stderr.Write(e.Stderr); err != nil {
				return err
			}
		case *sandboxv1.ExecEvent_Result:
			took := time.Since(start)
			code, notes := execOutcome(e.Result)
			notes = append(notes, fileNotes(e.Result)...)
			saved, err := saveImages(o.images, e.Result)
			notes = append(notes, saved...)
			if err != nil {
				return err
			}
			if o.stats {
				notes = append(notes, execStats(e.Result))
			}
			for _, n := range notes {
				stderr.startLine()
				c.note(verb, n)
			}
			if req.GetTrace() {
				stderr.startLine()
				if err := writeTrace(c.stderr, took, e.Result.GetTrace()); err != nil {
					return err
				}
			}
			if code == exitOK {
				return nil
			}
			return &exitError{code}
		}
	}
}

// execOutcome maps the result of an Exec to the exit status of exec and the
// notes to print on stderr about it: the daemon's message when it has one
// (it explains itself, lost Python state included), else a stock phrase for
// a stopped code or lost state.
func execOutcome(r *sandboxv1.ExecResult) (code int, notes []string) {
	msg := r.GetMessage()
	var stock string
	switch st := r.GetStatus(); st {
	case sandboxv1.ExecStatus_EXEC_STATUS_OK, sandboxv1.ExecStatus_EXEC_STATUS_ERROR:
		code = int(r.GetExitCode())
		if code < 0 || code > 255 || (code == 0 && st == sandboxv1.ExecStatus_EXEC_STATUS_ERROR) {
			code = exitFailure
		}
	case sandboxv1.ExecStatus_EXEC_STATUS_TIMEOUT:
		code, stock = exitTimeout, "timed out"
		if d := r.GetDuration(); d != nil {
			stock += " after " + d.AsDuration().Round(time.Millisecond).String()
		}
	case sandboxv1.ExecStatus_EXEC_STATUS_KILLED:
		code, stock = exitKilled, "killed"
	case sandboxv1.ExecStatus_EXEC_STATUS_OOM_KILLED:
		code, stock = exitKilled, "killed: out of memory"
	case sandboxv1.ExecStatus_EXEC_STATUS_OUTPUT_TRUNCATED:
		code, stock = exitTruncated, "output truncated"
	case sandboxv1.ExecStatus_EXEC_STATUS_SANDBOX_DIED:
		code, stock = exitSandboxDied, "the sandbox died"
	default:
		note := "the daemon reported an unknown exec status " + st.String()
		if msg != "" {
			note += ": " + msg
		}
		return exitFailure, []string{note}
	}
	if note := cmp.Or(msg, stock); note != "" {
		notes = append(notes, note)
	}
	if r.GetStateLost() && msg == "" {
		notes = append(notes, "the Python interpreter was restarted: earlier variables are gone")
	}
	return code, notes
}

// lineWriter passes writes through and remembers whether the output so far
// ends a line, so that notes start on a line of their own.
type lineWriter struct {
	w       io.Writer
	midLine bool // the last byte written was not a newline
}

func (l *lineWriter) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	if n > 0 {
		l.midLine = p[n-1] != '\n'
	}
	return n, err
}

// startLine ends the current line, if the output is in the middle of one.
func (l *lineWriter) startLine() {
	if l.midLine {
		l.Write([]byte{'\n'})
	}
}

// fileNotes names the files an Exec reported (ExecRequest.report_files).
func fileNotes(r *sandboxv1.ExecResult) []string {
	var notes []string
	for _, f := range r.GetFiles() {
		notes = append(notes, fmt.Sprintf("file %s (%d bytes)", f.GetPath(), f.GetSize()))
	}
	if r.GetFilesTruncated() {
		notes = append(notes, "more files were created or modified than the daemon lists")
	}
	return notes
}

// saveImages writes r's figures into dir as figure-N.png and returns a note
// for each; without a dir, one note says how many came back.
func saveImages(dir string, r *sandboxv1.ExecResult) ([]string, error) {
	imgs := r.GetImages()
	var notes []string
	if dir == "" {
		if len(imgs) > 0 {
			notes = append(notes, fmt.Sprintf("%d figure(s) returned; save them with --images DIR", len(imgs)))
		}
	} else {
		if len(imgs) > 0 {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return notes, err
			}
		}
		for i, img := range imgs {
			name := filepath.Join(dir, fmt.Sprintf("figure-%d.png", i+1))
			if err := os.WriteFile(name, img.GetData(), 0o644); err != nil {
				return notes, err
			}
			notes = append(notes, "figure saved: "+name)
		}
	}
	if r.GetImagesTruncated() {
		notes = append(notes, "more figures were drawn than the template's limits.images returns")
	}
	return notes, nil
}
