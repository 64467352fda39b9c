package mcp

import (
	"bytes"
	"context"
	"encoding/base64"
	"image"
	"image/png"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// TestConcurrentCallsOfASessionShareOneSandbox guarantees that the first
// calls of a session, arriving together, create a single sandbox, which
// they all use, and that the end of the session destroys it.
func TestConcurrentCallsOfASessionShareOneSandbox(t *testing.T) {
	f, client := startFake(t)
	f.createDelay = 100 * time.Millisecond
	cs := connect(t, newTestServer(t, client))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if out, isErr := call(t, cs, "run_python", map[string]any{"code": "1"}); isErr {
				t.Errorf("run_python: %s", out)
			}
		})
	}
	wg.Wait()
	used := f.sandboxesUsed()
	if f.creates != 1 || len(used) != 8 || len(slices.Compact(used)) != 1 {
		t.Fatalf("%d creates, Execs in %v; want 1 sandbox for all 8", f.creates, used)
	}
	cs.Close()
	f.waitDestroyed(t, used[0])
}

// TestEachSessionHasItsOwnSandboxUntilItEnds guarantees that two sessions
// of one server get two sandboxes, and that ending one destroys its
// sandbox only.
func TestEachSessionHasItsOwnSandboxUntilItEnds(t *testing.T) {
	f, client := startFake(t)
	s := newTestServer(t, client)
	a, b := connect(t, s), connect(t, s)
	call(t, a, "run_python", map[string]any{"code": "1"})
	call(t, b, "run_python", map[string]any{"code": "1"})
	call(t, a, "run_python", map[string]any{"code": "2"})
	used := f.sandboxesUsed()
	if len(used) != 3 || used[0] == used[1] || used[0] != used[2] {
		t.Fatalf("Execs ran in %v; want session a in one sandbox, b in another", used)
	}
	a.Close()
	f.waitDestroyed(t, used[0])
	if out, isErr := call(t, b, "run_python", map[string]any{"code": "3"}); isErr {
		t.Fatalf("session b after a ended: %s", out)
	}
	if last := f.sandboxesUsed()[3]; last != used[1] {
		t.Fatalf("session b moved from %s to %s", used[1], last)
	}
}

// TestResetSandboxGivesTheNextCallAFreshSandbox guarantees that
// reset_sandbox destroys the session's sandbox and that the next call
// creates another.
func TestResetSandboxGivesTheNextCallAFreshSandbox(t *testing.T) {
	f, client := startFake(t)
	cs := connect(t, newTestServer(t, client))
	if out, _ := call(t, cs, "reset_sandbox", nil); !strings.Contains(out, "no sandbox yet") {
		t.Errorf("reset before any call: %q", out)
	}
	call(t, cs, "run_python", map[string]any{"code": "1"})
	out, isErr := call(t, cs, "reset_sandbox", nil)
	first := f.sandboxesUsed()[0]
	if isErr || !strings.Contains(out, "Destroyed sandbox "+first) {
		t.Fatalf("reset_sandbox: %q (error %v)", out, isErr)
	}
	f.waitDestroyed(t, first)
	call(t, cs, "run_python", map[string]any{"code": "1"})
	if second := f.sandboxesUsed()[1]; second == first {
		t.Fatalf("the call after the reset ran in the old sandbox %s", first)
	}
}

// TestALostSandboxIsSaidAndReplaced guarantees that when the session's
// sandbox is gone (destroyed by the daemon, or dead after running out of
// memory) the failed call says so, and the next call gets a fresh one.
func TestALostSandboxIsSaidAndReplaced(t *testing.T) {
	for _, tc := range []struct {
		name string
		lose func(f *fakeDaemon, id string)
		want string
	}{
		{"destroyed", func(f *fakeDaemon, id string) { delete(f.live, id) }, "it was destroyed"},
		{"dead", func(f *fakeDaemon, id string) { f.live[id] = false }, "it died (out of memory)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, client := startFake(t)
			cs := connect(t, newTestServer(t, client))
			call(t, cs, "run_python", map[string]any{"code": "1"})
			id := f.sandboxesUsed()[0]
			f.mu.Lock()
			tc.lose(f, id)
			f.mu.Unlock()
			out, isErr := call(t, cs, "list_files", nil)
			if !isErr || !strings.Contains(out, tc.want) || !strings.Contains(out, "the next call gets a fresh sandbox") {
				t.Fatalf("call on a lost sandbox: %q (error %v)", out, isErr)
			}
			if out, isErr := call(t, cs, "run_python", map[string]any{"code": "1"}); isErr {
				t.Fatalf("call after the loss: %s", out)
			}
			if next := f.sandboxesUsed()[1]; next == id {
				t.Fatalf("the call after the loss ran in the lost sandbox %s", id)
			}
		})
	}
}

// TestExecOutcomesAreToolResults guarantees how run_python and run_bash
// report: the streams and the value in tags (the value's echo on stdout
// dropped), a status line, figures as images; and every outcome but OK,
// including a timeout, OOM, a non-zero exit and truncated output, as an
// error result that says why.
func TestExecOutcomesAreToolResults(t *testing.T) {
	f, client := startFake(t)
	cs := connect(t, newTestServer(t, client))
	st := sandboxv1.ExecStatus_EXEC_STATUS_OK
	for _, tc := range []struct {
		name    string
		tool    string
		events  []*sandboxv1.ExecEvent
		wantErr bool
		want    []string
	}{
		{"value", "run_python", []*sandboxv1.ExecEvent{stdout("hi\n42\n"), result(&sandboxv1.ExecResult{Status: st, Value: "42"})},
			false, []string{"<stdout>\nhi\n</stdout>\n<value>\n42\n</value>\nstatus: ok"}},
		{"exception", "run_python", []*sandboxv1.ExecEvent{stderr("Traceback...\nZeroDivisionError: division by zero\n"), result(&sandboxv1.ExecResult{Status: sandboxv1.ExecStatus_EXEC_STATUS_ERROR, ExitCode: 1, ErrorName: "ZeroDivisionError"})},
			true, []string{"<stderr>\nTraceback", "status: error: the code raised ZeroDivisionError"}},
		{"exit code", "run_bash", []*sandboxv1.ExecEvent{result(&sandboxv1.ExecResult{Status: sandboxv1.ExecStatus_EXEC_STATUS_ERROR, ExitCode: 3})},
			true, []string{"status: error: exit code 3"}},
		{"timeout", "run_bash", []*sandboxv1.ExecEvent{result(&sandboxv1.ExecResult{Status: sandboxv1.ExecStatus_EXEC_STATUS_TIMEOUT, ExitCode: -1, Message: "timed out after 1s: the command was stopped"})},
			true, []string{"status: timeout: timed out after 1s: the command was stopped"}},
		{"oom", "run_python", []*sandboxv1.ExecEvent{result(&sandboxv1.ExecResult{Status: sandboxv1.ExecStatus_EXEC_STATUS_OOM_KILLED, ExitCode: -1})},
			true, []string{"status: out of memory: the sandbox went over its memory limit"}},
		{"truncated", "run_python", []*sandboxv1.ExecEvent{stdout("x"), result(&sandboxv1.ExecResult{Status: sandboxv1.ExecStatus_EXEC_STATUS_OUTPUT_TRUNCATED, ExitCode: -1})},
			true, []string{"status: output truncated"}},
		{"lost state", "run_python", []*sandboxv1.ExecEvent{result(&sandboxv1.ExecResult{Status: st, StateLost: true})},
			false, []string{"status: ok\nThe Python interpreter was restarted"}},
		{"long output", "run_bash", []*sandboxv1.ExecEvent{stdout("start" + strings.Repeat("x", 100<<10) + "end"), result(&sandboxv1.ExecResult{Status: st})},
			false, []string{"<stdout>\nstartxxx", "bytes of stdout cut here", "xxxend\n</stdout>"}},
	} {
		f.mu.Lock()
		f.exec = func(context.Context, *sandboxv1.ExecRequest) ([]*sandboxv1.ExecEvent, error) { return tc.events, nil }
		f.mu.Unlock()
		args := map[string]any{"code": "x", "command": "x"}
		delete(args, map[string]string{"run_python": "command", "run_bash": "code"}[tc.tool])
		out, isErr := call(t, cs, tc.tool, args)
		if isErr != tc.wantErr {
			t.Errorf("%s: error %v, want %v: %q", tc.name, isErr, tc.wantErr, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: %q does not contain %q", tc.name, out, w)
			}
		}
		if len(out) > 2*maxStreamBytes {
			t.Errorf("%s: %d bytes of text, more than the streams' cap", tc.name, len(out))
		}
	}
}

// TestRunPythonReturnsFiguresAsImages guarantees that the figures of a
// cell come back as image content after the text.
func TestRunPythonReturnsFiguresAsImages(t *testing.T) {
	f, client := startFake(t)
	cs := connect(t, newTestServer(t, client))
	pngData := testPNG(t)
	f.exec = func(context.Context, *sandboxv1.ExecRequest) ([]*sandboxv1.ExecEvent, error) {
		return []*sandboxv1.ExecEvent{result(&sandboxv1.ExecResult{Status: sandboxv1.ExecStatus_EXEC_STATUS_OK,
			Images: []*sandboxv1.Image{{MimeType: "image/png", Data: pngData}}})}, nil
	}
	res, err := cs.CallTool(context.Background(), &mcpsdk.CallToolParams{Name: "run_python", Arguments: map[string]any{"code": "plt.plot([1, 2])"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Content) != 2 {
		t.Fatalf("content %v, want text and an image", res.Content)
	}
	img, ok := res.Content[1].(*mcpsdk.ImageContent)
	if !ok || img.MIMEType != "image/png" || !bytes.Equal(img.Data, pngData) {
		t.Fatalf("second content is %#v, want the PNG", res.Content[1])
	}
}

// TestRunBashUsesThePersistentSession guarantees that run_bash runs in the
// bash session, restarting it when asked, and that restart alone is a
// valid call while an empty call is an error result.
func TestRunBashUsesThePersistentSession(t *testing.T) {
	f, client := startFake(t)
	cs := connect(t, newTestServer(t, client))
	call(t, cs, "run_bash", map[string]any{"command": "cd /tmp", "timeout": 5})
	call(t, cs, "run_bash", map[string]any{"restart": true})
	if out, isErr := call(t, cs, "run_bash", map[string]any{}); !isErr || !strings.Contains(out, "command is empty") {
		t.Errorf("run_bash without command: %q (error %v)", out, isErr)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.execs) != 2 {
		t.Fatalf("%d Execs, want 2", len(f.execs))
	}
	first, second := f.execs[0], f.execs[1]
	if first.GetLanguage() != sandboxv1.Language_LANGUAGE_BASH_SESSION || first.GetRestartSession() || first.GetTimeout().AsDuration() != 5*time.Second {
		t.Errorf("first Exec %v", first)
	}
	if second.GetCode() != "" || !second.GetRestartSession() {
		t.Errorf("restart Exec %v", second)
	}
}

// TestDaemonErrorsAreToolResults guarantees that an error of the daemon
// (a str_replace that matches twice) is an error result with its message,
// and that a command missing what it needs is an error result before it
// reaches the daemon.
func TestDaemonErrorsAreToolResults(t *testing.T) {
	f, client := startFake(t)
	cs := connect(t, newTestServer(t, client))
	out, isErr := call(t, cs, "str_replace_based_edit_tool", map[string]any{"command": "create", "path": "a.py", "file_text": "x = 1\n"})
	if isErr || out != "EDIT_COMMAND_CREATE /workspace/a.py" {
		t.Fatalf("create: %q (error %v)", out, isErr)
	}
	f.editErr = status.Error(codes.FailedPrecondition, "old_str occurs 2 times in /workspace/a.py, on lines 1 and 2: make it unique")
	out, isErr = call(t, cs, "str_replace_based_edit_tool", map[string]any{"command": "str_replace", "path": "a.py", "old_str": "x", "new_str": "y"})
	if !isErr || out != "old_str occurs 2 times in /workspace/a.py, on lines 1 and 2: make it unique" {
		t.Fatalf("str_replace matching twice: %q (error %v)", out, isErr)
	}
	for _, args := range []map[string]any{
		{"command": "create", "path": "a.py"},
		{"command": "insert", "path": "a.py", "new_str": "x"},
		{"command": "str_replace", "path": "a.py", "new_str": "x"},
	} {
		if out, isErr := call(t, cs, "str_replace_based_edit_tool", args); !isErr || !strings.Contains(out, "needs") {
			t.Errorf("%v: %q (error %v)", args, out, isErr)
		}
	}
	if out, isErr := call(t, cs, "str_replace_based_edit_tool", map[string]any{"command": "delete", "path": "a.py"}); !isErr {
		t.Errorf("unknown command: %q", out)
	}
}

// TestListFilesShowsOneLinePerEntry guarantees list_files' format.
func TestListFilesShowsOneLinePerEntry(t *testing.T) {
	_, client := startFake(t)
	cs := connect(t, newTestServer(t, client))
	out, isErr := call(t, cs, "list_files", map[string]any{"depth": 2})
	want := "drwxr-xr-x          - 1970-01-01 00:00 /workspace/data/\n-rw-r--r--       1234 1970-01-01 00:00 /workspace/data/a.csv\n"
	if isErr || out != want {
		t.Fatalf("list_files:\n%s\nwant:\n%s", out, want)
	}
}

// TestFilesRoundTripAsTextImageOrResource guarantees that upload_file
// writes text and base64 content byte for byte, and that download_file
// returns text as text, a PNG as an image and other bytes as an embedded
// resource, and refuses what is over its caps.
func TestFilesRoundTripAsTextImageOrResource(t *testing.T) {
	f, client := startFake(t)
	cs := connect(t, newTestServer(t, client))
	pngData := testPNG(t)
	binary := []byte{0, 1, 2, 0xff}
	uploads := []struct {
		path, content, encoding string
		want                    []byte
	}{
		{"notes/a.txt", "héllo\n", "", []byte("héllo\n")},
		{"plot.png", base64.StdEncoding.EncodeToString(pngData), "base64", pngData},
		{"blob.bin", base64.StdEncoding.EncodeToString(binary), "base64", binary},
		{"big.txt", strings.Repeat("a", maxDownloadText+1), "text", nil},
	}
	for _, u := range uploads {
		args := map[string]any{"path": u.path, "content": u.content}
		if u.encoding != "" {
			args["encoding"] = u.encoding
		}
		if out, isErr := call(t, cs, "upload_file", args); isErr || !strings.HasPrefix(out, "Wrote ") {
			t.Fatalf("upload %s: %q", u.path, out)
		}
	}
	id := f.onlySandbox()
	for _, u := range uploads[:3] {
		if got := f.file(id, "/workspace/"+u.path); !bytes.Equal(got, u.want) {
			t.Errorf("%s holds %q, want %q", u.path, got, u.want)
		}
	}
	if out, isErr := call(t, cs, "upload_file", map[string]any{"path": "x", "content": "not base64!", "encoding": "base64"}); !isErr || !strings.Contains(out, "not valid base64") {
		t.Errorf("bad base64: %q", out)
	}

	download := func(path string) *mcpsdk.CallToolResult {
		res, err := cs.CallTool(context.Background(), &mcpsdk.CallToolParams{Name: "download_file", Arguments: map[string]any{"path": path}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := download("notes/a.txt"); res.IsError || text(res) != "héllo\n" {
		t.Errorf("text download: %v", res.Content)
	}
	res := download("plot.png")
	if img, ok := res.Content[len(res.Content)-1].(*mcpsdk.ImageContent); res.IsError || !ok || img.MIMEType != "image/png" || !bytes.Equal(img.Data, pngData) {
		t.Errorf("PNG download: %v", res.Content)
	}
	res = download("blob.bin")
	if r, ok := res.Content[len(res.Content)-1].(*mcpsdk.EmbeddedResource); res.IsError || !ok || r.Resource.URI != "file:///workspace/blob.bin" || !bytes.Equal(r.Resource.Blob, binary) {
		t.Errorf("binary download: %v", res.Content)
	}
	if res := download("big.txt"); !res.IsError || !strings.Contains(text(res), "more than the") {
		t.Errorf("download over the text cap: %v", text(res))
	}
	if res := download("missing.txt"); !res.IsError || !strings.Contains(text(res), "no such file") || strings.Contains(text(res), "gone") {
		t.Errorf("missing file: %v", text(res))
	}
}

// TestStdioShutdownDestroysTheSandbox guarantees that ServeStdio returns
// when its client closes the stream, and when its context is cancelled
// even with a call still running, having destroyed the session's sandbox.
func TestStdioShutdownDestroysTheSandbox(t *testing.T) {
	for _, cancelled := range []bool{false, true} {
		f, client := startFake(t)
		s := newTestServer(t, client)
		started := make(chan struct{})
		f.exec = func(ctx context.Context, req *sandboxv1.ExecRequest) ([]*sandboxv1.ExecEvent, error) {
			if req.GetCode() == "sleep" {
				close(started)
				<-ctx.Done() // until the server stops the call
				return nil, ctx.Err()
			}
			return []*sandboxv1.ExecEvent{result(&sandboxv1.ExecResult{Status: sandboxv1.ExecStatus_EXEC_STATUS_OK})}, nil
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		clientIn, serverOut := io.Pipe()
		serverIn, clientOut := io.Pipe()
		served := make(chan error, 1)
		go func() { served <- s.ServeStdio(ctx, serverIn, serverOut) }()
		cs, err := mcpsdk.NewClient(&mcpsdk.Implementation{Name: "test"}, nil).Connect(ctx,
			&mcpsdk.IOTransport{Reader: clientIn, Writer: clientOut}, nil)
		if err != nil {
			t.Fatal(err)
		}
		call(t, cs, "run_python", map[string]any{"code": "1"})
		id := f.sandboxesUsed()[0]
		if cancelled {
			go cs.CallTool(ctx, &mcpsdk.CallToolParams{Name: "run_python", Arguments: map[string]any{"code": "sleep"}})
			<-started
			cancel()
		} else {
			clientOut.Close()
		}
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Fatalf("cancelled %v: ServeStdio did not return", cancelled)
		}
		f.mu.Lock()
		destroyed := slices.Contains(f.destroyed, id)
		f.mu.Unlock()
		if !destroyed {
			t.Errorf("cancelled %v: ServeStdio returned before destroying %s", cancelled, id)
		}
	}
}

// TestHTTPSessionsHaveTheirOwnSandboxes guarantees that ServeHTTP gives
// each client a session with its own sandbox, destroyed when the client
// ends its session, and destroys the rest when it stops.
func TestHTTPSessionsHaveTheirOwnSandboxes(t *testing.T) {
	f, client := startFake(t)
	s := newTestServer(t, client)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	urls := make(chan string, 1)
	served := make(chan error, 1)
	go func() { served <- s.ServeHTTP(ctx, "127.0.0.1:0", func(url string) { urls <- url }) }()
	url := <-urls
	var sessions []*mcpsdk.ClientSession
	for range 2 {
		cs, err := mcpsdk.NewClient(&mcpsdk.Implementation{Name: "test"}, nil).Connect(ctx, &mcpsdk.StreamableClientTransport{Endpoint: url}, nil)
		if err != nil {
			t.Fatal(err)
		}
		call(t, cs, "run_python", map[string]any{"code": "1"})
		sessions = append(sessions, cs)
	}
	used := f.sandboxesUsed()
	if len(used) != 2 || used[0] == used[1] {
		t.Fatalf("Execs ran in %v; want two sandboxes", used)
	}
	sessions[0].Close()
	f.waitDestroyed(t, used[0])
	cancel()
	if err := <-served; err != context.Canceled {
		t.Errorf("ServeHTTP returned %v, want %v", err, context.Canceled)
	}
	f.waitDestroyed(t, used[1])
}

// TestCheckLoopbackRefusesOtherAddresses guarantees that --http serves on
// loopback addresses only.
func TestCheckLoopbackRefusesOtherAddresses(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:8931", "[::1]:0", "localhost:8931", "127.0.0.2:1"} {
		if err := CheckLoopback(addr); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
	}
	for _, addr := range []string{":8931", "0.0.0.0:8931", "[::]:1", "192.168.1.2:80", "example.com:80", "127.0.0.1"} {
		if err := CheckLoopback(addr); err == nil {
			t.Errorf("%s accepted", addr)
		}
	}
}

// testPNG is a small PNG image.
func testPNG(t *testing.T) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, 4, 4))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
