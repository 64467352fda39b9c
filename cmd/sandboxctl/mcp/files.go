package mcp

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandboxd/sandboxd/cmd/sandboxctl/internal/filestream"
	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// Caps on what download_file returns, by kind of file. The result travels
// whole in one JSON-RPC message, base64 makes binary data a third larger,
// and what a client passes on lands in the model's context.
const (
	// maxDownloadText is about 32k tokens: more would crowd out the rest
	// of a conversation; longer text is read in parts (view_range).
	maxDownloadText = 128 << 10
	// maxDownloadImage is the largest image the main model APIs accept.
	maxDownloadImage = 5 << 20
	// maxDownloadBinary bounds other files: a model can do little with
	// raw bytes, and code in the sandbox can convert or summarize them.
	maxDownloadBinary = 1 << 20
)

// uploadChunkSize is how many bytes of the file each Upload message
// carries, as sandboxctl upload sends them.
const uploadChunkSize = 256 << 10

// imageTypes are the image types that download_file returns as images:
// those the main model APIs take.
var imageTypes = map[string]bool{"image/png": true, "image/jpeg": true, "image/gif": true, "image/webp": true}

// editCommands maps str_replace_based_edit_tool's commands to EditFile's.
var editCommands = map[string]sandboxv1.EditCommand{
	"view":        sandboxv1.EditCommand_EDIT_COMMAND_VIEW,
	"create":      sandboxv1.EditCommand_EDIT_COMMAND_CREATE,
	"str_replace": sandboxv1.EditCommand_EDIT_COMMAND_STR_REPLACE,
	"insert":      sandboxv1.EditCommand_EDIT_COMMAND_INSERT,
}

// editInput is str_replace_based_edit_tool's input. The optional strings
// are pointers, so that a command missing one is told so rather than run
// with an empty string.
type editInput struct {
	Command    string  `json:"command" jsonschema:"What to do: view, create, str_replace or insert."`
	Path       string  `json:"path" jsonschema:"The file (or, for view, the directory) in the sandbox; relative paths are under /workspace."`
	FileText   *string `json:"file_text,omitempty" jsonschema:"create: the whole content of the file. Its directory must exist."`
	OldStr     *string `json:"old_str,omitempty" jsonschema:"str_replace: the exact text to replace, whitespace included; it must occur exactly once in the file."`
	NewStr     *string `json:"new_str,omitempty" jsonschema:"str_replace: the replacement for old_str (empty deletes it). insert: the lines to insert."`
	InsertLine *int32  `json:"insert_line,omitempty" jsonschema:"insert: the line after which new_str goes; 0 inserts at the top of the file."`
	ViewRange  []int32 `json:"view_range,omitempty" jsonschema:"view of a file: [first, last] lines to show, numbered from 1, last -1 for the end of the file. Left out: the whole file."`
}

// edit is str_replace_based_edit_tool, over EditFile.
func (t *tools) edit(ctx context.Context, call sandboxCall, in editInput) (*mcpsdk.CallToolResult, error) {
	cmd, ok := editCommands[in.Command]
	if !ok {
		return errorResult(fmt.Sprintf("unknown command %q: use view, create, str_replace or insert", in.Command)), nil
	}
	var missing string
	switch {
	case in.Command == "create" && in.FileText == nil:
		missing = "file_text"
	case in.Command == "str_replace" && in.OldStr == nil:
		missing = "old_str"
	case in.Command == "insert" && in.InsertLine == nil:
		missing = "insert_line"
	case in.Command == "insert" && in.NewStr == nil:
		missing = "new_str"
	}
	if missing != "" {
		return errorResult(fmt.Sprintf("%s needs %s", in.Command, missing)), nil
	}
	deref := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	req := &sandboxv1.EditFileRequest{
		SandboxId: call.id,
		Command:   cmd,
		Path:      in.Path,
		FileText:  deref(in.FileText),
		OldStr:    deref(in.OldStr),
		NewStr:    deref(in.NewStr),
		ViewRange: in.ViewRange,
	}
	if in.InsertLine != nil {
		req.InsertLine = *in.InsertLine
	}
	resp, err := t.client.EditFile(ctx, req)
	if err != nil {
		return nil, err
	}
	return textResult(resp.GetContent()), nil
}

// listInput is list_files' input.
type listInput struct {
	Path  string `json:"path,omitempty" jsonschema:"The directory to list; relative paths are under /workspace. Left out: /workspace."`
	Depth int32  `json:"depth,omitempty" jsonschema:"How many levels to list: 1 (the default) lists the directory's own entries, 2 also its subdirectories' entries, and so on, up to 10."`
}

// list is list_files, over ListFiles.
func (t *tools) list(ctx context.Context, call sandboxCall, in listInput) (*mcpsdk.CallToolResult, error) {
	resp, err := t.client.ListFiles(ctx, &sandboxv1.ListFilesRequest{SandboxId: call.id, Path: in.Path, Depth: in.Depth})
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	for _, e := range resp.GetEntries() {
		mode, size, name := fs.FileMode(e.GetMode()).Perm(), fmt.Sprint(e.GetSize()), e.GetPath()
		if e.GetIsDir() {
			mode, size, name = mode|fs.ModeDir, "-", name+"/"
		}
		fmt.Fprintf(&b, "%s %10s %s %s\n", mode, size, e.GetModifiedAt().AsTime().UTC().Format("2006-01-02 15:04"), name)
	}
	switch {
	case resp.GetTruncated():
		b.WriteString("The listing stopped at 10,000 entries: list a subdirectory, or with a smaller depth.\n")
	case len(resp.GetEntries()) == 0:
		b.WriteString("The directory is empty.\n")
	}
	return textResult(b.String()), nil
}

// uploadInput is upload_file's input.
type uploadInput struct {
	Path     string `json:"path" jsonschema:"Where to write the file in the sandbox; relative paths are under /workspace. Missing parent directories are created, an existing file is replaced."`
	Content  string `json:"content" jsonschema:"The file's content: the text itself with encoding text, or the bytes in base64 with encoding base64."`
	Encoding string `json:"encoding,omitempty" jsonschema:"How content is written: text (the default) for text files, base64 for binary files such as images, archives and spreadsheets."`
}

// upload is upload_file, over Upload.
func (t *tools) upload(ctx context.Context, call sandboxCall, in uploadInput) (*mcpsdk.CallToolResult, error) {
	data := []byte(in.Content)
	switch in.Encoding {
	case "", "text":
	case "base64":
		// Tolerate base64 wrapped in lines, as encoders often write it.
		var err error
		data, err = base64.StdEncoding.DecodeString(strings.Join(strings.Fields(in.Content), ""))
		if err != nil {
			return errorResult(fmt.Sprintf("content is not valid base64 (%v): encode the file's bytes in standard base64, with padding", err)), nil
		}
	default:
		return errorResult(fmt.Sprintf("unknown encoding %q: use text or base64", in.Encoding)), nil
	}
	// Returning early cancels the stream, so that no partial file is left.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := t.client.Upload(ctx)
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
	header := &sandboxv1.FileHeader{SandboxId: call.id, Path: in.Path, MakeParents: true}
	if err := send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Header{Header: header}}); err != nil {
		return nil, err
	}
	for chunk := range slices.Chunk(data, uploadChunkSize) {
		if err := send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Chunk{Chunk: chunk}}); err != nil {
			return nil, err
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, err
	}
	return textResult(fmt.Sprintf("Wrote %d bytes to %s.", resp.GetSize(), resp.GetPath())), nil
}

// downloadInput is download_file's input.
type downloadInput struct {
	Path string `json:"path" jsonschema:"The file to read in the sandbox; relative paths are under /workspace."`
}

// download is download_file, over Download: text as text, images as
// images, other files as an embedded resource, each within its cap.
func (t *tools) download(ctx context.Context, call sandboxCall, in downloadInput) (*mcpsdk.CallToolResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := t.client.Download(ctx, &sandboxv1.DownloadRequest{SandboxId: call.id, Path: in.Path})
	if err != nil {
		return nil, err
	}
	first, err := stream.Recv()
	if err == io.EOF {
		return nil, errors.New("the daemon sent no file")
	}
	if err != nil {
		return nil, err
	}
	info := first.GetInfo()
	if info == nil {
		return nil, errors.New("the daemon sent file data before the file's description")
	}
	path, size := info.GetPath(), info.GetSize()
	if size > max(maxDownloadText, maxDownloadImage, maxDownloadBinary) {
		return tooLarge(path, size, "file", maxDownloadImage), nil
	}
	var data bytes.Buffer
	if _, err := filestream.Receive(stream, &data, size); err != nil {
		return nil, err
	}
	mime := http.DetectContentType(data.Bytes())
	switch {
	case imageTypes[mime]:
		if size > maxDownloadImage {
			return tooLarge(path, size, "image", maxDownloadImage), nil
		}
		return &mcpsdk.CallToolResult{Content: []mcpsdk.Content{
			&mcpsdk.TextContent{Text: fmt.Sprintf("%s: %s, %d bytes", path, mime, size)},
			&mcpsdk.ImageContent{Data: data.Bytes(), MIMEType: mime},
		}}, nil
	case utf8.Valid(data.Bytes()) && bytes.IndexByte(data.Bytes(), 0) < 0:
		if size > maxDownloadText {
			return tooLarge(path, size, "text file", maxDownloadText), nil
		}
		if size == 0 {
			return textResult(path + " is empty."), nil
		}
		return textResult(data.String()), nil
	}
	if size > maxDownloadBinary {
		return tooLarge(path, size, "binary file", maxDownloadBinary), nil
	}
	if strings.HasPrefix(mime, "text/") {
		// Sniffed as text, yet not UTF-8 or with NUL bytes: raw bytes.
		mime = "application/octet-stream"
	}
	return &mcpsdk.CallToolResult{Content: []mcpsdk.Content{
		&mcpsdk.TextContent{Text: fmt.Sprintf("%s: %s, %d bytes, attached as a resource", path, mime, size)},
		&mcpsdk.EmbeddedResource{Resource: &mcpsdk.ResourceContents{URI: "file://" + path, MIMEType: mime, Blob: data.Bytes()}},
	}}, nil
}

// tooLarge refuses to return a file of size bytes over limit, saying how to
// get at it instead.
func tooLarge(path string, size int64, kind string, limit int) *mcpsdk.CallToolResult {
	return errorResult(fmt.Sprintf("%s is a %s of %d bytes, more than the %d that download_file returns: read text in parts with str_replace_based_edit_tool view and view_range, or shrink the file with run_bash or run_python (head, compress, resize) and download the result",
		path, kind, size, limit))
}
