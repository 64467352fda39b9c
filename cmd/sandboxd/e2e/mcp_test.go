package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// mcpTools are the tools sandboxctl mcp serves.
var mcpTools = []string{"download_file", "list_files", "reset_sandbox", "run_bash", "run_python", "str_replace_based_edit_tool", "upload_file"}

// ctlBinary returns the sandboxctl binary, built on first use.
func ctlBinary(t *testing.T) string {
	t.Helper()
	bins.ctlOnce.Do(func() {
		bins.ctl = filepath.Join(bins.dir, "sandboxctl")
		bins.ctlErr = goBuild(bins.ctl, "../../sandboxctl")
	})
	if bins.ctlErr != nil {
		t.Fatal(bins.ctlErr)
	}
	return bins.ctl
}

// mcpStdio starts "sandboxctl mcp ARGS..." against the daemon and connects
// a Go SDK client to it over stdio. The server's stderr is logged when the
// test fails; closing the session stops the server.
func mcpStdio(t *testing.T, d *daemon, args ...string) *mcpsdk.ClientSession {
	t.Helper()
	cmd := exec.Command(ctlBinary(t), append([]string{"--socket", d.socket, "mcp"}, args...)...)
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	cs, err := mcpsdk.NewClient(&mcpsdk.Implementation{Name: "sandboxd-e2e"}, nil).Connect(ctx(t), &mcpsdk.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatalf("connecting to sandboxctl mcp: %v\n%s", err, stderr.String())
	}
	t.Cleanup(func() {
		cs.Close()
		if t.Failed() {
			t.Logf("sandboxctl mcp stderr:\n%s", stderr.String())
		}
	})
	return cs
}

// mcpCall calls a tool; a protocol error fails the test.
func mcpCall(t *testing.T, cs *mcpsdk.ClientSession, tool string, args map[string]any) *mcpsdk.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(ctx(t), &mcpsdk.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s %v: %v", tool, args, err)
	}
	return res
}

// mcpText joins the text contents of res.
func mcpText(res *mcpsdk.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcpsdk.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// mcpWant calls a tool and fails the test unless the result's error flag
// is wantErr and its text contains every one of want; it returns the
// result.
func mcpWant(t *testing.T, cs *mcpsdk.ClientSession, tool string, args map[string]any, wantErr bool, want ...string) *mcpsdk.CallToolResult {
	t.Helper()
	res := mcpCall(t, cs, tool, args)
	out := mcpText(res)
	if res.IsError != wantErr {
		t.Fatalf("%s %v: error %v, want %v:\n%s", tool, args, res.IsError, wantErr, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("%s %v: result does not contain %q:\n%s", tool, args, w, out)
		}
	}
	return res
}

// labelled lists the IDs of the daemon's sandboxes labelled mcp=value.
func labelled(t *testing.T, d *daemon, value string) []string {
	t.Helper()
	resp, err := d.client.ListSandboxes(ctx(t), &sandboxv1.ListSandboxesRequest{LabelSelector: map[string]string{"mcp": value}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, sb := range resp.Sandboxes {
		ids = append(ids, sb.SandboxId)
	}
	return ids
}

// waitLabelled waits until the sandboxes labelled mcp=value are n, and
// returns them.
func waitLabelled(t *testing.T, d *daemon, value string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ids := labelled(t, d, value)
		if len(ids) == n {
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandboxes labelled mcp=%s: %v, want %d", value, ids, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// imageOf returns the first image content of res, or fails the test.
func imageOf(t *testing.T, res *mcpsdk.CallToolResult) *mcpsdk.ImageContent {
	t.Helper()
	for _, c := range res.Content {
		if img, ok := c.(*mcpsdk.ImageContent); ok {
			return img
		}
	}
	t.Fatalf("no image in the result: %s", mcpText(res))
	return nil
}

// TestMCPToolsWorkOverStdio guarantees that every tool of sandboxctl mcp
// works against a real sandbox, through the Go SDK's client over stdio, and
// that failures the model can act on are error results saying why.
func TestMCPToolsWorkOverStdio(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	cs := mcpStdio(t, d, "--label", "mcp=tools")

	tools, err := cs.ListTools(ctx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
		if tool.Description == "" || tool.InputSchema == nil {
			t.Errorf("tool %s has no description or input schema", tool.Name)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, mcpTools) {
		t.Fatalf("tools %v, want %v", names, mcpTools)
	}

	t.Run("run_python", func(t *testing.T) {
		mcpWant(t, cs, "run_python", map[string]any{"code": "print(1)\nx = 6\nx * 7"}, false, "<stdout>\n1\n</stdout>", "<value>\n42\n</value>", "status: ok")
		mcpWant(t, cs, "run_python", map[string]any{"code": "x + 1"}, false, "<value>\n7\n</value>")
		mcpWant(t, cs, "run_python", map[string]any{"code": "1/0"}, true, "status: error: ", "raised ZeroDivisionError")
		if ids := labelled(t, d, "tools"); len(ids) != 1 {
			t.Fatalf("the session has sandboxes %v, want one", ids)
		}
	})
	t.Run("a timeout is an error result", func(t *testing.T) {
		mcpWant(t, cs, "run_python", map[string]any{"code": "import time\ntime.sleep(60)", "timeout": 1}, true, "status: timeout")
	})
	t.Run("a figure comes back as an image", func(t *testing.T) {
		res := mcpWant(t, cs, "run_python", map[string]any{"code": "import matplotlib.pyplot as plt\n_ = plt.plot([1, 3, 2])"}, false, "status: ok")
		img := imageOf(t, res)
		if _, err := png.DecodeConfig(bytes.NewReader(img.Data)); img.MIMEType != "image/png" || err != nil {
			t.Fatalf("image %s is not a PNG: %v", img.MIMEType, err)
		}
	})
	t.Run("run_bash keeps its session", func(t *testing.T) {
		mcpWant(t, cs, "run_bash", map[string]any{"command": "cd /tmp; export A=1"}, false, "status: ok")
		mcpWant(t, cs, "run_bash", map[string]any{"command": "pwd; echo $A"}, false, "<stdout>\n/tmp\n1\n</stdout>")
		mcpWant(t, cs, "run_bash", map[string]any{"command": "false"}, true, "status: error: exit code 1")
		mcpWant(t, cs, "run_bash", map[string]any{"command": "pwd; echo A=$A", "restart": true}, false, "<stdout>\n/workspace\nA=\n</stdout>")
	})
	t.Run("str_replace_based_edit_tool", func(t *testing.T) {
		edit := func(wantErr bool, args map[string]any, want ...string) {
			t.Helper()
			mcpWant(t, cs, "str_replace_based_edit_tool", args, wantErr, want...)
		}
		edit(false, map[string]any{"command": "create", "path": "hello.py", "file_text": "print('hello')\n"})
		edit(false, map[string]any{"command": "view", "path": "hello.py"}, "print('hello')")
		edit(true, map[string]any{"command": "str_replace", "path": "hello.py", "old_str": "goodbye", "new_str": "x"}, "No replacement was performed")
		edit(false, map[string]any{"command": "str_replace", "path": "hello.py", "old_str": "hello", "new_str": "edited"}, "edited")
		edit(false, map[string]any{"command": "insert", "path": "hello.py", "insert_line": 0, "new_str": "import sys"})
		mcpWant(t, cs, "run_python", map[string]any{"code": "exec(open('hello.py').read())"}, false, "<stdout>\nedited\n</stdout>")
	})
	t.Run("list_files", func(t *testing.T) {
		mcpWant(t, cs, "upload_file", map[string]any{"path": "sub/f.txt", "content": "x\n"}, false)
		mcpWant(t, cs, "list_files", map[string]any{"path": "/workspace", "depth": 2}, false, " /workspace/sub/\n", " /workspace/sub/f.txt\n", " /workspace/hello.py\n")
	})
	t.Run("upload and download", func(t *testing.T) {
		mcpWant(t, cs, "upload_file", map[string]any{"path": "notes/a.txt", "content": "héllo\n"}, false, "Wrote 7 bytes to /workspace/notes/a.txt")
		if out := mcpText(mcpWant(t, cs, "download_file", map[string]any{"path": "notes/a.txt"}, false)); out != "héllo\n" {
			t.Fatalf("downloaded %q", out)
		}
		var b bytes.Buffer
		png.Encode(&b, image.NewGray(image.Rect(0, 0, 3, 2)))
		mcpWant(t, cs, "upload_file", map[string]any{"path": "in.png", "content": base64.StdEncoding.EncodeToString(b.Bytes()), "encoding": "base64"}, false)
		mcpWant(t, cs, "run_python", map[string]any{"code": "from PIL import Image\nImage.open('in.png').size"}, false, "<value>\n(3, 2)\n</value>")
		if img := imageOf(t, mcpWant(t, cs, "download_file", map[string]any{"path": "in.png"}, false)); !bytes.Equal(img.Data, b.Bytes()) {
			t.Fatalf("downloaded PNG differs: %d bytes, want %d", len(img.Data), b.Len())
		}
		mcpWant(t, cs, "download_file", map[string]any{"path": "missing.txt"}, true)
	})
	t.Run("reset_sandbox gives a fresh sandbox", func(t *testing.T) {
		before := labelled(t, d, "tools")
		if len(before) != 1 {
			t.Fatalf("sandboxes %v before the reset, want one", before)
		}
		mcpWant(t, cs, "reset_sandbox", nil, false, "Destroyed sandbox "+before[0])
		mcpWant(t, cs, "download_file", map[string]any{"path": "hello.py"}, true, "not found")
		after := labelled(t, d, "tools")
		if len(after) != 1 || after[0] == before[0] {
			t.Fatalf("sandboxes %v after the reset, %v before; want one new one", after, before)
		}
	})
}

// TestMCPSessionsHaveTheirOwnSandboxes guarantees that two MCP sessions
// (two sandboxctl mcp processes) get two sandboxes that do not see each
// other's files, and that the end of a session destroys its sandbox only.
func TestMCPSessionsHaveTheirOwnSandboxes(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	a, b := mcpStdio(t, d, "--label", "mcp=a"), mcpStdio(t, d, "--label", "mcp=b")
	mcpWant(t, a, "upload_file", map[string]any{"path": "secret.txt", "content": "a's"}, false)
	mcpWant(t, b, "download_file", map[string]any{"path": "secret.txt"}, true)
	ida, idb := labelled(t, d, "a"), labelled(t, d, "b")
	if len(ida) != 1 || len(idb) != 1 || ida[0] == idb[0] {
		t.Fatalf("sandboxes of a %v, of b %v; want one each", ida, idb)
	}
	a.Close()
	waitLabelled(t, d, "a", 0)
	mcpWant(t, b, "run_python", map[string]any{"code": "1 + 1"}, false, "<value>\n2\n</value>")
	if got := labelled(t, d, "b"); !slices.Equal(got, idb) {
		t.Fatalf("b's sandboxes went from %v to %v", idb, got)
	}
	b.Close()
	waitLabelled(t, d, "b", 0)
}

// TestMCPOverStreamableHTTP guarantees that sandboxctl mcp --http serves
// each HTTP client a session with its own sandbox, destroyed when the
// client ends its session, destroys the rest when stopped, and refuses a
// non-loopback address.
func TestMCPOverStreamableHTTP(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	if _, errOut, code := d.ctl(t, "", "mcp", "--http", "0.0.0.0:8931"); code != 2 || !strings.Contains(errOut, "loopback") {
		t.Fatalf("--http 0.0.0.0:8931: exit %d, %q; want a usage error about loopback", code, errOut)
	}
	cmd := exec.Command(ctlBinary(t), "--socket", d.socket, "mcp", "--http", "127.0.0.1:0", "--label", "mcp=http")
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("sandboxctl mcp --http stderr:\n%s", stderr.String())
		}
	})
	// The server's first line says where it listens (port 0 picks one).
	var url string
	for deadline := time.Now().Add(30 * time.Second); url == ""; time.Sleep(20 * time.Millisecond) {
		first, _, _ := strings.Cut(stderr.String(), "\n")
		if _, u, ok := strings.Cut(first, "serving MCP at "); ok && strings.HasSuffix(stderr.String(), "\n") {
			url = u
		} else if time.Now().After(deadline) {
			t.Fatalf("sandboxctl mcp --http did not say where it listens within 30s: %q", stderr.String())
		}
	}

	connect := func() *mcpsdk.ClientSession {
		cs, err := mcpsdk.NewClient(&mcpsdk.Implementation{Name: "sandboxd-e2e"}, nil).Connect(ctx(t), &mcpsdk.StreamableClientTransport{Endpoint: url}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	one, two := connect(), connect()
	defer two.Close()
	mcpWant(t, one, "run_python", map[string]any{"code": "open('mine.txt', 'w').write('one')"}, false)
	mcpWant(t, two, "run_python", map[string]any{"code": "import os\nos.path.exists('mine.txt')"}, false, "<value>\nFalse\n</value>")
	ids := labelled(t, d, "http")
	if len(ids) != 2 {
		t.Fatalf("sandboxes %v, want one per session", ids)
	}
	one.Close()
	left := waitLabelled(t, d, "http", 1)
	mcpWant(t, two, "run_python", map[string]any{"code": "2 + 2"}, false, "<value>\n4\n</value>")
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		stopped = true
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			t.Errorf("after SIGTERM sandboxctl mcp ended with %v, want exit status 130", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("sandboxctl mcp --http did not stop within 30s of SIGTERM")
	}
	if got := labelled(t, d, "http"); len(got) != 0 {
		t.Fatalf("sandbox %v left after the server stopped", left)
	}
}

// TestMCPInteropWithTheTypeScriptSDK guarantees that the reference
// TypeScript SDK's client (npm @modelcontextprotocol/sdk, pinned in
// testdata/mcp-ts) can list the tools of sandboxctl mcp over stdio and call
// run_python and str_replace_based_edit_tool. Without node it is skipped,
// unless SANDBOXD_E2E=1, where node is a prerequisite.
func TestMCPInteropWithTheTypeScriptSDK(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("SANDBOXD_E2E") == "1" {
			t.Fatal("the TypeScript interop test needs node and npm (20 or later)")
		}
		t.Skip("node not found")
	}
	d := startDaemon(t, daemonOpts{})
	modules := npmModules(t, "testdata/mcp-ts")
	// The script runs beside a link to the cached modules, where Node's
	// resolution of its imports looks.
	dir := t.TempDir()
	script, err := os.ReadFile("testdata/mcp-ts/client.mjs")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "client.mjs"), script, 0o644)
	if err := os.Symlink(modules, filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx(t), node, filepath.Join(dir, "client.mjs"), ctlBinary(t), "--socket", d.socket, "--label", "mcp=ts")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node client.mjs: %v\n%s", err, stderr.String())
	}
	type result struct {
		IsError bool `json:"isError"`
		Content []struct {
			Type     string `json:"type"`
			Text     string `json:"text"`
			MimeType string `json:"mimeType"`
		} `json:"content"`
	}
	var out struct {
		Server struct{ Name string }
		Tools  []struct {
			Name        string         `json:"name"`
			InputSchema map[string]any `json:"inputSchema"`
		}
		Python, Figure, Create, Replace, View, NoMatch result
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("client output: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	var names []string
	for _, tool := range out.Tools {
		names = append(names, tool.Name)
		if tool.InputSchema["type"] != "object" {
			t.Errorf("%s: input schema %v", tool.Name, tool.InputSchema)
		}
	}
	slices.Sort(names)
	if out.Server.Name != "sandboxd" || !slices.Equal(names, mcpTools) {
		t.Fatalf("server %q with tools %v, want sandboxd with %v", out.Server.Name, names, mcpTools)
	}
	check := func(name string, r result, wantErr bool, want string) {
		t.Helper()
		if len(r.Content) == 0 || r.IsError != wantErr || r.Content[0].Type != "text" || !strings.Contains(r.Content[0].Text, want) {
			t.Errorf("%s: %+v; want error %v and text containing %q", name, r, wantErr, want)
		}
	}
	check("run_python", out.Python, false, "<stdout>\nhi\n</stdout>\n<value>\n42\n</value>")
	check("a figure", out.Figure, false, "status: ok")
	if c := out.Figure.Content; len(c) != 2 || c[1].Type != "image" || c[1].MimeType != "image/png" {
		t.Errorf("the figure's content: %+v", c)
	}
	check("create", out.Create, false, "")
	check("str_replace", out.Replace, false, "three")
	check("view", out.View, false, "three")
	check("str_replace without a match", out.NoMatch, true, "No replacement was performed")
	waitLabelled(t, d, "ts", 0)
}

// npmModules installs the packages of package-lock.json in dir with npm ci,
// once per lock file's content, into the cache the Makefile uses for runsc
// and the rootfs (SANDBOXD_CACHE, default /var/cache/sandboxd), and returns
// the node_modules directory.
func npmModules(t *testing.T, dir string) string {
	t.Helper()
	lock, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(lock)
	cache := os.Getenv("SANDBOXD_CACHE")
	if cache == "" {
		cache = "/var/cache/sandboxd"
	}
	out := filepath.Join(cache, "npm", "mcp-ts-"+hex.EncodeToString(sum[:6]))
	modules := filepath.Join(out, "node_modules")
	if _, err := os.Stat(modules); err == nil {
		return modules
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	// npm ci runs in a temporary directory renamed into place once
	// complete, so that a failed or concurrent install leaves no half tree.
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".mcp-ts-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	for _, name := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(tmp, name), b, 0o644)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts")
	cmd.Dir = tmp
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		if _, serr := os.Stat(modules); serr != nil {
			t.Fatal(err)
		}
	}
	return modules
}
