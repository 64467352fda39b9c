package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"github.com/sandboxd/sandboxd/runtime/audit"
	"github.com/sandboxd/sandboxd/runtime/manager"
	"github.com/sandboxd/sandboxd/runtime/metrics"
)

// testAuditor returns an auditor logging to a temporary file, that file,
// and the registry its counter is on.
func testAuditor(t *testing.T) (*Auditor, string, *prometheus.Registry) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	reg := prometheus.NewRegistry()
	a, err := newAuditor(audit.Config{Path: path, MaxBytes: 1 << 20, Keep: 1}, metrics.NewRPC(reg), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return a, path, reg
}

// TestDeniedCallsAreLoggedAndCounted guarantees that a call refused by
// authentication gets a line (no tenant, its peer, its code and message)
// and a count under tenant "".
func TestDeniedCallsAreLoggedAndCounted(t *testing.T) {
	a, path, reg := testAuditor(t)
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}})
	a.Denied(ctx, "/sandbox.v1.SandboxService/Exec", status.Error(codes.Unauthenticated, "unknown token"))
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r audit.Record
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	if r.Tenant != "" || r.Peer != "127.0.0.1:5555" || r.Method != "/sandbox.v1.SandboxService/Exec" || r.Code != "Unauthenticated" || r.Error != "unknown token" {
		t.Fatalf("line %s", data)
	}
	want := `
# HELP sandboxd_rpc_total Calls of the sandbox API, by tenant, full gRPC method and gRPC status code (refused calls included).
# TYPE sandboxd_rpc_total counter
sandboxd_rpc_total{code="Unauthenticated",method="/sandbox.v1.SandboxService/Exec",tenant=""} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sandboxd_rpc_total"); err != nil {
		t.Fatal(err)
	}
}

// TestHealthAndReflectionAreNotAudited guarantees that only the sandbox
// API is logged and counted, and that a failed unary call keeps the
// sandbox its request named.
func TestHealthAndReflectionAreNotAudited(t *testing.T) {
	a, path, reg := testAuditor(t)
	ok := func(context.Context, any) (any, error) { return nil, nil }
	for _, m := range []string{"/grpc.health.v1.Health/Check", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"} {
		if _, err := a.unary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: m}, ok); err != nil {
			t.Fatal(err)
		}
	}
	notFound := func(context.Context, any) (any, error) {
		return (*sandboxv1.Sandbox)(nil), status.Error(codes.NotFound, "sandbox \"sb-x\" not found")
	}
	if _, err := a.unary(context.Background(), &sandboxv1.GetSandboxRequest{SandboxId: "sb-x"},
		&grpc.UnaryServerInfo{FullMethod: "/sandbox.v1.SandboxService/GetSandbox"}, notFound); status.Code(err) != codes.NotFound {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r audit.Record
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("want exactly the GetSandbox line: %v\n%s", err, data)
	}
	if r.Sandbox != "sb-x" || r.Code != "NotFound" {
		t.Fatalf("line %s", data)
	}
	if n := testutil.CollectAndCount(reg, "sandboxd_rpc_total"); n != 1 {
		t.Fatalf("%d series, want GetSandbox's only", n)
	}
}

// TestEgressConnectionsAreAudited guarantees that an egress connection
// gets its own line (method egress, its sandbox, tenant, destination,
// address, verdict, reason and bytes, no code) and no count among the API
// calls.
func TestEgressConnectionsAreAudited(t *testing.T) {
	a, path, reg := testAuditor(t)
	a.Egress(manager.EgressEvent{
		Time: time.Now(), Sandbox: "sb-1", Tenant: "team-a", Template: "web", Host: "egress-ok.sandboxd.test", Port: 443,
		Addr: "127.0.0.2:443", Allowed: true, Reason: `allowed by "egress-ok.sandboxd.test:443"`, Up: 700, Down: 4000, Duration: time.Second,
	})
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r audit.Record
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	want := audit.Egress{Host: "egress-ok.sandboxd.test", Port: 443, Addr: "127.0.0.2:443", Allowed: true,
		Reason: `allowed by "egress-ok.sandboxd.test:443"`, BytesUp: 700, BytesDown: 4000}
	if r.Method != audit.MethodEgress || r.Sandbox != "sb-1" || r.Tenant != "team-a" || r.Template != "web" || r.Code != "" ||
		r.DurationMS != 1000 || r.Egress == nil || *r.Egress != want {
		t.Fatalf("line %s", data)
	}
	if n := testutil.CollectAndCount(reg, "sandboxd_rpc_total"); n != 0 {
		t.Fatalf("%d rpc series, want none for an egress connection", n)
	}
}
