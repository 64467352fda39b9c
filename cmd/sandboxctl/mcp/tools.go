package mcp

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/jsonschema-go/jsonschema"
	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// tools are the MCP tools over the daemon.
type tools struct {
	client    sandboxv1.SandboxServiceClient
	sandboxes *sandboxes
	describe  func(error) string
}

// add registers the tools on server.
func (t *tools) add(server *mcpsdk.Server) {
	openWorld := false // the sandbox has no network
	mcpsdk.AddTool(server, &mcpsdk.Tool{
		Name:  "run_python",
		Title: "Run Python",
		Description: "Run Python code in this session's sandbox, in a persistent Python 3 interpreter: variables, imports and functions persist from one call to the next, like notebook cells, and the value of a final expression is returned (its repr), as a notebook shows it. " +
			"numpy, pandas, scipy, matplotlib, scikit-learn and sympy are installed; nothing can be installed (no network). " +
			"The working directory is /workspace, shared with run_bash and the file tools. Matplotlib figures left open (or shown) are returned as PNG images and closed. " +
			"The result gives stdout, stderr, the value and the status; an exception, a timeout, running out of memory or too much output is an error result that says why. " +
			fmt.Sprintf("At most %d KiB of each output stream is returned (its start and end): write long output to a file and read it in parts.", maxStreamBytes>>10),
		Annotations: &mcpsdk.ToolAnnotations{OpenWorldHint: &openWorld},
		InputSchema: schemaFor[runPythonInput](func(s *jsonschema.Schema) {
			s.Properties["timeout"].Minimum = jsonschema.Ptr(0.0)
		}),
	}, withSandbox(t, t.runPython))

	mcpsdk.AddTool(server, &mcpsdk.Tool{
		Name:  "run_bash",
		Title: "Run bash",
		Description: "Run a command in this session's persistent bash session in the sandbox: the working directory, exported and shell variables, functions and aliases persist from one call to the next (after `cd /tmp` the next call runs in /tmp). " +
			"The session starts in /workspace, shared with run_python and the file tools. The usual command-line tools are installed (coreutils, grep, sed, awk, ripgrep, jq, sqlite3, tar, zip, file), but there is no network. " +
			"Standard input is empty: do not start interactive programs (editors, pagers, REPLs). " +
			"The result gives stdout, stderr and the status; a non-zero exit code, a timeout or too much output is an error result that says why. " +
			fmt.Sprintf("At most %d KiB of each output stream is returned (its start and end). ", maxStreamBytes>>10) +
			"Set restart to start the session afresh, e.g. after a command broke it.",
		Annotations: &mcpsdk.ToolAnnotations{OpenWorldHint: &openWorld},
		InputSchema: schemaFor[runBashInput](func(s *jsonschema.Schema) {
			s.Properties["timeout"].Minimum = jsonschema.Ptr(0.0)
		}),
	}, withSandbox(t, t.runBash))

	mcpsdk.AddTool(server, &mcpsdk.Tool{
		Name:  "str_replace_based_edit_tool",
		Title: "View and edit files",
		Description: "View, create and edit text files in this session's sandbox. Commands:\n" +
			"- view: show a file with its lines numbered from 1 (view_range [first, last] shows only those lines; last -1 means to the end), or a directory's entries two levels deep.\n" +
			"- create: write file_text to path, creating the file or replacing it whole.\n" +
			"- str_replace: replace old_str with new_str (empty new_str deletes it). old_str must match the file exactly, whitespace and indentation included, and occur exactly once: otherwise nothing changes and the error says how many times (and on which lines) it occurs; include more of the surrounding lines to make it unique.\n" +
			"- insert: insert new_str after line insert_line (0 inserts at the top of the file).\n" +
			"Edits return a numbered snippet of the changed lines.",
		Annotations: &mcpsdk.ToolAnnotations{OpenWorldHint: &openWorld},
		InputSchema: schemaFor[editInput](func(s *jsonschema.Schema) {
			s.Properties["command"].Enum = []any{"view", "create", "str_replace", "insert"}
			s.Properties["insert_line"].Minimum = jsonschema.Ptr(0.0)
			vr := s.Properties["view_range"]
			vr.MinItems, vr.MaxItems = jsonschema.Ptr(2), jsonschema.Ptr(2)
		}),
	}, withSandbox(t, t.edit))

	mcpsdk.AddTool(server, &mcpsdk.Tool{
		Name:  "list_files",
		Title: "List files",
		Description: "List a directory of this session's sandbox, one line per entry: permissions, size in bytes (- for directories), modification time (UTC) and absolute path (directories end in /). " +
			"depth 1 lists the directory's own entries, 2 also those of its subdirectories, and so on. The listing stops at 10,000 entries.",
		Annotations: &mcpsdk.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: &openWorld},
		InputSchema: schemaFor[listInput](func(s *jsonschema.Schema) {
			s.Properties["depth"].Minimum = jsonschema.Ptr(1.0)
			s.Properties["depth"].Maximum = jsonschema.Ptr(10.0)
		}),
	}, withSandbox(t, t.list))

	mcpsdk.AddTool(server, &mcpsdk.Tool{
		Name:  "upload_file",
		Title: "Upload a file",
		Description: "Write a file into this session's sandbox, creating missing parent directories and replacing an existing file. " +
			`Give text as content with encoding "text" (the default), and binary files (images, archives, spreadsheets) base64-encoded with encoding "base64". ` +
			"A call carries at most 16 MiB, about 12 MiB of a binary file once in base64. To write a source file you will then edit, str_replace_based_edit_tool create does the same for text.",
		Annotations: &mcpsdk.ToolAnnotations{OpenWorldHint: &openWorld},
		InputSchema: schemaFor[uploadInput](func(s *jsonschema.Schema) {
			s.Properties["encoding"].Enum = []any{"text", "base64"}
			s.Properties["encoding"].Default = json.RawMessage(`"text"`)
		}),
	}, withSandbox(t, t.upload))

	mcpsdk.AddTool(server, &mcpsdk.Tool{
		Name:  "download_file",
		Title: "Download a file",
		Description: "Read a file of this session's sandbox: " +
			fmt.Sprintf("a text file comes back as text (up to %d KiB), a PNG, JPEG, GIF or WebP image as an image (up to %d MiB), any other file as an embedded resource with its bytes (up to %d MiB). ",
				maxDownloadText>>10, maxDownloadImage>>20, maxDownloadBinary>>20) +
			"Larger files are refused: read long text in parts with str_replace_based_edit_tool view and view_range, or shrink the file first with run_bash or run_python (head, compress, resize).",
		Annotations: &mcpsdk.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: &openWorld},
		InputSchema: schemaFor[downloadInput](nil),
	}, withSandbox(t, t.download))

	mcpsdk.AddTool(server, &mcpsdk.Tool{
		Name:  "reset_sandbox",
		Title: "Reset the sandbox",
		Description: "Destroy this session's sandbox, with its files, Python variables, bash session and processes; the next tool call gets a fresh sandbox. " +
			"Use it when the sandbox is broken (stuck processes, a full disk, a dead interpreter) or to start a task from a clean state.",
		Annotations: &mcpsdk.ToolAnnotations{DestructiveHint: jsonschema.Ptr(true), OpenWorldHint: &openWorld},
		InputSchema: schemaFor[resetInput](nil),
	}, t.reset)
}

// schemaFor is the input schema of In, as the SDK would infer it, with
// optional fields typed plainly (the SDK makes pointers and slices
// nullable, which models need not know), then adjusted by patch for what
// struct tags cannot say (enums, bounds).
func schemaFor[In any](patch func(*jsonschema.Schema)) *jsonschema.Schema {
	s, err := jsonschema.For[In](nil)
	if err != nil {
		panic(fmt.Sprintf("input schema of %T: %v", *new(In), err)) // a bug in the types below
	}
	for _, p := range s.Properties {
		if len(p.Types) == 2 && p.Types[0] == "null" {
			p.Type, p.Types = p.Types[1], nil
		}
	}
	if patch != nil {
		patch(s)
	}
	return s
}

// sandboxCall is a tool call's hold on its session's sandbox.
type sandboxCall struct {
	id   string
	slot *slot
}

// withSandbox makes a tool handler of do: it gets the session's sandbox
// (creating it at the session's first call) and runs do on it. An error
// from do is the daemon's: it becomes an error result with the daemon's
// message, and a note when the sandbox itself turned out to be gone.
func withSandbox[In any](t *tools, do func(context.Context, sandboxCall, In) (*mcpsdk.CallToolResult, error)) mcpsdk.ToolHandlerFor[In, any] {
	return func(ctx context.Context, req *mcpsdk.CallToolRequest, in In) (*mcpsdk.CallToolResult, any, error) {
		ctx, cancel := t.sandboxes.bound(ctx)
		defer cancel()
		sl, id, err := t.sandboxes.get(ctx, req.Session)
		if err != nil {
			return errorResult("creating this session's sandbox: " + t.describe(err)), nil, nil
		}
		call := sandboxCall{id: id, slot: sl}
		res, err := do(ctx, call, in)
		if err != nil {
			msg := t.describe(err)
			if c := status.Code(err); c == codes.NotFound || c == codes.FailedPrecondition {
				if lost := t.sandboxes.lost(ctx, sl, id); lost != "" {
					msg += "\n" + lost
				}
			}
			return errorResult(msg), nil, nil
		}
		return res, nil, nil
	}
}

// errorResult is a tool result that reports a failure the model can act
// on, rather than a protocol error it would not see.
func errorResult(text string) *mcpsdk.CallToolResult {
	return &mcpsdk.CallToolResult{IsError: true, Content: []mcpsdk.Content{&mcpsdk.TextContent{Text: text}}}
}

// textResult is a successful tool result of one text.
func textResult(text string) *mcpsdk.CallToolResult {
	return &mcpsdk.CallToolResult{Content: []mcpsdk.Content{&mcpsdk.TextContent{Text: text}}}
}

// resetInput is reset_sandbox's input: nothing.
type resetInput struct{}

// reset is reset_sandbox.
func (t *tools) reset(ctx context.Context, req *mcpsdk.CallToolRequest, _ resetInput) (*mcpsdk.CallToolResult, any, error) {
	ctx, cancel := t.sandboxes.bound(ctx)
	defer cancel()
	id, err := t.sandboxes.reset(ctx, req.Session)
	switch {
	case err != nil:
		return errorResult("destroying this session's sandbox: " + t.describe(err)), nil, nil
	case id == "":
		return textResult("This session had no sandbox yet; the next call gets a fresh one."), nil, nil
	}
	return textResult(fmt.Sprintf("Destroyed sandbox %s with its files, variables and processes; the next call gets a fresh sandbox.", id)), nil, nil
}
