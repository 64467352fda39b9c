package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/sandboxd/sandboxd/policy"
)

func hashOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// testPolicy has tenants a (token, uid 1000) and b (token, gid 2000), and,
// with localUIDs, a local tenant whose unix callers are limited to them.
func testPolicy(localUIDs ...int) *policy.Policy {
	pol := &policy.Policy{Tenants: map[string]*policy.Tenant{
		"a": {Name: "a", TokenHashes: []string{hashOf("token-a-0123456789")}, UnixUIDs: []int{1000}},
		"b": {Name: "b", TokenHashes: []string{hashOf("token-b-0123456789")}, UnixGIDs: []int{2000}},
	}}
	if len(localUIDs) > 0 {
		pol.Tenants["local"] = &policy.Tenant{Name: "local", UnixUIDs: localUIDs}
	}
	return pol
}

// TestTenantOfCredentials guarantees how a call's credentials map to its
// tenant: a token names its tenant whatever the transport, a unix peer's
// uid or gid names the tenant that lists it, other unix peers are local
// unless local has an allow list, and a call without credentials or with
// an unknown or malformed token is UNAUTHENTICATED.
func TestTenantOfCredentials(t *testing.T) {
	unixPeer := func(uid, gid uint32) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: peerCred{uid: uid, gid: gid}})
	}
	withToken := func(ctx context.Context, value string) context.Context {
		return metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", value))
	}
	tcpPeer := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: insecureInfo{}})
	for _, c := range []struct {
		name string
		pol  *policy.Policy
		ctx  context.Context
		want string // tenant; "" for UNAUTHENTICATED
	}{
		{"no tenants: everyone is local", &policy.Policy{}, tcpPeer, "local"},
		{"token over TCP", testPolicy(), withToken(tcpPeer, "Bearer token-a-0123456789"), "a"},
		{"token over unix beats the uid", testPolicy(), withToken(unixPeer(1000, 0), "Bearer token-b-0123456789"), "b"},
		{"lowercase scheme", testPolicy(), withToken(tcpPeer, "bearer token-a-0123456789"), "a"},
		{"unknown token", testPolicy(), withToken(tcpPeer, "Bearer nope-0123456789"), ""},
		{"not a bearer token", testPolicy(), withToken(tcpPeer, "Basic dXNlcjpwYXNz"), ""},
		{"empty token", testPolicy(), withToken(tcpPeer, "Bearer "), ""},
		{"TCP without credentials", testPolicy(), tcpPeer, ""},
		{"no peer at all", testPolicy(), context.Background(), ""},
		{"unix uid of a", testPolicy(), unixPeer(1000, 1000), "a"},
		{"unix gid of b", testPolicy(), unixPeer(3000, 2000), "b"},
		{"a uid beats another tenant's gid", testPolicy(), unixPeer(1000, 2000), "a"},
		{"other unix peer is local", testPolicy(), unixPeer(0, 0), "local"},
		{"unix peer on local's allow list", testPolicy(0), unixPeer(0, 0), "local"},
		{"unix peer off local's allow list", testPolicy(0), unixPeer(4000, 4000), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := &authenticator{policy: func() *policy.Policy { return c.pol }}
			got, err := a.tenantOf(c.ctx)
			switch {
			case c.want == "" && status.Code(err) != codes.Unauthenticated:
				t.Fatalf("got %q, %v; want UNAUTHENTICATED", got, err)
			case c.want != "" && (err != nil || got != c.want):
				t.Fatalf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

// TestOpenMethodsNeedNoCredentials guarantees that only health and
// reflection are served unauthenticated.
func TestOpenMethodsNeedNoCredentials(t *testing.T) {
	for method, want := range map[string]bool{
		"/grpc.health.v1.Health/Check": true, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": true,
		"/sandbox.v1.SandboxService/ListSandboxes": false, "/sandbox.v1.SandboxService/Exec": false,
	} {
		if openMethod(method) != want {
			t.Errorf("openMethod(%q) = %v", method, !want)
		}
	}
}

// TestHashTokenPrintsThePolicyForm guarantees `sandboxd hash-token`: the
// token from standard input, hashed as the daemon compares it; short
// tokens and arguments refused.
func TestHashTokenPrintsThePolicyForm(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := hashToken(nil, strings.NewReader("token-a-0123456789\n"), &out, &errOut); code != 0 || out.String() != "sha256:"+hashOf("token-a-0123456789")+"\n" {
		t.Fatalf("exit %d, %q %q", code, out.String(), errOut.String())
	}
	if code := hashToken(nil, strings.NewReader("short\n"), &out, &errOut); code != 1 {
		t.Errorf("a short token: exit %d", code)
	}
	if code := hashToken([]string{"token-on-the-command-line"}, strings.NewReader(""), &out, &errOut); code != 2 {
		t.Errorf("a token as an argument: exit %d", code)
	}
}

// TestAPIListenerOffLoopbackNeedsTLSAndAuthentication guarantees that
// --listen-tcp cannot open the API to the network without TLS and
// callers that authenticate.
func TestAPIListenerOffLoopbackNeedsTLSAndAuthentication(t *testing.T) {
	tlsOnly := &policy.Policy{Host: policy.Host{TLS: policy.TLS{CertFile: "/c", KeyFile: "/k"}}}
	withTokens := testPolicy()
	withTokens.Host.TLS = tlsOnly.Host.TLS
	mtls := &policy.Policy{Host: policy.Host{TLS: policy.TLS{CertFile: "/c", KeyFile: "/k", ClientCAFile: "/ca"}}}
	for _, c := range []struct {
		addr string
		pol  *policy.Policy
		ok   bool
	}{
		{"127.0.0.1:7070", &policy.Policy{}, true},
		{"0.0.0.0:7070", &policy.Policy{}, false},
		{"0.0.0.0:7070", tlsOnly, false},
		{"0.0.0.0:7070", testPolicy(), false},
		{"0.0.0.0:7070", withTokens, true},
		{"10.0.0.1:7070", mtls, true},
	} {
		if err := checkAPIListener(c.addr, c.pol); (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok %v", c.addr, err, c.ok)
		}
	}
}

var _ credentials.AuthInfo = peerCred{}
