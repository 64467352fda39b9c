package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// fakeServer is an in-process SandboxService. Sandboxes live in a map;
// Exec and Download do what the test sets; everything received is recorded
// under mu.
type fakeServer struct {
	sandboxv1.UnimplementedSandboxServiceServer

	exec     func(*sandboxv1.ExecRequest, grpc.ServerStreamingServer[sandboxv1.ExecEvent]) error
	download func(*sandboxv1.DownloadRequest, grpc.ServerStreamingServer[sandboxv1.DownloadResponse]) error
	list     func(*sandboxv1.ListFilesRequest) (*sandboxv1.ListFilesResponse, error)

	mu          sync.Mutex
	sandboxes   map[string]*sandboxv1.Sandbox
	created     *sandboxv1.CreateSandboxRequest
	listed      *sandboxv1.ListSandboxesRequest
	destroyed   []string
	execReq     *sandboxv1.ExecRequest
	uploads     []upload
	downloadReq *sandboxv1.DownloadRequest
}

// upload is what the fake received in one Upload call.
type upload struct {
	header    *sandboxv1.FileHeader
	data      []byte
	chunks    int
	maxChunk  int
	protoErrs []string // header not first, or more than one header
}

func (f *fakeServer) ListFiles(_ context.Context, req *sandboxv1.ListFilesRequest) (*sandboxv1.ListFilesResponse, error) {
	return f.list(req)
}

func (f *fakeServer) CreateSandbox(_ context.Context, req *sandboxv1.CreateSandboxRequest) (*sandboxv1.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.created = req
	sb := &sandboxv1.Sandbox{
		SandboxId: fmt.Sprintf("sb-%d", len(f.sandboxes)+1),
		Template:  req.GetTemplate(),
		State:     sandboxv1.SandboxState_SANDBOX_STATE_RUNNING,
		CreatedAt: timestamppb.Now(),
		ExpiresAt: timestamppb.New(time.Now().Add(time.Hour)),
		Labels:    req.GetLabels(),
		Limits:    req.GetLimits(), // the overrides only: enough to show them in get
	}
	if f.sandboxes == nil {
		f.sandboxes = map[string]*sandboxv1.Sandbox{}
	}
	f.sandboxes[sb.SandboxId] = sb
	return sb, nil
}

func (f *fakeServer) GetSandbox(_ context.Context, req *sandboxv1.GetSandboxRequest) (*sandboxv1.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, ok := f.sandboxes[req.GetSandboxId()]
	if !ok {
		// Like the real daemon, whose errors end in the errdefs sentinel.
		return nil, status.Errorf(codes.NotFound, "sandbox %q not found", req.GetSandboxId())
	}
	return sb, nil
}

func (f *fakeServer) ListSandboxes(_ context.Context, req *sandboxv1.ListSandboxesRequest) (*sandboxv1.ListSandboxesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listed = req
	resp := &sandboxv1.ListSandboxesResponse{}
	for _, sb := range f.sandboxes {
		resp.Sandboxes = append(resp.Sandboxes, sb)
	}
	return resp, nil
}

func (f *fakeServer) DestroySandbox(_ context.Context, req *sandboxv1.DestroySandboxRequest) (*sandboxv1.DestroySandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.GetSandboxId() == "broken" {
		return nil, status.Error(codes.Internal, "kill failed")
	}
	f.destroyed = append(f.destroyed, req.GetSandboxId())
	delete(f.sandboxes, req.GetSandboxId())
	return &sandboxv1.DestroySandboxResponse{}, nil
}

func (f *fakeServer) Exec(req *sandboxv1.ExecRequest, stream grpc.ServerStreamingServer[sandboxv1.ExecEvent]) error {
	f.mu.Lock()
	f.execReq = req
	f.mu.Unlock()
	if f.exec == nil {
		return stream.Send(resultEvent(&sandboxv1.ExecResult{Status: sandboxv1.ExecStatus_EXEC_STATUS_OK}))
	}
	return f.exec(req, stream)
}

func (f *fakeServer) Upload(stream grpc.ClientStreamingServer[sandboxv1.UploadRequest, sandboxv1.UploadResponse]) error {
	var u upload
	for i := 0; ; i++ {
		req, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		switch m := req.GetMsg().(type) {
		case *sandboxv1.UploadRequest_Header:
			if i != 0 {
				u.protoErrs = append(u.protoErrs, fmt.Sprintf("header as message %d", i))
			}
			u.header = m.Header
		case *sandboxv1.UploadRequest_Chunk:
			if i == 0 {
				u.protoErrs = append(u.protoErrs, "chunk before header")
			}
			u.data = append(u.data, m.Chunk...)
			u.chunks++
			u.maxChunk = max(u.maxChunk, len(m.Chunk))
		}
	}
	f.mu.Lock()
	f.uploads = append(f.uploads, u)
	f.mu.Unlock()
	return stream.SendAndClose(&sandboxv1.UploadResponse{
		Path: "/workspace/" + u.header.GetPath(),
		Size: int64(len(u.data)),
	})
}

func (f *fakeServer) Download(req *sandboxv1.DownloadRequest, stream grpc.ServerStreamingServer[sandboxv1.DownloadResponse]) error {
	f.mu.Lock()
	f.downloadReq = req
	f.mu.Unlock()
	return f.download(req, stream)
}

// locked runs fn with f.mu held, to read what the fake recorded.
func (f *fakeServer) locked(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

// resultEvent wraps r as the last event of an Exec stream.
func resultEvent(r *sandboxv1.ExecResult) *sandboxv1.ExecEvent {
	return &sandboxv1.ExecEvent{Event: &sandboxv1.ExecEvent_Result{Result: r}}
}

// serve runs f on l until the test ends.
func serve(t *testing.T, f *fakeServer, l net.Listener) {
	t.Helper()
	srv := grpc.NewServer()
	sandboxv1.RegisterSandboxServiceServer(srv, f)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
}

// socketDir returns a fresh directory with a path short enough for unix
// sockets (t.TempDir can exceed the 108-byte limit).
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sbxctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startFake serves f on a fresh unix socket and returns its path.
func startFake(t *testing.T, f *fakeServer) string {
	t.Helper()
	sock := filepath.Join(socketDir(t), "d.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, f, l)
	return sock
}

// result is the outcome of one run of sandboxctl.
type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs sandboxctl with args and stdin, capturing its output.
func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

// runOn runs sandboxctl against the daemon at sock.
func runOn(t *testing.T, sock, stdin string, args ...string) result {
	t.Helper()
	return runCLI(t, stdin, append([]string{"--socket", sock}, args...)...)
}

// wantExit fails the test unless r exited with code.
func wantExit(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit status %d, want %d\nstdout: %q\nstderr: %q", r.code, code, r.stdout, r.stderr)
	}
}

// TestErrorLineNotFound guarantees that a gRPC error prints exactly one line,
// "sandboxctl: VERB: MESSAGE (code in words)", without the daemon's trailing
// repeat of the code, and exits 1.
func TestErrorLineNotFound(t *testing.T) {
	sock := startFake(t, &fakeServer{})
	r := runOn(t, sock, "", "get", "abc")
	wantExit(t, r, 1)
	if want := "sandboxctl: get: sandbox \"abc\" not found (not found)\n"; r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
	if r.stdout != "" {
		t.Errorf("stdout = %q, want nothing", r.stdout)
	}
}

// TestUnreachableSocket guarantees that when no daemon listens, sandboxctl
// says so in one line naming the socket, and exits 1.
func TestUnreachableSocket(t *testing.T) {
	sock := filepath.Join(socketDir(t), "none.sock")
	r := runOn(t, sock, "", "list")
	wantExit(t, r, 1)
	want := "sandboxctl: list: cannot reach sandboxd at " + sock + ": is the daemon running? (sudo make run)\n"
	if r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
}

// TestResolveAddrs guarantees the precedence --socket/--addr (all of
// them) > SANDBOXD_SOCKET > /run/sandboxd/sandboxd.sock.
func TestResolveAddrs(t *testing.T) {
	for _, tc := range []struct {
		flags []string
		env   string
		want  []string
	}{
		{[]string{"/f.sock"}, "/e.sock", []string{"/f.sock"}},
		{[]string{"a:1", "b:2"}, "/e.sock", []string{"a:1", "b:2"}},
		{nil, "/e.sock", []string{"/e.sock"}},
		{nil, "", []string{"/run/sandboxd/sandboxd.sock"}},
	} {
		if got := resolveAddrs(tc.flags, tc.env); !slices.Equal(got, tc.want) {
			t.Errorf("resolveAddrs(%q, %q) = %q, want %q", tc.flags, tc.env, got, tc.want)
		}
	}
}

// TestSocketPrecedence guarantees, end to end, that the flag (before or
// after the verb) beats the environment, and the environment beats the
// default.
func TestSocketPrecedence(t *testing.T) {
	sock := startFake(t, &fakeServer{})
	bogus := filepath.Join(socketDir(t), "bogus.sock")

	t.Setenv(socketEnv, bogus)
	wantExit(t, runCLI(t, "", "--socket", sock, "list"), 0)
	wantExit(t, runCLI(t, "", "list", "--socket", sock), 0)
	wantExit(t, runCLI(t, "", "--socket", bogus, "list", "--socket", sock), 0)
	r := runCLI(t, "", "list")
	wantExit(t, r, 1)
	if !strings.Contains(r.stderr, bogus) {
		t.Errorf("with only the environment set, stderr = %q, want it to name %s", r.stderr, bogus)
	}

	t.Setenv(socketEnv, sock)
	wantExit(t, runCLI(t, "", "list"), 0)
}

// TestTCP guarantees that a HOST:PORT socket reaches a daemon over TCP.
func TestTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, &fakeServer{}, l)
	r := runOn(t, l.Addr().String(), "", "create")
	wantExit(t, r, 0)
	if r.stdout != "sb-1\n" {
		t.Errorf("stdout = %q, want the ID", r.stdout)
	}
}

// TestUsageErrors guarantees that command-line mistakes print one line in
// the error format and exit 2, without contacting the daemon.
func TestUsageErrors(t *testing.T) {
	sock := filepath.Join(socketDir(t), "none.sock") // never reached
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"--bogus", "list"},
		{"get"},
		{"get", "a", "b"},
		{"list", "--nope"},
		{"create", "--label", "novalue"},
		{"create", "--label", "=v"},
		{"list", "--label", "x"},
		{"create", "--memory", "1GB"},
		{"create", "--cpu", "0"},
		{"create", "--lifetime", "10"},
		{"exec", "--env", "FOO", "id", "1"},
		{"exec", "--lang", "ruby", "id", "1"},
		{"exec", "--timeout", "-1s", "id", "1"},
		{"exec", "--timeout", "soon", "id", "1"},
		{"exec", "--file", "x.py", "id", "1"},
		{"exec", "--stdin-file", "-", "id"},
		{"exec", "id", "1", "2"},
		{"upload", "id", "-"},
		{"upload", "id", "-", "dir/"},
		{"upload", "--mode", "0999", "id", "f", "g"},
		{"download", "id", "/"},
		{"destroy"},
		{"help", "nope"},
	} {
		r := runOn(t, sock, "", args...)
		if r.code != exitUsage {
			t.Errorf("%q: exit status %d, want 2 (stderr %q)", args, r.code, r.stderr)
			continue
		}
		if len(args) == 0 {
			continue // prints the full usage
		}
		if !strings.HasPrefix(r.stderr, "sandboxctl: ") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%q: stderr = %q, want one line starting with sandboxctl:", args, r.stderr)
		}
		if strings.Contains(r.stderr, "cannot reach") {
			t.Errorf("%q: contacted the daemon: %q", args, r.stderr)
		}
	}
	r := runOn(t, sock, "", "exec", "--env", "FOO", "id", "1")
	want := "sandboxctl: exec: invalid value \"FOO\" for flag -env: want KEY=VALUE (see 'sandboxctl exec --help')\n"
	if r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
}

// TestHelp guarantees that help lists every verb, that each verb's --help
// (or "help VERB") goes to stdout, exits 0 and documents the verb's flags,
// and that exec's help documents its exit statuses.
func TestHelp(t *testing.T) {
	r := runCLI(t, "", "help")
	wantExit(t, r, 0)
	for _, c := range commands() {
		if !strings.Contains(r.stdout, "  "+c.name+" ") {
			t.Errorf("help does not list %s:\n%s", c.name, r.stdout)
		}
		for _, args := range [][]string{{c.name, "--help"}, {c.name, "-h"}, {"help", c.name}} {
			r := runCLI(t, "", args...)
			wantExit(t, r, 0)
			c.flags.VisitAll(func(f *flag.Flag) {
				if !strings.Contains(r.stdout, "--"+f.Name) {
					t.Errorf("%q does not document --%s:\n%s", args, f.Name, r.stdout)
				}
			})
		}
	}
	r = runCLI(t, "", "exec", "--help")
	for _, s := range []string{"124", "125", "137", "130", "--stdin-file"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("exec --help does not mention %s", s)
		}
	}
	wantExit(t, runCLI(t, "", "--help"), 0)
}
