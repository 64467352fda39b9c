package main

// This file authenticates every API call and puts its tenant in the call's
// context (runtime/tenant): by bearer token (the policy holds the tokens'
// SHA-256), by client-certificate subject over mutual TLS, or by the unix
// socket peer's uid and gid. The manager confines each tenant to its own
// sandboxes. Health and reflection stay open.

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/sandboxd/sandboxd/policy"
	"github.com/sandboxd/sandboxd/runtime/tenant"
)

// openMethods are the method prefixes served without credentials: health
// checks (load balancers, Kubernetes probes) and reflection (grpcurl list);
// neither reveals or touches a sandbox.
var openMethods = []string{"/grpc.health.v1.Health/", "/grpc.reflection."}

// authenticator maps a call's credentials to its tenant under the policy
// in force (a reload applies at the next call).
type authenticator struct {
	policy func() *policy.Policy
	// denied, if set, hears about every call refused here (the audit log).
	denied func(ctx context.Context, method string, err error)
}

// tenantOf returns the tenant that ctx's credentials authenticate, or an
// UNAUTHENTICATED status saying what is missing.
func (a *authenticator) tenantOf(ctx context.Context) (string, error) {
	pol := a.policy()
	if len(pol.Tenants) == 0 {
		return tenant.Local, nil // no tenants: one owner, loopback only
	}
	if vals := metadata.ValueFromIncomingContext(ctx, "authorization"); len(vals) > 0 {
		return tokenTenant(pol, vals[0])
	}
	p, _ := peer.FromContext(ctx)
	if p == nil {
		return "", status.Error(codes.Unauthenticated, "the call carries no credentials")
	}
	switch info := p.AuthInfo.(type) {
	case credentials.TLSInfo:
		if chains := info.State.VerifiedChains; len(chains) > 0 && len(chains[0]) > 0 {
			subject := chains[0][0].Subject.String()
			for name, t := range pol.Tenants {
				if slices.Contains(t.CertSubjects, subject) {
					return name, nil
				}
			}
			return "", status.Errorf(codes.Unauthenticated, "client certificate subject %q names no tenant (policy tenants.NAME.cert_subjects)", subject)
		}
	case peerCred:
		return unixTenant(pol, info)
	}
	return "", status.Error(codes.Unauthenticated, "the call carries no credentials: send the metadata `authorization: Bearer TOKEN` (sandboxctl --token or SANDBOXD_TOKEN), or a client certificate over mutual TLS")
}

// tokenTenant returns the tenant whose token hash matches the bearer token
// in an authorization value.
func tokenTenant(pol *policy.Policy, value string) (string, error) {
	scheme, token, ok := strings.Cut(value, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", status.Error(codes.Unauthenticated, "the authorization metadata must be `Bearer TOKEN`")
	}
	sum := sha256.Sum256([]byte(token))
	want := hex.EncodeToString(sum[:])
	found := ""
	for name, t := range pol.Tenants {
		for _, h := range t.TokenHashes {
			if subtle.ConstantTimeCompare([]byte(h), []byte(want)) == 1 {
				found = name
			}
		}
	}
	if found == "" {
		return "", status.Error(codes.Unauthenticated, "unknown token: no tenant of the policy has it (policy tenants.NAME.tokens holds each token's SHA-256, from `sandboxd hash-token`)")
	}
	return found, nil
}

// unixTenant returns the tenant of a unix socket peer: the tenant that
// lists its uid, else the one that lists its gid (validation lets an id
// name one tenant only), else local, unless local has an allow list that
// the peer is not on.
func unixTenant(pol *policy.Policy, c peerCred) (string, error) {
	for name, t := range pol.Tenants {
		if slices.Contains(t.UnixUIDs, int(c.uid)) {
			return name, nil
		}
	}
	for name, t := range pol.Tenants {
		if slices.Contains(t.UnixGIDs, int(c.gid)) {
			return name, nil
		}
	}
	if local := pol.Tenants[tenant.Local]; local != nil && len(local.UnixUIDs)+len(local.UnixGIDs) > 0 {
		return "", status.Errorf(codes.Unauthenticated, "uid %d (gid %d) on the unix socket is not allowed: the policy lists the uids and gids of tenant local, and of other tenants (tenants.NAME.unix)", c.uid, c.gid)
	}
	return tenant.Local, nil
}

// openMethod reports whether method is served without credentials.
func openMethod(method string) bool {
	for _, p := range openMethods {
		if strings.HasPrefix(method, p) {
			return true
		}
	}
	return false
}

// unary authenticates unary calls.
func (a *authenticator) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if openMethod(info.FullMethod) {
		return handler(ctx, req)
	}
	name, err := a.tenantOf(ctx)
	if err != nil {
		a.refuse(ctx, info.FullMethod, err)
		return nil, err
	}
	return handler(tenant.NewContext(ctx, name), req)
}

// stream authenticates streaming calls.
func (a *authenticator) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if openMethod(info.FullMethod) {
		return handler(srv, ss)
	}
	name, err := a.tenantOf(ss.Context())
	if err != nil {
		a.refuse(ss.Context(), info.FullMethod, err)
		return err
	}
	return handler(srv, &tenantStream{ServerStream: ss, ctx: tenant.NewContext(ss.Context(), name)})
}

func (a *authenticator) refuse(ctx context.Context, method string, err error) {
	if a.denied != nil {
		a.denied(ctx, method, err)
	}
}

// tenantStream is a stream whose context carries the tenant.
type tenantStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *tenantStream) Context() context.Context { return s.ctx }

// peerCred is the AuthInfo of a unix socket connection: the peer's
// credentials as the kernel gives them (SO_PEERCRED), which the peer
// cannot forge.
type peerCred struct {
	credentials.CommonAuthInfo
	uid, gid uint32
}

// AuthType names the credentials.
func (peerCred) AuthType() string { return "peercred" }

// listenerCreds are the API's transport credentials: the peer's
// credentials on the unix socket, TLS on TCP when configured, else
// nothing (loopback TCP in a policy without tenants).
type listenerCreds struct {
	tls credentials.TransportCredentials // nil without TLS
}

// ServerHandshake authenticates one accepted connection.
func (c *listenerCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if uc, ok := conn.(*net.UnixConn); ok {
		raw, err := uc.SyscallConn()
		if err != nil {
			return nil, nil, err
		}
		var cred *unix.Ucred
		var credErr error
		if err := raw.Control(func(fd uintptr) {
			cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		}); err != nil {
			return nil, nil, err
		}
		if credErr != nil {
			return nil, nil, fmt.Errorf("reading the unix peer's credentials: %w", credErr)
		}
		return conn, peerCred{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
			uid: cred.Uid, gid: cred.Gid}, nil
	}
	if c.tls != nil {
		return c.tls.ServerHandshake(conn)
	}
	return conn, insecureInfo{credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}, nil
}

// ClientHandshake is not used: these credentials only serve.
func (c *listenerCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("sandboxd's listener credentials do not dial")
}

// Info describes the credentials.
func (c *listenerCreds) Info() credentials.ProtocolInfo {
	if c.tls != nil {
		return c.tls.Info()
	}
	return credentials.ProtocolInfo{SecurityProtocol: "insecure"}
}

// Clone copies the credentials.
func (c *listenerCreds) Clone() credentials.TransportCredentials {
	out := &listenerCreds{}
	if c.tls != nil {
		out.tls = c.tls.Clone()
	}
	return out
}

// OverrideServerName is deprecated in grpc and unused.
func (c *listenerCreds) OverrideServerName(string) error { return nil }

// insecureInfo is the AuthInfo of plain TCP.
type insecureInfo struct{ credentials.CommonAuthInfo }

// AuthType names the credentials.
func (insecureInfo) AuthType() string { return "insecure" }

// tlsMinVersion is TLS 1.2: every supported gRPC client speaks it, and
// older versions have known weaknesses.
const tlsMinVersion = tls.VersionTLS12

// serverTLS builds the TCP listener's TLS configuration from the policy:
// nil when it has none. With a client CA, clients must present a
// certificate that chains to it (mutual TLS).
func serverTLS(h policy.TLS) (*tls.Config, error) {
	if h.CertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(h.CertFile, h.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading host.tls.cert_file and key_file: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tlsMinVersion}
	if h.ClientCAFile != "" {
		pem, err := os.ReadFile(h.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("reading host.tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("host.tls.client_ca_file %s holds no PEM certificate", h.ClientCAFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
