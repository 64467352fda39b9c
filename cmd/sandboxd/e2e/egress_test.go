package e2e

// These tests cover egress by policy (network: allowlist) end to end: real
// daemons and sandboxes, curl and Python inside, and destinations that are
// servers on this machine's loopback (testdata/egress.yaml): HTTPS on
// 127.0.0.2:443 with a test CA, plain HTTP on 127.0.0.3:80, and two names
// the host's /etc/hosts resolves to them for the daemon's resolver.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"github.com/sandboxd/sandboxd/runtime/audit"
)

// The test destinations.
const (
	// httpsAddr serves HTTPS with a certificate of the test CA for
	// 127.0.0.2 and okName.
	httpsAddr = "127.0.0.2:443"
	// httpAddr serves plain HTTP; no entry of any template opens it.
	httpAddr = "127.0.0.3:80"
	// okName resolves to 127.0.0.2 on the host; templates list it.
	okName = "egress-ok.sandboxd.test"
	// rebindName resolves to 127.0.0.3 on the host; web lists it by name,
	// but no CIDR entry opens its address.
	rebindName = "rebind.sandboxd.test"
	// bigBytes is the size of the HTTPS server's /big download.
	bigBytes = 5 << 20
	// caPath is where the test CA lands in each sandbox.
	caPath = "/workspace/ca.pem"
	// okBody starts every answer of the HTTPS server.
	okBody = "egress-ok"
)

// egressEnv is a daemon with the egress test policy and the host servers.
type egressEnv struct {
	d      *daemon
	policy string
	// hits counts the connections the HTTPS server accepted.
	hits *atomic.Int64
	ca   []byte
}

// startEgress starts the host servers, the host's name entries and a
// daemon with the egress test policy and extra daemon flags.
func startEgress(t *testing.T, args ...string) *egressEnv {
	t.Helper()
	requireE2E(t)
	addHostNames(t, map[string]string{okName: "127.0.0.2", rebindName: "127.0.0.3"})
	p := newPKI(t, t.TempDir(), "egress")
	cert := issueHostCert(t, p, []net.IP{net.ParseIP("127.0.0.2")}, []string{okName})
	caPEM, err := os.ReadFile(p.caFile)
	if err != nil {
		t.Fatal(err)
	}
	x := &egressEnv{hits: serveHTTPS(t, cert), ca: caPEM, policy: copyPolicy(t, "egress.yaml")}
	serveHTTP(t)
	x.d = startDaemon(t, daemonOpts{policy: x.policy, args: args})
	return x
}

// addHostNames appends name-to-address lines to the host's /etc/hosts,
// which the daemon's resolver reads, and removes exactly them at cleanup.
func addHostNames(t *testing.T, names map[string]string) {
	t.Helper()
	const path = "/etc/hosts"
	var block strings.Builder
	block.WriteString("# sandboxd egress e2e " + randomHex(t, 4) + "\n")
	for name, addr := range names {
		fmt.Fprintf(&block, "%s %s\n", addr, name)
	}
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(orig) > 0 && !bytes.HasSuffix(orig, []byte("\n")) {
		orig = append(orig, '\n')
	}
	// Written in place: /etc/hosts may be a bind mount, which a rename
	// would not update.
	if err := os.WriteFile(path, append(orig, block.String()...), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cur, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("restoring %s: %v", path, err)
			return
		}
		if err := os.WriteFile(path, bytes.Replace(cur, []byte(block.String()), nil, 1), 0o644); err != nil {
			t.Errorf("restoring %s: %v", path, err)
		}
	})
}

// issueHostCert signs a server certificate for ips and names with p's CA.
func issueHostCert(t *testing.T, p *pki, ips []net.IP, names []string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: ips, DNSNames: names}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// serveHTTPS serves HTTPS on httpsAddr until the test ends: okBody and
// the path at /, bigBytes of zeros at /big. It returns the count of
// connections accepted.
func serveHTTPS(t *testing.T, cert tls.Certificate) *atomic.Int64 {
	t.Helper()
	l, err := net.Listen("tcp", httpsAddr)
	if err != nil {
		t.Fatal(err)
	}
	hits := &atomic.Int64{}
	mux := http.NewServeMux()
	mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(bigBytes))
		w.Write(make([]byte, bigBytes))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "%s %s\n", okBody, r.Host) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				hits.Add(1)
			}
		}}
	go srv.ServeTLS(l, "", "")
	t.Cleanup(func() { srv.Close() })
	return hits
}

// serveHTTP serves plain HTTP on httpAddr until the test ends.
func serveHTTP(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "plain http must not be reached")
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

// sandbox creates a sandbox of template with the egress list allow (none:
// the template's), puts the test CA at caPath and destroys it at cleanup.
func (x *egressEnv) sandbox(t *testing.T, template string, allow ...string) *sandboxv1.Sandbox {
	t.Helper()
	sb, err := x.d.client.CreateSandbox(ctx(t), &sandboxv1.CreateSandboxRequest{Template: template, EgressAllow: allow})
	if err != nil {
		t.Fatalf("CreateSandbox(%s, %q): %v", template, allow, err)
	}
	t.Cleanup(func() {
		x.d.client.DestroySandbox(context.Background(), &sandboxv1.DestroySandboxRequest{SandboxId: sb.SandboxId})
	})
	if _, err := x.d.upload(t, sb.SandboxId, caPath, x.ca); err != nil {
		t.Fatal(err)
	}
	return sb
}

// fetch is what curl in the sandbox got: the proxy's answer to CONNECT
// (0 for a plain HTTP request), the HTTP status, curl's exit status and
// the body.
type fetch struct {
	connect, code, exit int
	body                string
}

// curl runs curl in sandbox id for url, with only the test CA as an
// option: the proxy comes from the sandbox's environment.
func (x *egressEnv) curl(t *testing.T, id, url string) fetch {
	t.Helper()
	r := sh(t, x.d, id, fmt.Sprintf(`rm -f /tmp/body; curl -sS --max-time 30 --cacert %s -o /tmp/body -w '%%{http_connect} %%{http_code}' %s; echo " $?"; cat /tmp/body 2>/dev/null`, caPath, url))
	var f fetch
	first, body, _ := strings.Cut(r.stdout, "\n")
	if _, err := fmt.Sscan(first, &f.connect, &f.code, &f.exit); err != nil {
		t.Fatalf("curl %s: %v: stdout %q stderr %q", url, err, r.stdout, r.stderr)
	}
	f.body = body
	return f
}

// wantReached fails the test unless curl got the HTTPS server's answer.
func (x *egressEnv) wantReached(t *testing.T, id, url string) {
	t.Helper()
	if f := x.curl(t, id, url); f.exit != 0 || f.code != 200 || !strings.HasPrefix(f.body, okBody) {
		t.Fatalf("curl %s in %s: %+v, want 200 and the server's answer", url, id, f)
	}
}

// wantRefused fails the test unless the proxy refused url with 403 (to
// CONNECT for https, to the request for http) without the destination
// answering; for http the reason must contain why.
func (x *egressEnv) wantRefused(t *testing.T, id, url, why string) {
	t.Helper()
	f := x.curl(t, id, url)
	if strings.HasPrefix(url, "https:") {
		if f.connect != 403 || f.exit == 0 || strings.Contains(f.body, okBody) {
			t.Fatalf("curl %s: %+v, want CONNECT refused with 403", url, f)
		}
		return
	}
	if f.code != 403 || !strings.Contains(f.body, why) || strings.Contains(f.body, "must not be reached") {
		t.Fatalf("curl %s: %+v, want 403 saying %q", url, f, why)
	}
}

// TestEgressReachesListedHostThroughTheProxy guarantees the allowed path:
// every process of a sandbox of an allowlist template (Python, bash, the
// bash session) has the proxy in its environment, and curl, Python's
// urllib and requests reach the listed HTTPS server by address and by a
// name the daemon resolves on the host, with no option but the CA;
// GetSandbox shows the template's list; each connection is logged,
// counted and audited with its address and bytes.
func TestEgressReachesListedHostThroughTheProxy(t *testing.T) {
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	x := startEgress(t, "--audit-log", auditPath, "--metrics-listen", metricsAddr)
	sb := x.sandbox(t, "web")
	id := sb.SandboxId
	if want := []string{"127.0.0.2/32:443", okName + ":443", rebindName + ":80"}; !slices.Equal(sb.GetEgressAllow(), want) {
		t.Fatalf("CreateSandbox egress_allow %q, want the template's %q", sb.GetEgressAllow(), want)
	}
	if got, _ := x.d.client.GetSandbox(ctx(t), &sandboxv1.GetSandboxRequest{SandboxId: id}); !slices.Equal(got.GetEgressAllow(), sb.GetEgressAllow()) {
		t.Fatalf("GetSandbox egress_allow %q, want %q", got.GetEgressAllow(), sb.GetEgressAllow())
	}

	const proxy = "http://127.0.0.1:3128"
	wantEnv := fmt.Sprintf("%s %s %s %s localhost,127.0.0.1 localhost,127.0.0.1", proxy, proxy, proxy, proxy)
	const vars = `"$HTTP_PROXY $HTTPS_PROXY $http_proxy $https_proxy $NO_PROXY $no_proxy"`
	for lang, code := range map[sandboxv1.Language]string{
		sandboxv1.Language_LANGUAGE_BASH:         "echo " + vars,
		sandboxv1.Language_LANGUAGE_BASH_SESSION: "echo " + vars,
		sandboxv1.Language_LANGUAGE_PYTHON: `import os; print(" ".join(os.environ[k] for k in
    ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy"]))`,
	} {
		r := x.d.run(t, id, lang, code, time.Minute)
		wantOK(t, r)
		if strings.TrimSpace(r.stdout) != wantEnv {
			t.Errorf("%v sees the proxy variables as %q, want %q", lang, r.stdout, wantEnv)
		}
	}

	x.wantReached(t, id, "https://127.0.0.2/")
	x.wantReached(t, id, "https://"+okName+"/")
	r := py(t, x.d, id, fmt.Sprintf(`
import ssl, urllib.request, requests
ctx = ssl.create_default_context(cafile=%[1]q)
print("urllib", urllib.request.urlopen("https://127.0.0.2/", context=ctx, timeout=30).read().decode().strip())
print("requests", requests.get("https://%[2]s/", verify=%[1]q, timeout=30).text.strip())
`, caPath, okName))
	wantOK(t, r)
	if !strings.Contains(r.stdout, "urllib "+okBody+" 127.0.0.2") || !strings.Contains(r.stdout, "requests "+okBody+" "+okName) {
		t.Fatalf("Python through the proxy: stdout %q stderr %q", r.stdout, r.stderr)
	}
	x.wantRefused(t, id, "http://127.0.0.3/", "no CIDR entry holds 127.0.0.3")

	wantMetrics(t, metricsAddr,
		`sandboxd_egress_connections_total{result="allowed",template="web"} 4`,
		`sandboxd_egress_connections_total{result="refused",template="web"} 1`)
	log := x.d.log.String()
	for _, want := range []string{
		"msg=\"egress allowed\" sandbox=" + id + " template=web host=" + okName + " port=443 addr=127.0.0.2:443",
		"msg=\"egress closed\" sandbox=" + id + " template=web host=127.0.0.2 port=443 addr=127.0.0.2:443 bytes_up=",
		"msg=\"egress refused\" sandbox=" + id + " template=web host=127.0.0.3 port=80",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the daemon's log lacks %q", want)
		}
	}
	x.d.stop() // writes the queued audit lines
	data, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	var allowed, refused int
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var rec audit.Record
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		if rec.Method != audit.MethodEgress {
			continue
		}
		e := rec.Egress
		switch {
		case rec.Sandbox != id || rec.Template != "web" || e == nil:
			t.Errorf("egress audit line %s", line)
		case e.Allowed && (e.Addr != "127.0.0.2:443" || e.Port != 443 || e.BytesUp == 0 || e.BytesDown == 0):
			t.Errorf("allowed egress audit line without its address or bytes: %s", line)
		case e.Allowed:
			allowed++
		case e.Host == "127.0.0.3" && strings.Contains(e.Reason, "no CIDR entry"):
			refused++
		default:
			t.Errorf("unexpected egress audit line %s", line)
		}
	}
	if allowed != 4 || refused != 1 {
		t.Errorf("audit log has %d allowed and %d refused egress lines, want 4 and 1:\n%s", allowed, refused, data)
	}
}

// TestEgressRefusesUnlistedAndRebindingDestinations guarantees the
// refusals of a listed template: an address no CIDR entry holds, a listed
// name that resolves to a refused address (DNS rebinding), an unlisted
// port; and, under a "*" entry, the metadata address, a private address,
// IPv6 loopback and a name that resolves to loopback. The destinations
// see none of these connections.
func TestEgressRefusesUnlistedAndRebindingDestinations(t *testing.T) {
	x := startEgress(t)
	web := x.sandbox(t, "web").SandboxId
	x.wantRefused(t, web, "http://127.0.0.3/", "no CIDR entry holds 127.0.0.3")
	x.wantRefused(t, web, "https://127.0.0.3/", "")
	x.wantRefused(t, web, "http://"+rebindName+"/", "resolves to 127.0.0.3, which is loopback")
	x.wantRefused(t, web, "http://"+rebindName+"/", "DNS rebinding")
	x.wantRefused(t, web, "http://"+okName+"/", "allowed on port 443 only, not 80")
	x.wantRefused(t, web, "https://127.0.0.2:8443/", "")

	wild := x.sandbox(t, "wildcard").SandboxId
	x.wantReached(t, wild, "https://127.0.0.2/")
	before := x.hits.Load()
	x.wantRefused(t, wild, "http://169.254.169.254/latest/meta-data/", "no CIDR entry holds 169.254.169.254")
	x.wantRefused(t, wild, "https://169.254.169.254/", "")
	x.wantRefused(t, wild, "http://10.0.0.1/", "no CIDR entry holds 10.0.0.1")
	x.wantRefused(t, wild, "http://[::1]/", "no CIDR entry holds ::1")
	x.wantRefused(t, wild, "https://[::1]/", "")
	x.wantRefused(t, wild, "http://"+rebindName+"/", "resolves to 127.0.0.3, which is loopback")
	if n := x.hits.Load() - before; n != 0 {
		t.Errorf("the HTTPS server got %d connections from refused requests", n)
	}
	if !strings.Contains(x.d.log.String(), "host="+rebindName+" port=80 addr=127.0.0.3:80 method=GET reason=\""+rebindName+" resolves to 127.0.0.3") {
		t.Errorf("the daemon's log does not say why %s was refused under *", rebindName)
	}
}

// TestEgressProxyCannotBeBypassed guarantees that the sandbox keeps no
// network of its own with egress on: a raw socket that ignores the proxy
// reaches neither the listed server nor any outside address, DNS fails
// inside, and curl told not to use the proxy fails.
func TestEgressProxyCannotBeBypassed(t *testing.T) {
	x := startEgress(t)
	id := x.sandbox(t, "web").SandboxId
	before := x.hits.Load()
	r := py(t, x.d, id, `
import errno, socket
for host, port in [("127.0.0.2", 443), ("192.0.2.1", 443), ("10.0.0.1", 80)]:
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect((host, port))
        print("CONNECTED", host)
    except OSError as e:
        print("failed", host, errno.errorcode.get(e.errno, e.errno))
try:
    socket.getaddrinfo("`+okName+`", 443)
    print("RESOLVED")
except OSError as e:
    print("dns failed")
`)
	wantOK(t, r)
	for _, want := range []string{"failed 127.0.0.2", "failed 192.0.2.1 ENETUNREACH", "failed 10.0.0.1 ENETUNREACH", "dns failed"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("raw sockets and DNS: want %q in %q", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "CONNECTED") || strings.Contains(r.stdout, "RESOLVED") {
		t.Fatalf("the sandbox got out without the proxy: %q", r.stdout)
	}
	r = sh(t, x.d, id, "curl -sS --max-time 10 --noproxy '*' --cacert "+caPath+" https://"+okName+"/; echo rc=$?; curl -sS --max-time 10 --noproxy '*' --cacert "+caPath+" https://127.0.0.2/; echo rc=$?")
	if strings.Contains(r.stdout, okBody) || strings.Count(r.stdout, "rc=0") != 0 {
		t.Fatalf("curl without the proxy: stdout %q stderr %q", r.stdout, r.stderr)
	}
	if n := x.hits.Load() - before; n != 0 {
		t.Errorf("the HTTPS server got %d connections that bypassed the proxy", n)
	}
}

// TestEgressDefaultTemplateStaysClosed guarantees that a template without
// egress gets nothing of it: no proxy variables, nothing listening on the
// proxy port, no way to the listed server, no list shown, and requests
// that give it a list (at create or later) are INVALID_ARGUMENT.
func TestEgressDefaultTemplateStaysClosed(t *testing.T) {
	x := startEgress(t)
	sb := x.sandbox(t, "")
	id := sb.SandboxId
	if len(sb.GetEgressAllow()) != 0 || sb.GetTemplate() != "python" {
		t.Fatalf("default sandbox %s has egress_allow %q", sb.GetTemplate(), sb.GetEgressAllow())
	}
	r := sh(t, x.d, id, `env | grep -i _proxy; python3 -c '
import socket
s = socket.socket(); s.settimeout(3)
try:
    s.connect(("127.0.0.1", 3128)); print("PROXY LISTENS")
except OSError as e:
    print("no proxy", e.errno)
'; curl -sS --max-time 10 --cacert `+caPath+` https://127.0.0.2/; echo rc=$?`)
	if strings.Contains(strings.ToLower(r.stdout), "proxy=") || !strings.Contains(r.stdout, "no proxy") ||
		strings.Contains(r.stdout, okBody) || strings.Contains(r.stdout, "rc=0") {
		t.Fatalf("the default template is not closed: stdout %q stderr %q", r.stdout, r.stderr)
	}
	_, err := x.d.client.CreateSandbox(ctx(t), &sandboxv1.CreateSandboxRequest{EgressAllow: []string{"127.0.0.2/32:443"}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "has no egress") {
		t.Errorf("CreateSandbox of the default template with a list: %v, want INVALID_ARGUMENT", err)
	}
	_, err = x.d.client.UpdateSandboxEgress(ctx(t), &sandboxv1.UpdateSandboxEgressRequest{SandboxId: id, Allow: []string{"127.0.0.2/32:443"}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "has no egress") {
		t.Errorf("UpdateSandboxEgress of a default sandbox: %v, want INVALID_ARGUMENT", err)
	}
}

// TestEgressLoweringWorksAndWideningIsInvalid guarantees per-sandbox
// lists at create: a narrower list still reaches what it lists and not
// what it left out (a listed name whose loopback address only the
// template's CIDR entry opened included); a wider one, or one that is no
// list, is INVALID_ARGUMENT naming the entry; sandboxctl create --allow
// narrows the same way.
func TestEgressLoweringWorksAndWideningIsInvalid(t *testing.T) {
	x := startEgress(t)
	byAddr := x.sandbox(t, "web", "127.0.0.2/32:443")
	if !slices.Equal(byAddr.GetEgressAllow(), []string{"127.0.0.2/32:443"}) {
		t.Fatalf("egress_allow %q", byAddr.GetEgressAllow())
	}
	x.wantReached(t, byAddr.SandboxId, "https://127.0.0.2/")
	x.wantRefused(t, byAddr.SandboxId, "https://"+okName+"/", "")

	byName := x.sandbox(t, "web", okName+":443")
	x.wantRefused(t, byName.SandboxId, "https://127.0.0.2/", "")
	x.wantRefused(t, byName.SandboxId, "https://"+okName+"/", "")
	if !strings.Contains(x.d.log.String(), "sandbox="+byName.SandboxId+" template=web host="+okName+" port=443 addr=127.0.0.2:443 method=CONNECT reason=\""+okName+" resolves to 127.0.0.2, which is loopback") {
		t.Errorf("the daemon's log does not say why %s was refused without the CIDR entry", okName)
	}

	for _, wider := range [][]string{{"127.0.0.0/8:443"}, {"127.0.0.2/32:443,8443"}, {"*.sandboxd.test:443"}, {"example.com"}, {"127.0.0.2"}} {
		_, err := x.d.client.CreateSandbox(ctx(t), &sandboxv1.CreateSandboxRequest{Template: "web", EgressAllow: wider})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "egress entry") {
			t.Errorf("CreateSandbox with %q: %v, want INVALID_ARGUMENT naming the entry", wider, err)
		}
	}

	out, stderr, code := x.d.ctl(t, "", "create", "--template", "web", "--allow", "127.0.0.2/32:443")
	if code != 0 {
		t.Fatalf("sandboxctl create --allow: %d %s", code, stderr)
	}
	id := strings.TrimSpace(out)
	t.Cleanup(func() {
		x.d.client.DestroySandbox(context.Background(), &sandboxv1.DestroySandboxRequest{SandboxId: id})
	})
	if out, _, _ := x.d.ctl(t, "", "get", id); !strings.Contains(out, "Egress:") || !strings.Contains(out, "127.0.0.2/32:443") {
		t.Errorf("sandboxctl get does not show the list:\n%s", out)
	}
	if _, stderr, code := x.d.ctl(t, "", "create", "--template", "web", "--allow", "127.0.0.0/8:443"); code != 1 || !strings.Contains(stderr, "invalid argument") {
		t.Errorf("sandboxctl create with a wider list: exit %d, %q", code, stderr)
	}
}

// TestEgressUpdateTakesEffectForNewConnections guarantees
// UpdateSandboxEgress on a running sandbox: removing an entry refuses the
// next connection to it, adding it back opens it again, GetSandbox shows
// the list in force, a wider list is INVALID_ARGUMENT and changes nothing,
// an empty one closes egress, and sandboxctl egress sets a list.
func TestEgressUpdateTakesEffectForNewConnections(t *testing.T) {
	x := startEgress(t)
	id := x.sandbox(t, "web").SandboxId
	update := func(allow ...string) (*sandboxv1.Sandbox, error) {
		return x.d.client.UpdateSandboxEgress(ctx(t), &sandboxv1.UpdateSandboxEgressRequest{SandboxId: id, Allow: allow})
	}
	x.wantReached(t, id, "https://127.0.0.2/")

	sb, err := update(okName + ":443")
	if err != nil || !slices.Equal(sb.GetEgressAllow(), []string{okName + ":443"}) {
		t.Fatalf("UpdateSandboxEgress: %v, %v", sb.GetEgressAllow(), err)
	}
	x.wantRefused(t, id, "https://127.0.0.2/", "")
	if got, _ := x.d.client.GetSandbox(ctx(t), &sandboxv1.GetSandboxRequest{SandboxId: id}); !slices.Equal(got.GetEgressAllow(), []string{okName + ":443"}) {
		t.Fatalf("GetSandbox egress_allow %q after the update", got.GetEgressAllow())
	}

	if _, err := update("127.0.0.0/8:443"); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a wider list: %v, want INVALID_ARGUMENT", err)
	}
	x.wantRefused(t, id, "https://127.0.0.2/", "")

	if _, err := update("127.0.0.2/32:443", okName+":443"); err != nil {
		t.Fatal(err)
	}
	x.wantReached(t, id, "https://127.0.0.2/")
	x.wantReached(t, id, "https://"+okName+"/")

	if sb, err := update(); err != nil || len(sb.GetEgressAllow()) != 0 {
		t.Fatalf("closing egress: %v, %v", sb.GetEgressAllow(), err)
	}
	x.wantRefused(t, id, "https://"+okName+"/", "")
	x.wantRefused(t, id, "https://127.0.0.2/", "")

	out, stderr, code := x.d.ctl(t, "", "egress", id, "127.0.0.2/32:443")
	if code != 0 || out != "127.0.0.2/32:443\n" {
		t.Fatalf("sandboxctl egress: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	x.wantReached(t, id, "https://127.0.0.2/")
}

// TestEgressByteCapCutsALargeDownload guarantees limits.egress_bytes: a
// download five times the cap is cut, the sandbox receives at most the
// cap, and the next connection is refused.
func TestEgressByteCapCutsALargeDownload(t *testing.T) {
	x := startEgress(t)
	id := x.sandbox(t, "capped").SandboxId
	r := sh(t, x.d, id, "curl -sS --max-time 60 --cacert "+caPath+" -o /tmp/big https://127.0.0.2/big; echo rc=$?; stat -c 'size=%s' /tmp/big")
	var size int
	if i := strings.Index(r.stdout, "size="); i >= 0 {
		fmt.Sscan(r.stdout[i+len("size="):], &size)
	}
	if strings.Contains(r.stdout, "rc=0\n") || size > 1<<20 {
		t.Fatalf("a %d-byte download under a 1 MiB cap: stdout %q stderr %q", bigBytes, r.stdout, r.stderr)
	}
	if size < 512<<10 {
		t.Errorf("the download was cut at %d bytes, well before the 1 MiB cap", size)
	}
	x.wantRefused(t, id, "https://127.0.0.2/", "")
	if log := x.d.log.String(); !strings.Contains(log, "egress byte cap of 1048576 bytes reached") {
		t.Errorf("the daemon's log does not say the byte cap cut the download")
	}
}

// TestEgressSurvivesPauseAndResume guarantees that a sandbox with egress
// can be paused (its proxy does not keep it busy), and that after the
// resume its proxy serves again with the list it had.
func TestEgressSurvivesPauseAndResume(t *testing.T) {
	x := startEgress(t)
	id := x.sandbox(t, "web", "127.0.0.2/32:443").SandboxId
	x.wantReached(t, id, "https://127.0.0.2/")
	sb, err := x.d.client.PauseSandbox(ctx(t), &sandboxv1.PauseSandboxRequest{SandboxId: id})
	if err != nil || sb.GetState() != sandboxv1.SandboxState_SANDBOX_STATE_PAUSED {
		t.Fatalf("PauseSandbox: %v, %v", sb.GetState(), err)
	}
	if !slices.Equal(sb.GetEgressAllow(), []string{"127.0.0.2/32:443"}) {
		t.Errorf("a paused sandbox shows egress_allow %q", sb.GetEgressAllow())
	}
	x.wantReached(t, id, "https://127.0.0.2/") // the Exec resumes it
	x.wantRefused(t, id, "https://"+okName+"/", "")
	if sb, err := x.d.client.PauseSandbox(ctx(t), &sandboxv1.PauseSandboxRequest{SandboxId: id}); err != nil || sb.GetState() != sandboxv1.SandboxState_SANDBOX_STATE_PAUSED {
		t.Fatalf("second PauseSandbox: %v, %v", sb.GetState(), err)
	}
	if _, err := x.d.client.ResumeSandbox(ctx(t), &sandboxv1.ResumeSandboxRequest{SandboxId: id}); err != nil {
		t.Fatal(err)
	}
	x.wantReached(t, id, "https://127.0.0.2/")
}

// TestEgressSurvivesDaemonCrash guarantees that a running sandbox adopted
// by a restarted daemon after a crash gets its egress back, with the list
// it had (kept in its state record), not its template's.
func TestEgressSurvivesDaemonCrash(t *testing.T) {
	x := startEgress(t)
	id := x.sandbox(t, "web").SandboxId
	if _, err := x.d.client.UpdateSandboxEgress(ctx(t), &sandboxv1.UpdateSandboxEgressRequest{SandboxId: id, Allow: []string{"127.0.0.2/32:443"}}); err != nil {
		t.Fatal(err)
	}
	x.wantReached(t, id, "https://127.0.0.2/")
	x.d.kill()
	x.d = startDaemon(t, daemonOpts{policy: x.policy, stateDir: x.d.stateDir})
	sb, err := x.d.client.GetSandbox(ctx(t), &sandboxv1.GetSandboxRequest{SandboxId: id})
	if err != nil || sb.GetState() != sandboxv1.SandboxState_SANDBOX_STATE_RUNNING || !slices.Equal(sb.GetEgressAllow(), []string{"127.0.0.2/32:443"}) {
		t.Fatalf("after the crash: %v, %v; want it running with its own list", sb, err)
	}
	x.wantReached(t, id, "https://127.0.0.2/")
	x.wantRefused(t, id, "http://"+rebindName+"/", "no entry allows "+rebindName)
}

// TestEgressByteCapLoweredPerSandbox guarantees that a CreateSandbox
// request may lower limits.egress_bytes (shown in the sandbox's limits,
// and cutting a download at the lower cap), never raise it.
func TestEgressByteCapLoweredPerSandbox(t *testing.T) {
	x := startEgress(t)
	const lowered = 256 << 10
	if _, err := x.d.client.CreateSandbox(ctx(t), &sandboxv1.CreateSandboxRequest{Template: "capped", Limits: &sandboxv1.Limits{EgressBytes: 2 << 20}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("egress_bytes above the template's: %v, want InvalidArgument", err)
	}
	sb, err := x.d.client.CreateSandbox(ctx(t), &sandboxv1.CreateSandboxRequest{Template: "capped", Limits: &sandboxv1.Limits{EgressBytes: lowered, EgressConnections: 2}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		x.d.client.DestroySandbox(context.Background(), &sandboxv1.DestroySandboxRequest{SandboxId: sb.SandboxId})
	})
	if got := sb.GetLimits(); got.GetEgressBytes() != lowered || got.GetEgressConnections() != 2 {
		t.Fatalf("limits egress_bytes %d, egress_connections %d; want %d and 2", got.GetEgressBytes(), got.GetEgressConnections(), lowered)
	}
	if _, err := x.d.upload(t, sb.SandboxId, caPath, x.ca); err != nil {
		t.Fatal(err)
	}
	r := sh(t, x.d, sb.SandboxId, "curl -sS --max-time 60 --cacert "+caPath+" -o /tmp/big https://127.0.0.2/big; echo rc=$?; stat -c 'size=%s' /tmp/big")
	var size int
	if i := strings.Index(r.stdout, "size="); i >= 0 {
		fmt.Sscan(r.stdout[i+len("size="):], &size)
	}
	if strings.Contains(r.stdout, "rc=0\n") || size > lowered {
		t.Fatalf("a %d-byte download under a %d-byte cap: stdout %q stderr %q", bigBytes, lowered, r.stdout, r.stderr)
	}
}

// TestEgressNeverReachesTheDaemonsOwnListeners stops a sandbox from
// calling the daemon that runs it: under a template that opens loopback
// explicitly, its API (TCP) and metrics ports are refused while a host
// server on another loopback port of the same list is reached.
func TestEgressNeverReachesTheDaemonsOwnListeners(t *testing.T) {
	requireE2E(t)
	api, metrics := freePort(t), freePort(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	other := l.Addr().(*net.TCPAddr).Port
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "host server reached")
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	policyPath := filepath.Join(t.TempDir(), "open.yaml")
	body := fmt.Sprintf("templates:\n  open:\n    network: allowlist\n    egress:\n      allow: [\"127.0.0.0/8:%d,%d,%d\"]\n    snapshot: false\n    warm_imports: [json]\n", api, metrics, other)
	if err := os.WriteFile(policyPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, daemonOpts{policy: policyPath, args: []string{
		"--listen-tcp", fmt.Sprintf("127.0.0.1:%d", api), "--metrics-listen", fmt.Sprintf("127.0.0.1:%d", metrics)}})
	id := d.create(t)
	get := func(port int) string {
		t.Helper()
		// Through the proxy, which NO_PROXY would skip for 127.0.0.1.
		return sh(t, d, id, fmt.Sprintf("curl -sS --max-time 30 --noproxy '' -w ' %%{http_code}' http://127.0.0.1:%d/metrics", port)).stdout
	}
	if out := get(other); !strings.Contains(out, "host server reached") || !strings.HasSuffix(out, " 200") {
		t.Fatalf("the host server on a listed loopback port: %q, want it reached", out)
	}
	for _, port := range []int{api, metrics} {
		if out := get(port); !strings.HasSuffix(out, " 403") || !strings.Contains(out, "the daemon's own listener") {
			t.Errorf("the daemon's port %d through the proxy: %q, want 403 naming the daemon's own listener", port, out)
		}
	}
}
