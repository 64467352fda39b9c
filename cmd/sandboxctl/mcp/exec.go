package mcp

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/protobuf/types/known/durationpb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// maxStreamBytes bounds the stdout, the stderr and the value that one
// run_python or run_bash returns, each: about 8k tokens, so that a chatty
// command does not flood the model's context. The start and the end are
// kept, half each, as a terminal's scrollback and an error's traceback are
// at the end.
const maxStreamBytes = 32 << 10

// runPythonInput is run_python's input.
type runPythonInput struct {
	Code    string `json:"code" jsonschema:"Python source to run, at most 1 MiB. The value of its final expression, if not None, is returned as a notebook cell's."`
	Timeout int    `json:"timeout,omitempty" jsonschema:"Seconds the code may run before it is stopped. 0 or left out: the sandbox's default (60 s under sandboxd's default policy); at most the template's maximum (10 min by default)."`
}

// runBashInput is run_bash's input.
type runBashInput struct {
	Command string `json:"command,omitempty" jsonschema:"The command to run, as typed at a shell prompt; several lines make a script. May be left out when restart is true."`
	Restart bool   `json:"restart,omitempty" jsonschema:"Start the bash session afresh first: its working directory (back to /workspace), variables and functions are dropped."`
	Timeout int    `json:"timeout,omitempty" jsonschema:"Seconds the command may run before it is stopped. 0 or left out: the sandbox's default (60 s under sandboxd's default policy); at most the template's maximum (10 min by default)."`
}

// runPython is run_python.
func (t *tools) runPython(ctx context.Context, call sandboxCall, in runPythonInput) (*mcpsdk.CallToolResult, error) {
	if in.Code == "" {
		return errorResult("code is empty: give the Python code to run"), nil
	}
	return t.exec(ctx, call, &sandboxv1.ExecRequest{
		SandboxId: call.id,
		Language:  sandboxv1.Language_LANGUAGE_PYTHON,
		Code:      in.Code,
		Timeout:   timeout(in.Timeout),
	})
}

// runBash is run_bash.
func (t *tools) runBash(ctx context.Context, call sandboxCall, in runBashInput) (*mcpsdk.CallToolResult, error) {
	if in.Command == "" && !in.Restart {
		return errorResult("command is empty: give the command to run, or set restart to start the session afresh"), nil
	}
	return t.exec(ctx, call, &sandboxv1.ExecRequest{
		SandboxId:      call.id,
		Language:       sandboxv1.Language_LANGUAGE_BASH_SESSION,
		Code:           in.Command,
		Timeout:        timeout(in.Timeout),
		RestartSession: in.Restart,
	})
}

// timeout is an Exec's timeout of seconds; nil (the sandbox's default)
// for 0.
func timeout(seconds int) *durationpb.Duration {
	if seconds <= 0 {
		return nil
	}
	return durationpb.New(time.Duration(seconds) * time.Second)
}

// execOutput is what one Exec produced.
type execOutput struct {
	stdout, stderr bytes.Buffer
	result         *sandboxv1.ExecResult
}

// exec runs req and renders its outcome (see execResult). A result that
// says the sandbox died also says whether the session lost it.
func (t *tools) exec(ctx context.Context, call sandboxCall, req *sandboxv1.ExecRequest) (*mcpsdk.CallToolResult, error) {
	// Returning early cancels the stream and so the code.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := t.client.Exec(ctx, req)
	if err != nil {
		return nil, err
	}
	var out execOutput
	for out.result == nil {
		ev, err := stream.Recv()
		if err == io.EOF {
			return nil, errors.New("the daemon ended the exec without a result")
		}
		if err != nil {
			return nil, err
		}
		switch e := ev.GetEvent().(type) {
		case *sandboxv1.ExecEvent_Stdout:
			out.stdout.Write(e.Stdout)
		case *sandboxv1.ExecEvent_Stderr:
			out.stderr.Write(e.Stderr)
		case *sandboxv1.ExecEvent_Result:
			out.result = e.Result
		}
	}
	res := execResult(req.GetLanguage(), &out)
	switch out.result.GetStatus() {
	case sandboxv1.ExecStatus_EXEC_STATUS_SANDBOX_DIED, sandboxv1.ExecStatus_EXEC_STATUS_OOM_KILLED:
		if lost := t.sandboxes.lost(ctx, call.slot, call.id); lost != "" {
			res.Content[0].(*mcpsdk.TextContent).Text += "\n" + lost
		}
	}
	return res, nil
}

// execResult renders an Exec for the model: one text with the output
// streams and the value, each in a tag (left out when blank) and cut to
// maxStreamBytes, then a status line and notes; then the figures, as
// images. It is an error result unless the code ended OK.
func execResult(lang sandboxv1.Language, out *execOutput) *mcpsdk.CallToolResult {
	r := out.result
	var b strings.Builder
	section := func(tag string, data []byte) {
		if len(bytes.TrimSpace(data)) > 0 {
			fmt.Fprintf(&b, "<%s>\n%s\n</%s>\n", tag, strings.TrimSuffix(clip(data, tag), "\n"), tag)
		}
	}
	// Python prints the value's repr as the cell's last output, as a
	// notebook shows it; it is returned once, as the value.
	stdout, value := out.stdout.Bytes(), r.GetValue()
	if echo := []byte(value + "\n"); value != "" && bytes.HasSuffix(stdout, echo) {
		stdout = stdout[:len(stdout)-len(echo)]
	}
	section("stdout", stdout)
	section("stderr", out.stderr.Bytes())
	section("value", []byte(value))
	fmt.Fprintf(&b, "status: %s", statusLine(lang, r))
	for _, n := range execNotes(lang, r) {
		b.WriteString("\n" + n)
	}
	res := &mcpsdk.CallToolResult{
		IsError: r.GetStatus() != sandboxv1.ExecStatus_EXEC_STATUS_OK,
		Content: []mcpsdk.Content{&mcpsdk.TextContent{Text: b.String()}},
	}
	for _, img := range r.GetImages() {
		mime := img.GetMimeType()
		if mime == "" {
			mime = "image/png"
		}
		res.Content = append(res.Content, &mcpsdk.ImageContent{Data: img.GetData(), MIMEType: mime})
	}
	return res
}

// clip returns data as text, with invalid UTF-8 replaced; over
// maxStreamBytes, only its first and last halves of that, around a line
// that says how much of what was cut.
func clip(data []byte, what string) string {
	if len(data) <= maxStreamBytes {
		return strings.ToValidUTF8(string(data), "\uFFFD")
	}
	half := maxStreamBytes / 2
	head, tail := data[:half], data[len(data)-half:]
	return strings.ToValidUTF8(string(head), "\uFFFD") +
		fmt.Sprintf("\n[... %d bytes of %s cut here: the tool returns %d KiB of each stream; write long output to a file and read it in parts ...]\n", len(data)-maxStreamBytes, what, maxStreamBytes>>10) +
		strings.ToValidUTF8(string(tail), "\uFFFD")
}

// statusLine says how an Exec ended: "ok", or the status and why, in the
// daemon's words when it gave some ("timeout: timed out after 5s: ...").
func statusLine(lang sandboxv1.Language, r *sandboxv1.ExecResult) string {
	var word, stock string
	switch st := r.GetStatus(); st {
	case sandboxv1.ExecStatus_EXEC_STATUS_OK:
		word = "ok"
	case sandboxv1.ExecStatus_EXEC_STATUS_ERROR:
		word, stock = "error", fmt.Sprintf("exit code %d", r.GetExitCode())
		if lang == sandboxv1.Language_LANGUAGE_PYTHON && r.GetErrorName() != "" {
			stock = "the code raised " + r.GetErrorName()
		}
	case sandboxv1.ExecStatus_EXEC_STATUS_TIMEOUT:
		word, stock = "timeout", "the code ran out of time and was stopped"
	case sandboxv1.ExecStatus_EXEC_STATUS_KILLED:
		word, stock = "killed", "the code was killed"
	case sandboxv1.ExecStatus_EXEC_STATUS_OOM_KILLED:
		word, stock = "out of memory", "the sandbox went over its memory limit and was killed"
	case sandboxv1.ExecStatus_EXEC_STATUS_OUTPUT_TRUNCATED:
		word, stock = "output truncated", "the code printed more than the sandbox's output limit and was stopped"
	case sandboxv1.ExecStatus_EXEC_STATUS_SANDBOX_DIED:
		word, stock = "sandbox died", "the sandbox died during the call"
	default:
		word = "unknown (" + st.String() + ")"
	}
	if why := cmp.Or(r.GetMessage(), stock); why != "" {
		return word + ": " + why
	}
	return word
}

// execNotes are the lines that follow the status: lost state, unless the
// daemon's message said so, and figures left out.
func execNotes(lang sandboxv1.Language, r *sandboxv1.ExecResult) []string {
	var notes []string
	if r.GetStateLost() && r.GetMessage() == "" {
		if lang == sandboxv1.Language_LANGUAGE_PYTHON {
			notes = append(notes, "The Python interpreter was restarted: earlier variables and imports are gone.")
		} else {
			notes = append(notes, "The bash session was restarted: the working directory is /workspace again and earlier variables and functions are gone.")
		}
	}
	if r.GetImagesTruncated() {
		notes = append(notes, "More figures were open than the sandbox returns (policy limits.images): the rest were closed without being returned.")
	}
	return notes
}
