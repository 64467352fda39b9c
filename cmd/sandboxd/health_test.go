package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// serveHealth serves the standard health service on a fresh unix socket,
// as the daemon does, and returns the socket and the service's state.
func serveHealth(t *testing.T) (string, *health.Server) {
	t.Helper()
	// A short directory: unix socket paths are limited to 107 bytes.
	dir, err := os.MkdirTemp("", "health")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return socket, hs
}

// TestHealthCheckExitCodes guarantees what a readiness probe running
// `sandboxd health` sees: exit 0 only when the daemon on the socket
// reports the sandbox service SERVING; 1 when it reports NOT_SERVING
// (shutting down), does not know the service, or nothing answers on the
// socket; 2 for a usage error; 0 and the usage for -h.
func TestHealthCheckExitCodes(t *testing.T) {
	socket, hs := serveHealth(t)
	sandboxService := sandboxv1.SandboxService_ServiceDesc.ServiceName
	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := healthCheck(args, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}

	if code, _, stderr := run("--socket", socket); code != 1 || !strings.Contains(stderr, "NotFound") {
		t.Errorf("unknown service: exit %d, stderr %q; want 1 naming NotFound", code, stderr)
	}
	hs.SetServingStatus(sandboxService, healthpb.HealthCheckResponse_SERVING)
	if code, stdout, stderr := run("--socket", socket); code != 0 || strings.TrimSpace(stdout) != "SERVING" {
		t.Errorf("SERVING: exit %d, stdout %q, stderr %q; want 0 and SERVING", code, stdout, stderr)
	}
	if code, _, _ := run("--socket", socket, "--service", ""); code != 0 {
		t.Errorf("the server as a whole (--service \"\"): exit %d, want 0", code)
	}
	hs.SetServingStatus(sandboxService, healthpb.HealthCheckResponse_NOT_SERVING)
	if code, stdout, _ := run("--socket", socket); code != 1 || strings.TrimSpace(stdout) != "NOT_SERVING" {
		t.Errorf("NOT_SERVING: exit %d, stdout %q; want 1 and NOT_SERVING", code, stdout)
	}
	hs.Shutdown() // what the daemon does on SIGTERM
	if code, _, _ := run("--socket", socket, "--service", ""); code != 1 {
		t.Errorf("after Shutdown: exit %d, want 1", code)
	}

	start := time.Now()
	missing := filepath.Join(filepath.Dir(socket), "none.sock")
	if code, _, stderr := run("--socket", missing, "--timeout", "5s"); code != 1 || !strings.Contains(stderr, missing) {
		t.Errorf("no server: exit %d, stderr %q; want 1 naming the socket", code, stderr)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("no server: took %v; a refused connection must fail at once, not wait for the timeout", d)
	}

	if code, _, _ := run("extra"); code != 2 {
		t.Errorf("an argument: exit %d, want 2", code)
	}
	if code, _, _ := run("--no-such-flag"); code != 2 {
		t.Errorf("an unknown flag: exit %d, want 2", code)
	}
	if code, _, stderr := run("-h"); code != 0 || !strings.Contains(stderr, "usage: sandboxd health") {
		t.Errorf("-h: exit %d, stderr %q; want 0 and the usage", code, stderr)
	}
}
