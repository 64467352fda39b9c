// Command toolloop replays a recorded sequence of a model's tool calls
// against a sandboxd daemon, the way a tool loop (an LLM agent's runtime)
// would: it creates one sandbox, maps each call onto sandboxd's gRPC API,
// prints what the model would be shown, and destroys the sandbox at the end.
// The tools are those of `sandboxctl mcp` and of models' own tool-use APIs:
//
//	run_python                   -> Exec, LANGUAGE_PYTHON (state persists)
//	run_bash                     -> Exec, LANGUAGE_BASH_SESSION
//	str_replace_based_edit_tool  -> EditFile
//	list_files                   -> ListFiles
//	download_file                -> Download (saved under --out)
//
// Run it against a daemon (make run) with the recorded calls beside it:
//
//	go run ./examples/toolloop --socket /run/sandboxd/sandboxd.sock --calls examples/toolloop/calls.json --out /tmp/toolloop
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// callTimeout bounds each replayed call: the recorded cells take well
// under a second; a stuck daemon should fail the replay, not hang it.
const callTimeout = 2 * time.Minute

// call is one recorded tool call: the tool's name and its input, as a
// model's tool-use block carries them.
type call struct {
	Tool  string          `json:"tool"`
	Input json.RawMessage `json:"input"`
}

func main() {
	socket := flag.String("socket", "/run/sandboxd/sandboxd.sock", "the daemon's unix `SOCKET`")
	calls := flag.String("calls", "examples/toolloop/calls.json", "the recorded tool calls, a JSON `FILE`")
	out := flag.String("out", ".", "`DIR` that download_file saves into")
	flag.Parse()
	if err := run(*socket, *calls, *out, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "toolloop:", err)
		os.Exit(1)
	}
}

// run replays the calls in file against the daemon on socket.
func run(socket, file, out string, w io.Writer) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var calls []call
	if err := json.Unmarshal(data, &calls); err != nil {
		return fmt.Errorf("reading %s: %w", file, err)
	}
	conn, err := grpc.NewClient("unix:"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(24<<20)))
	if err != nil {
		return err
	}
	defer conn.Close()
	loop := &toolLoop{api: sandboxv1.NewSandboxServiceClient(conn), out: out, w: w}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	sb, err := loop.api.CreateSandbox(ctx, &sandboxv1.CreateSandboxRequest{Labels: map[string]string{"app": "toolloop"}})
	cancel()
	if err != nil {
		return fmt.Errorf("creating a sandbox: %w", err)
	}
	loop.id = sb.GetSandboxId()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		loop.api.DestroySandbox(ctx, &sandboxv1.DestroySandboxRequest{SandboxId: loop.id})
	}()
	fmt.Fprintf(w, "sandbox %s\n", loop.id)
	for i, c := range calls {
		fmt.Fprintf(w, "\n[%d] %s %s\n", i+1, c.Tool, c.Input)
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		text, err := loop.do(ctx, c)
		cancel()
		if err != nil {
			return fmt.Errorf("call %d (%s): %w", i+1, c.Tool, err)
		}
		fmt.Fprintf(w, "%s\n", strings.TrimRight(text, "\n"))
	}
	return nil
}

// toolLoop holds one replay's sandbox and where its output goes.
type toolLoop struct {
	api sandboxv1.SandboxServiceClient
	id  string
	out string
	w   io.Writer
}

// do runs one tool call and returns the text a model would be shown.
func (l *toolLoop) do(ctx context.Context, c call) (string, error) {
	switch c.Tool {
	case "run_python":
		var in struct{ Code string }
		if err := json.Unmarshal(c.Input, &in); err != nil {
			return "", err
		}
		return l.exec(ctx, &sandboxv1.ExecRequest{Language: sandboxv1.Language_LANGUAGE_PYTHON, Code: in.Code})
	case "run_bash":
		var in struct{ Command string }
		if err := json.Unmarshal(c.Input, &in); err != nil {
			return "", err
		}
		return l.exec(ctx, &sandboxv1.ExecRequest{Language: sandboxv1.Language_LANGUAGE_BASH_SESSION, Code: in.Command})
	case "str_replace_based_edit_tool":
		var in struct {
			Command, Path, FileText, OldStr, NewStr string
			InsertLine                              int32
			ViewRange                               []int32
		}
		if err := unmarshalSnake(c.Input, &in); err != nil {
			return "", err
		}
		cmd, ok := sandboxv1.EditCommand_value["EDIT_COMMAND_"+strings.ToUpper(in.Command)]
		if !ok {
			return "", fmt.Errorf("unknown editor command %q", in.Command)
		}
		resp, err := l.api.EditFile(ctx, &sandboxv1.EditFileRequest{SandboxId: l.id, Command: sandboxv1.EditCommand(cmd), Path: in.Path,
			FileText: in.FileText, OldStr: in.OldStr, NewStr: in.NewStr, InsertLine: in.InsertLine, ViewRange: in.ViewRange})
		if err != nil {
			return "", err
		}
		return resp.GetContent(), nil
	case "list_files":
		var in struct{ Path string }
		if err := json.Unmarshal(c.Input, &in); err != nil {
			return "", err
		}
		resp, err := l.api.ListFiles(ctx, &sandboxv1.ListFilesRequest{SandboxId: l.id, Path: in.Path})
		if err != nil {
			return "", err
		}
		var b strings.Builder
		for _, e := range resp.GetEntries() {
			fmt.Fprintf(&b, "%8d  %s\n", e.GetSize(), e.GetPath())
		}
		return b.String(), nil
	case "download_file":
		var in struct{ Path string }
		if err := json.Unmarshal(c.Input, &in); err != nil {
			return "", err
		}
		return l.download(ctx, in.Path)
	default:
		return "", fmt.Errorf("unknown tool %q", c.Tool)
	}
}

// exec runs code and returns its output and outcome; figures are saved
// under out as figure-N.png.
func (l *toolLoop) exec(ctx context.Context, req *sandboxv1.ExecRequest) (string, error) {
	req.SandboxId = l.id
	stream, err := l.api.Exec(ctx, req)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for {
		ev, err := stream.Recv()
		if err != nil {
			return "", err
		}
		switch e := ev.GetEvent().(type) {
		case *sandboxv1.ExecEvent_Stdout:
			b.Write(e.Stdout)
		case *sandboxv1.ExecEvent_Stderr:
			b.Write(e.Stderr)
		case *sandboxv1.ExecEvent_Result:
			r := e.Result
			if r.GetStatus() != sandboxv1.ExecStatus_EXEC_STATUS_OK {
				return "", fmt.Errorf("%v: %s\n%s", r.GetStatus(), r.GetMessage(), b.String())
			}
			for i, img := range r.GetImages() {
				name := filepath.Join(l.out, fmt.Sprintf("figure-%d.png", i+1))
				if err := os.WriteFile(name, img.GetData(), 0o644); err != nil {
					return "", err
				}
				fmt.Fprintf(&b, "[figure %d: %d bytes of PNG, saved as %s]\n", i+1, len(img.GetData()), name)
			}
			return b.String(), nil
		}
	}
}

// download saves a sandbox file under out, by its base name.
func (l *toolLoop) download(ctx context.Context, path string) (string, error) {
	stream, err := l.api.Download(ctx, &sandboxv1.DownloadRequest{SandboxId: l.id, Path: path})
	if err != nil {
		return "", err
	}
	var data []byte
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", err
		}
		data = append(data, msg.GetChunk()...)
	}
	name := filepath.Join(l.out, filepath.Base(path))
	if err := os.WriteFile(name, data, 0o644); err != nil {
		return "", err
	}
	return fmt.Sprintf("downloaded %s: %d bytes, saved as %s", path, len(data), name), nil
}

// unmarshalSnake decodes a tool input whose keys are snake_case (file_text)
// into a struct whose fields are the CamelCase of them (FileText).
func unmarshalSnake(data []byte, v any) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	camel := make(map[string]json.RawMessage, len(raw))
	for k, val := range raw {
		camel[strings.ReplaceAll(k, "_", "")] = val
	}
	b, err := json.Marshal(camel)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
