package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// Tokens of the test tenants; the policy holds their SHA-256 only.
const (
	tokenA = "token-of-team-a-0123456789"
	tokenB = "token-of-team-b-0123456789"
)

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// pki is a test CA with a server certificate for 127.0.0.1 and client
// certificates, all as PEM files in dir.
type pki struct {
	dir                   string
	ca                    *x509.Certificate
	caKey                 *ecdsa.PrivateKey
	caFile                string
	serverCert, serverKey string
}

// newPKI makes a CA named name and a server certificate for 127.0.0.1.
func newPKI(t *testing.T, dir, name string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &pki{dir: dir, ca: ca, caKey: key, caFile: filepath.Join(dir, name+"-ca.pem")}
	writePEM(t, p.caFile, "CERTIFICATE", der)
	p.serverCert, p.serverKey = p.issue(t, name+"-server", pkix.Name{CommonName: "sandboxd"}, true)
	return p
}

// issue signs a certificate for subject (a server one for 127.0.0.1, or a
// client one) and returns its PEM files.
func (p *pki) issue(t *testing.T, file string, subject pkix.Name, server bool) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, file+".pem"), filepath.Join(p.dir, file+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tenantsPolicy is a policy with tenants team-a (token, client
// certificate, quota 2, template python only) and team-b (token), serving
// mutual TLS on addr.
func tenantsPolicy(p *pki, addr string, withB bool) string {
	b := ""
	if withB {
		b = fmt.Sprintf("  team-b:\n    tokens: [%s]\n", tokenHash(tokenB))
	}
	return fmt.Sprintf(`host:
  listen_tcp: %s
  tls: {cert_file: %s, key_file: %s, client_ca_file: %s}
templates:
  python: {}
  other: {}
default_template: python
pools:
  - {template: python, idle: 1}
tenants:
  team-a:
    tokens: [%s]
    cert_subjects: ["CN=orchestrator-a,O=Example"]
    max_sandboxes: 2
    templates: [python]
%s`, addr, p.serverCert, p.serverKey, p.caFile, tokenHash(tokenA), b)
}

// startTenantDaemon starts a daemon with tenantsPolicy; it returns the
// daemon, the PKI and the policy file.
func startTenantDaemon(t *testing.T) (*daemon, *pki, string, string) {
	dir := t.TempDir()
	p := newPKI(t, dir, "test")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(tenantsPolicy(p, addr, true)), 0o600); err != nil {
		t.Fatal(err)
	}
	return startDaemon(t, daemonOpts{policy: policyFile}), p, addr, policyFile
}

// asTenant is a client on the daemon's unix socket sending token.
func asTenant(t *testing.T, d *daemon, token string) sandboxv1.SandboxServiceClient {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken(token)))
	}
	cc, err := grpc.NewClient("unix://"+d.socket, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return sandboxv1.NewSandboxServiceClient(cc)
}

type bearerToken string

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearerToken) RequireTransportSecurity() bool { return false }

// TestAnotherTenantCannotSeeOrTouchASandbox guarantees tenant isolation:
// every RPC naming team-a's sandbox answers team-b (and the unix socket's
// local tenant) NOT_FOUND, exactly as for an unknown ID; team-b's list
// does not show it; its Destroy leaves it running; and a bad or missing
// token is UNAUTHENTICATED where a tenant is needed.
func TestAnotherTenantCannotSeeOrTouchASandbox(t *testing.T) {
	d, _, _, _ := startTenantDaemon(t)
	a, b := asTenant(t, d, tokenA), asTenant(t, d, tokenB)
	sb, err := a.CreateSandbox(ctx(t), &sandboxv1.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	id := sb.SandboxId
	t.Cleanup(func() { a.DestroySandbox(context.Background(), &sandboxv1.DestroySandboxRequest{SandboxId: id}) })

	for _, c := range []struct {
		name   string
		client sandboxv1.SandboxServiceClient
	}{{"team-b", b}, {"local", d.client}} {
		calls := map[string]func() error{
			"Get": func() error {
				_, err := c.client.GetSandbox(ctx(t), &sandboxv1.GetSandboxRequest{SandboxId: id})
				return err
			},
			"Pause": func() error {
				_, err := c.client.PauseSandbox(ctx(t), &sandboxv1.PauseSandboxRequest{SandboxId: id})
				return err
			},
			"Resume": func() error {
				_, err := c.client.ResumeSandbox(ctx(t), &sandboxv1.ResumeSandboxRequest{SandboxId: id})
				return err
			},
			"Exec": func() error {
				s, err := c.client.Exec(ctx(t), &sandboxv1.ExecRequest{SandboxId: id, Language: sandboxv1.Language_LANGUAGE_PYTHON, Code: "1"})
				if err == nil {
					_, err = s.Recv()
				}
				return err
			},
			"Upload": func() error {
				s, err := c.client.Upload(ctx(t))
				if err == nil {
					s.Send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Header{Header: &sandboxv1.FileHeader{SandboxId: id, Path: "x"}}})
					_, err = s.CloseAndRecv()
				}
				return err
			},
			"Download": func() error {
				s, err := c.client.Download(ctx(t), &sandboxv1.DownloadRequest{SandboxId: id, Path: "x"})
				if err == nil {
					_, err = s.Recv()
				}
				return err
			},
			"EditFile": func() error {
				_, err := c.client.EditFile(ctx(t), &sandboxv1.EditFileRequest{SandboxId: id, Command: sandboxv1.EditCommand_EDIT_COMMAND_VIEW, Path: "."})
				return err
			},
			"ListFiles": func() error {
				_, err := c.client.ListFiles(ctx(t), &sandboxv1.ListFilesRequest{SandboxId: id})
				return err
			},
		}
		for name, call := range calls {
			if err := call(); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "not found") {
				t.Errorf("%s %s of team-a's sandbox: %v, want NOT_FOUND", c.name, name, err)
			}
		}
		list, err := c.client.ListSandboxes(ctx(t), &sandboxv1.ListSandboxesRequest{})
		if err != nil || len(list.Sandboxes) != 0 {
			t.Errorf("%s lists %v (%v), want none", c.name, list.GetSandboxes(), err)
		}
		if _, err := c.client.DestroySandbox(ctx(t), &sandboxv1.DestroySandboxRequest{SandboxId: id}); err != nil {
			t.Errorf("%s Destroy: %v, want the answer for an unknown ID (OK)", c.name, err)
		}
	}
	r, err := a.Exec(ctx(t), &sandboxv1.ExecRequest{SandboxId: id, Language: sandboxv1.Language_LANGUAGE_PYTHON, Code: "6*7"})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := r.Recv()
	for err == nil && ev.GetResult() == nil {
		ev, err = r.Recv()
	}
	if err != nil || ev.GetResult().GetValue() != "42" {
		t.Fatalf("team-a's sandbox after the others' calls: %v %v", ev, err)
	}
	if list, err := a.ListSandboxes(ctx(t), &sandboxv1.ListSandboxesRequest{}); err != nil || len(list.Sandboxes) != 1 {
		t.Fatalf("team-a lists %v (%v), want its one sandbox", list.GetSandboxes(), err)
	}
	if _, err := asTenant(t, d, "wrong-token-0123456789").ListSandboxes(ctx(t), &sandboxv1.ListSandboxesRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("an unknown token: %v, want UNAUTHENTICATED", err)
	}
}

// TestTenantQuotaAndTemplates guarantees team-a's quota (max_sandboxes 2:
// the third create is RESOURCE_EXHAUSTED naming the quota) and its
// template list (PERMISSION_DENIED for another template), and that a
// reload removing team-b destroys team-b's sandboxes and refuses its
// token.
func TestTenantQuotaAndTemplates(t *testing.T) {
	d, p, addr, policyFile := startTenantDaemon(t)
	a, b := asTenant(t, d, tokenA), asTenant(t, d, tokenB)
	for range 2 {
		sb, err := a.CreateSandbox(ctx(t), &sandboxv1.CreateSandboxRequest{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			a.DestroySandbox(context.Background(), &sandboxv1.DestroySandboxRequest{SandboxId: sb.SandboxId})
		})
	}
	_, err := a.CreateSandbox(ctx(t), &sandboxv1.CreateSandboxRequest{})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "max_sandboxes") {
		t.Fatalf("third sandbox of team-a: %v, want RESOURCE_EXHAUSTED naming max_sandboxes", err)
	}
	if _, err := a.CreateSandbox(ctx(t), &sandboxv1.CreateSandboxRequest{Template: "other"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("template other for team-a: %v, want PERMISSION_DENIED", err)
	}
	sbB, err := b.CreateSandbox(ctx(t), &sandboxv1.CreateSandboxRequest{Template: "other"})
	if err != nil {
		t.Fatalf("team-b (no quota, every template): %v", err)
	}

	if err := os.WriteFile(policyFile, []byte(tenantsPolicy(p, addr, false)), 0o600); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(d.log.String(), "sandbox="+sbB.SandboxId) || !strings.Contains(d.log.String(), "a tenant the policy no longer has") {
		if time.Now().After(deadline) {
			t.Fatalf("team-b's sandbox was not destroyed after the reload:\n%s", d.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := b.ListSandboxes(ctx(t), &sandboxv1.ListSandboxesRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("team-b's token after its removal: %v, want UNAUTHENTICATED", err)
	}
}

// TestMutualTLSNeedsAClientCertificateFromTheCA guarantees the TCP
// listener's mutual TLS: no client certificate, or one from another CA,
// is refused; one from the policy's CA is served as the tenant its subject
// names; sandboxctl connects with --addr and --tls-*.
func TestMutualTLSNeedsAClientCertificateFromTheCA(t *testing.T) {
	d, p, addr, _ := startTenantDaemon(t)
	other := newPKI(t, t.TempDir(), "other")
	goodCert, goodKey := p.issue(t, "orch-a", pkix.Name{CommonName: "orchestrator-a", Organization: []string{"Example"}}, false)
	wrongCert, wrongKey := other.issue(t, "orch-a-other-ca", pkix.Name{CommonName: "orchestrator-a", Organization: []string{"Example"}}, false)
	caPool := x509.NewCertPool()
	caPool.AddCert(p.ca)
	dialTLS := func(certFile, keyFile string) error {
		cfg := &tls.Config{RootCAs: caPool, MinVersion: tls.VersionTLS12}
		if certFile != "" {
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = sandboxv1.NewSandboxServiceClient(cc).ListSandboxes(c, &sandboxv1.ListSandboxesRequest{})
		return err
	}
	if err := dialTLS("", ""); err == nil {
		t.Error("no client certificate: served")
	}
	if err := dialTLS(wrongCert, wrongKey); err == nil {
		t.Error("a client certificate of another CA: served")
	}
	if err := dialTLS(goodCert, goodKey); err != nil {
		t.Fatalf("the right client certificate: %v", err)
	}
	out, errOut, code := d.ctl(t, "", "--addr", addr, "--tls-ca", p.caFile, "--tls-cert", goodCert, "--tls-key", goodKey, "create", "--label", "via=mtls")
	if code != 0 {
		t.Fatalf("sandboxctl over mutual TLS: %q %q %d", out, errOut, code)
	}
	id := strings.TrimSpace(out)
	// The certificate's subject is team-a: its token sees the sandbox.
	if _, err := asTenant(t, d, tokenA).GetSandbox(ctx(t), &sandboxv1.GetSandboxRequest{SandboxId: id}); err != nil {
		t.Fatalf("team-a does not own the sandbox made with its certificate: %v", err)
	}
	if _, _, code := d.ctl(t, "", "--addr", addr, "--tls-ca", p.caFile, "list"); code == 0 {
		t.Error("sandboxctl over TLS without a client certificate: served")
	}
	if out, errOut, code := d.ctl(t, "", "--token", tokenA, "destroy", id); code != 0 {
		t.Fatalf("sandboxctl --token destroy: %q %q", out, errOut)
	}
}
