// Package mcp is "sandboxctl mcp": a Model Context Protocol server over
// sandboxd, built on the official Go SDK. It gives a model tools to run
// Python and bash and to view, edit and move files, in a sandbox of its
// own: each MCP session gets one sandbox, created from the template's pool
// at its first tool call and destroyed when the session ends.
//
// The server speaks MCP over standard input and output (one session, for
// the MCP configurations of Claude Desktop and Claude Code) or over
// streamable HTTP on a loopback address (a session per client).
package mcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

const (
	// HTTPPath is where ServeHTTP serves MCP, the path MCP clients use by
	// convention.
	HTTPPath = "/mcp"
	// httpSessionTimeout ends an HTTP session, and destroys its sandbox,
	// after this long without a request: a client that vanished without
	// ending its session. It is the default template's idle timeout, after
	// which the daemon would have destroyed the sandbox anyway.
	httpSessionTimeout = 24 * time.Hour
	// maxHTTPRequest bounds an HTTP request as the stdio transport bounds
	// a message (mcpsdk.DefaultMaxLineLength), so that both take the same
	// uploads.
	maxHTTPRequest = mcpsdk.DefaultMaxLineLength
)

// instructions tell the model what the tools share.
const instructions = `These tools run code and handle files in an isolated sandbox (gVisor) of sandboxd that belongs to this session alone. It is created at the first tool call and destroyed when the session ends; until then, the Python interpreter's variables, the bash session's directory and variables, and the files (relative paths are under /workspace) persist from one call to the next, unless reset_sandbox starts over. The sandbox has no network access.`

// Config is what a Server needs.
type Config struct {
	// Client reaches the daemon.
	Client sandboxv1.SandboxServiceClient
	// Create is the CreateSandbox request for each session's sandbox
	// (template, labels, lowered limits).
	Create *sandboxv1.CreateSandboxRequest
	// Describe renders an error of the daemon for the model: its message,
	// or why the daemon could not be reached.
	Describe func(error) string
	// Note receives one line per sandbox created or destroyed, and the
	// failures to destroy one; it is called from one goroutine at a time.
	Note func(msg string)
}

// Server is an MCP server whose sessions each get a sandbox.
type Server struct {
	mcp       *mcpsdk.Server
	sandboxes *sandboxes
}

// New returns a Server with its tools.
func New(cfg Config) *Server {
	var mu sync.Mutex
	note := func(msg string) {
		mu.Lock()
		defer mu.Unlock()
		cfg.Note(msg)
	}
	s := &Server{
		mcp: mcpsdk.NewServer(&mcpsdk.Implementation{
			Name:    "sandboxd",
			Title:   "sandboxd code sandbox",
			Version: moduleVersion(),
		}, &mcpsdk.ServerOptions{
			Instructions: instructions,
			// Only the tools: the server sends no log messages.
			Capabilities: &mcpsdk.ServerCapabilities{},
		}),
		sandboxes: newSandboxes(cfg.Client, cfg.Create, note),
	}
	t := &tools{client: cfg.Client, sandboxes: s.sandboxes, describe: cfg.Describe}
	t.add(s.mcp)
	return s
}

// moduleVersion is the version sandboxctl was built at, as Go recorded it.
func moduleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Version
	}
	return "unknown"
}

// ServeStdio serves one MCP session over in and out (newline-delimited
// JSON-RPC) until the client closes in or ctx is cancelled, and then
// destroys the session's sandbox before it returns.
func (s *Server) ServeStdio(ctx context.Context, in io.Reader, out io.Writer) error {
	// Destroying the sandbox at once ends the calls still running in it,
	// which the session's shutdown would otherwise wait for.
	stop := context.AfterFunc(ctx, s.sandboxes.closeAll)
	defer stop()
	err := s.mcp.Run(ctx, &mcpsdk.IOTransport{Reader: io.NopCloser(in), Writer: nopWriteCloser{out}})
	s.sandboxes.closeAll()
	return err
}

// nopWriteCloser is a Writer whose Close does nothing: the caller owns it.
type nopWriteCloser struct{ io.Writer }

// Close does nothing.
func (nopWriteCloser) Close() error { return nil }

// ServeHTTP serves MCP over streamable HTTP at HTTPPath on addr, a
// loopback HOST:PORT (see CheckLoopback), until ctx is cancelled; then it
// destroys the sandboxes of all sessions and returns. listening is called
// with the server's URL once it accepts connections (useful with port 0).
func (s *Server) ServeHTTP(ctx context.Context, addr string, listening func(url string)) error {
	if err := CheckLoopback(addr); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	handler := mcpsdk.NewStreamableHTTPHandler(func(*http.Request) *mcpsdk.Server { return s.mcp },
		&mcpsdk.StreamableHTTPOptions{SessionTimeout: httpSessionTimeout, MaxRequestBodyBytes: maxHTTPRequest})
	mux := http.NewServeMux()
	// The SDK refuses requests whose Host is not loopback (DNS rebinding);
	// cross-origin protection refuses those of web pages in a browser.
	mux.Handle(HTTPPath, http.NewCrossOriginProtection().Handler(handler))
	srv := &http.Server{Handler: mux}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	listening("http://" + ln.Addr().String() + HTTPPath)
	select {
	case <-ctx.Done():
		err = ctx.Err()
	case err = <-served:
	}
	srv.Close()
	s.sandboxes.closeAll()
	return err
}

// CheckLoopback refuses an address that is not HOST:PORT with a loopback
// HOST (127.0.0.1, ::1 or localhost): the daemon's API has no
// authentication yet, so the MCP server must not be reachable from other
// machines.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("bad address %q: want HOST:PORT, such as 127.0.0.1:8931", addr)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return errors.New("refusing to serve on " + addr + ": the daemon's API has no authentication yet, so the MCP server listens only on a loopback address, such as 127.0.0.1:8931 or [::1]:8931")
	}
	return nil
}
