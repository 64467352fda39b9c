package main

// This file tests the egress proxy (egress.go) in-process: the agent's gRPC
// server on pipes, as in a sandbox, with its proxy on a free loopback port.
// The test plays the daemon (it reads the announcements, gives verdicts and
// relays allowed connections to real servers) and the sandboxed client.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	agentv1 "github.com/sandboxd/sandboxd/proto/agent/v1"
	"github.com/sandboxd/sandboxd/runtime/stdioconn"
)

// egressWait bounds every wait of these tests for the proxy.
const egressWait = 10 * time.Second

// egressAgent is an in-process agent server and a client for it.
type egressAgent struct {
	agentv1.AgentServiceClient
	srv *server
	// addrs receives the proxy's address each time it listens.
	addrs chan string
}

// startEgressAgent serves an agent on pipes, its proxy listening on a free
// loopback port instead of EgressProxyPort.
func startEgressAgent(t *testing.T) *egressAgent {
	t.Helper()
	a := &egressAgent{srv: &server{}, addrs: make(chan string, 8)}
	a.srv.egress.listen = func() (*net.TCPListener, error) {
		lis, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err == nil {
			a.addrs <- lis.Addr().String()
		}
		return lis, err
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(maxMessage), grpc.MaxSendMsgSize(maxMessage))
	agentv1.RegisterAgentServiceServer(gs, a.srv)
	go func() { _ = gs.Serve(stdioconn.NewListener(inR, outW)) }()
	cc, _ := dialPipes(t, outR, inW)
	a.AgentServiceClient = agentv1.NewAgentServiceClient(cc)
	t.Cleanup(func() {
		cc.Close()
		gs.Stop()
		for _, f := range []*os.File{inR, inW, outR, outW} {
			f.Close()
		}
	})
	return a
}

// accept opens an EgressAccept and returns its stream, the proxy's address
// once it listens, and the stream's cancel.
func (a *egressAgent) accept(t *testing.T) (agentv1.AgentService_EgressAcceptClient, string, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	acc, err := a.EgressAccept(ctx, &agentv1.EgressAcceptRequest{})
	if err != nil {
		t.Fatalf("EgressAccept: %v", err)
	}
	select {
	case addr := <-a.addrs:
		return acc, addr, cancel
	case <-time.After(egressWait):
		t.Fatal("the proxy did not listen")
		return nil, "", nil
	}
}

// verdict decides an announced connection: allowed, or not and why.
type verdict func(*agentv1.EgressConnection) (bool, string)

func allowAll(*agentv1.EgressConnection) (bool, string) { return true, "" }

// daemon answers every connection announced on acc as the daemon would,
// relaying the allowed ones to their destination, and passes the
// announcements on in order.
func (a *egressAgent) daemon(acc agentv1.AgentService_EgressAcceptClient, decide verdict) <-chan *agentv1.EgressConnection {
	seen := make(chan *agentv1.EgressConnection, 16)
	go func() {
		defer close(seen)
		for {
			c, err := acc.Recv()
			if err != nil {
				return
			}
			seen <- c
			allowed, reason := decide(c)
			go a.relay(context.Background(), c, allowed, reason)
		}
	}()
	return seen
}

// relay opens c's EgressRelay with the verdict and, if allowed, dials c's
// destination and pumps bytes until both directions end or ctx does.
// Failures show in what the client gets.
func (a *egressAgent) relay(ctx context.Context, c *agentv1.EgressConnection, allowed bool, reason string) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	st, err := a.EgressRelay(ctx)
	if err != nil {
		return
	}
	var up net.Conn
	if allowed {
		if up, err = net.Dial("tcp", net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))); err != nil {
			allowed, reason = false, err.Error()
		} else {
			defer up.Close()
		}
	}
	if err := st.Send(&agentv1.EgressFrame{Id: c.Id, Allowed: allowed, Reason: reason}); err != nil || !allowed {
		_ = st.CloseSend()
		_, _ = st.Recv()
		return
	}
	pump(st, up.(*net.TCPConn))
}

// pump relays between st and up, with eof as half-close, until both
// directions have ended and the agent has ended the stream (cancelling it
// earlier could drop the last frames sent).
func pump(st agentv1.AgentService_EgressRelayClient, up *net.TCPConn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer up.CloseWrite()
		for {
			f, err := st.Recv()
			if err != nil {
				return
			}
			if _, err := up.Write(f.Data); err != nil {
				return
			}
			if f.Eof {
				_ = up.CloseWrite()
			}
		}
	}()
	buf := make([]byte, maxEgressFrame)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			if st.Send(&agentv1.EgressFrame{Data: bytes.Clone(buf[:n])}) != nil {
				break
			}
		}
		if err != nil {
			_ = st.Send(&agentv1.EgressFrame{Eof: true})
			break
		}
	}
	_ = st.CloseSend()
	<-done
}

// proxyClient is an http.Client that goes through the proxy at addr and
// trusts ts's certificate.
func proxyClient(t *testing.T, addr string, ts *httptest.Server) *http.Client {
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: addr})}
	if ts != nil && ts.TLS != nil {
		tr.TLSClientConfig = ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: egressWait}
}

// proxyConn is a client's connection to the proxy, read through the buffer
// that read the proxy's answer.
type proxyConn struct {
	*net.TCPConn
	br *bufio.Reader
}

func (c *proxyConn) Read(p []byte) (int, error) { return c.br.Read(p) }

// rawRequest sends raw to the proxy at addr and reads the answer to a
// request of method (and its body, unless it opens a tunnel); the
// connection stays open for the caller.
func rawRequest(t *testing.T, addr, method, raw string) (*http.Response, string, *proxyConn) {
	t.Helper()
	conn, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(egressWait))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatalf("writing the request: %v", err)
	}
	pc := &proxyConn{TCPConn: conn, br: bufio.NewReader(conn)}
	resp, err := http.ReadResponse(pc.br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	if method == http.MethodConnect && resp.StatusCode == http.StatusOK {
		return resp, "", pc
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer's body: %v", err)
	}
	return resp, string(body), pc
}

// hostPort splits a test server's URL into its host and port.
func hostPort(t *testing.T, rawURL string) (string, uint32) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.ParseUint(u.Port(), 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	return u.Hostname(), uint32(port)
}

// next returns the next announcement.
func next(t *testing.T, seen <-chan *agentv1.EgressConnection) *agentv1.EgressConnection {
	t.Helper()
	select {
	case c, ok := <-seen:
		if !ok {
			t.Fatal("the EgressAccept stream ended")
		}
		return c
	case <-time.After(egressWait):
		t.Fatal("no connection was announced")
		return nil
	}
}

// wantAnnounced checks an announcement's destination and method.
func wantAnnounced(t *testing.T, c *agentv1.EgressConnection, host string, port uint32, method string) {
	t.Helper()
	if c.Host != host || c.Port != port || c.Method != method {
		t.Fatalf("announced %s %s:%d, want %s %s:%d", c.Method, c.Host, c.Port, method, host, port)
	}
}

// echoServer serves TCP connections that echo what they read until EOF,
// then close.
func echoServer(t *testing.T) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_, _ = io.Copy(conn, conn)
			}()
		}
	}()
	return lis.Addr().String()
}

// TestEgressConnectTLS guarantees that HTTPS works through the proxy end to
// end: the client's CONNECT is announced with its destination, and the
// tunnel carries TLS to the server and back.
func TestEgressConnectTLS(t *testing.T) {
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls %s", r.URL.Path)
	}))
	defer ts.Close()
	a := startEgressAgent(t)
	acc, addr, _ := a.accept(t)
	seen := a.daemon(acc, allowAll)

	resp, err := proxyClient(t, addr, ts).Get(ts.URL + "/secret")
	if err != nil {
		t.Fatalf("GET through the proxy: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "tls /secret" {
		t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, "tls /secret")
	}
	host, port := hostPort(t, ts.URL)
	wantAnnounced(t, next(t, seen), host, port, http.MethodConnect)
}

// seenRequest is what an upstream server saw of a request.
type seenRequest struct {
	uri, host string
	header    http.Header
	close     bool
	body      string
}

// recordingServer answers "ok" to every request and passes on what it saw.
func recordingServer(t *testing.T) (*httptest.Server, <-chan seenRequest) {
	seen := make(chan seenRequest, 8)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen <- seenRequest{uri: r.RequestURI, host: r.Host, header: r.Header, close: r.Close, body: string(body)}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(ts.Close)
	return ts, seen
}

// TestEgressPlainHTTP guarantees that a plain HTTP request through the
// proxy reaches its server in origin form, with the URI's authority as its
// Host (whatever Host the client sent, so the server sees the checked
// name), without the proxy's headers and with Connection: close, and that
// the proxy closes the connection after the answer.
func TestEgressPlainHTTP(t *testing.T) {
	ts, upstream := recordingServer(t)
	a := startEgressAgent(t)
	acc, addr, _ := a.accept(t)
	seen := a.daemon(acc, allowAll)
	host, port := hostPort(t, ts.URL)
	authority := net.JoinHostPort(host, strconv.Itoa(int(port)))

	resp, err := proxyClient(t, addr, nil).Get(ts.URL + "/path?q=1")
	if err != nil {
		t.Fatalf("GET through the proxy: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Fatalf("got %d %q, want 200 ok", resp.StatusCode, body)
	}
	wantAnnounced(t, next(t, seen), host, port, http.MethodGet)
	if r := <-upstream; r.uri != "/path?q=1" || r.host != authority || !r.close {
		t.Fatalf("the server saw %q, Host %q, close %v; want /path?q=1, %q, true", r.uri, r.host, r.close, authority)
	}

	raw := "GET http://" + authority + "/raw?x=1 HTTP/1.1\r\nHost: other.example\r\nProxy-Connection: keep-alive\r\n" +
		"Proxy-Authorization: Basic Zm9vOmJhcg==\r\nConnection: keep-alive\r\nX-Kept: yes\r\n\r\n"
	resp, body2, conn := rawRequest(t, addr, http.MethodGet, raw)
	if resp.StatusCode != http.StatusOK || body2 != "ok" {
		t.Fatalf("got %d %q, want 200 ok", resp.StatusCode, body2)
	}
	wantAnnounced(t, next(t, seen), host, port, http.MethodGet)
	r := <-upstream
	if r.uri != "/raw?x=1" || r.host != authority || !r.close {
		t.Fatalf("the server saw %q, Host %q, close %v; want /raw?x=1, %q, true", r.uri, r.host, r.close, authority)
	}
	for _, h := range []string{"Proxy-Connection", "Proxy-Authorization"} {
		if v, ok := r.header[h]; ok {
			t.Errorf("the server got %s: %q", h, v)
		}
	}
	if r.header.Get("X-Kept") != "yes" {
		t.Errorf("the server lost X-Kept: %v", r.header)
	}
	if n, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the answer the connection read %d, %v; want EOF", n, err)
	}
}

// TestEgressDenied guarantees that a denied connection, plain or CONNECT,
// gets 403 with the daemon's reason and nothing reaches its destination.
func TestEgressDenied(t *testing.T) {
	ts, upstream := recordingServer(t)
	a := startEgressAgent(t)
	acc, addr, _ := a.accept(t)
	const reason = "127.0.0.1 is not in the egress allowlist"
	seen := a.daemon(acc, func(*agentv1.EgressConnection) (bool, string) { return false, reason })

	resp, err := proxyClient(t, addr, nil).Get(ts.URL + "/")
	if err != nil {
		t.Fatalf("GET through the proxy: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "sandboxd egress: " + reason + "\n"; resp.StatusCode != http.StatusForbidden || string(body) != want {
		t.Fatalf("got %d %q, want 403 %q", resp.StatusCode, body, want)
	}
	next(t, seen)

	host, port := hostPort(t, ts.URL)
	connect := fmt.Sprintf("CONNECT %s:%d HTTP/1.1\r\nHost: %[1]s:%[2]d\r\n\r\n", host, port)
	resp, _, _ = rawRequest(t, addr, http.MethodConnect, connect)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("CONNECT got %d, want 403", resp.StatusCode)
	}
	wantAnnounced(t, next(t, seen), host, port, http.MethodConnect)
	select {
	case r := <-upstream:
		t.Fatalf("a denied request reached the server: %+v", r)
	default:
	}
}

// TestEgressRequestBody guarantees that request bodies, with a length or
// chunked, and larger than a frame and the proxy's buffers, arrive intact.
func TestEgressRequestBody(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	}))
	defer ts.Close()
	a := startEgressAgent(t)
	acc, addr, _ := a.accept(t)
	a.daemon(acc, allowAll)
	client := proxyClient(t, addr, nil)

	payload := make([]byte, 1<<20+123)
	rand.Read(payload)
	want := fmt.Sprintf("%d %x", len(payload), sha256.Sum256(payload))
	for name, body := range map[string]io.Reader{
		"content-length": bytes.NewReader(payload),
		"chunked":        io.MultiReader(bytes.NewReader(payload)), // no length: chunked
	} {
		resp, err := client.Post(ts.URL+"/upload", "application/octet-stream", body)
		if err != nil {
			t.Fatalf("%s: POST through the proxy: %v", name, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(got) != want {
			t.Fatalf("%s: got %d %q, want 200 %q", name, resp.StatusCode, got, want)
		}
	}
}

// TestEgressBadRequests guarantees that requests the proxy cannot forward
// (garbage, an oversize head, no absolute URI, a bad destination) get an
// HTTP error and are never announced to the daemon.
func TestEgressBadRequests(t *testing.T) {
	ts, _ := recordingServer(t)
	a := startEgressAgent(t)
	acc, addr, _ := a.accept(t)
	seen := a.daemon(acc, allowAll)

	for _, tc := range []struct {
		name, raw string
		code      int
	}{
		{"garbage", "hello there\r\n\r\n", http.StatusBadRequest},
		{"binary", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", http.StatusBadRequest},
		{"oversize head", "GET http://127.0.0.1:1/ HTTP/1.1\r\nX-Big: " + strings.Repeat("a", maxEgressHeader+1024) + "\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge},
		{"origin form", "GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n", http.StatusBadRequest},
		{"https URI", "GET https://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", http.StatusBadRequest},
		{"bad host", "GET http://exa$mple.com/ HTTP/1.1\r\n\r\n", http.StatusBadRequest},
		{"IPv6 zone", "GET http://[fe80::1%25eth0]/ HTTP/1.1\r\n\r\n", http.StatusBadRequest},
		{"bracketed IPv4 and port", "CONNECT [1.2.3.4:5]:443 HTTP/1.1\r\n\r\n", http.StatusBadRequest},
		{"HTTP/2", "GET http://example.com/ HTTP/2.0\r\n\r\n", http.StatusHTTPVersionNotSupported},
		{"CONNECT without port", "CONNECT example.com HTTP/1.1\r\n\r\n", http.StatusBadRequest},
		{"CONNECT port 0", "CONNECT example.com:0 HTTP/1.1\r\n\r\n", http.StatusBadRequest},
		{"CONNECT port 65536", "CONNECT example.com:65536 HTTP/1.1\r\n\r\n", http.StatusBadRequest},
		{"CONNECT with user", "CONNECT user@example.com:443 HTTP/1.1\r\n\r\n", http.StatusBadRequest},
		{"CONNECT with path", "CONNECT example.com:443/x HTTP/1.1\r\n\r\n", http.StatusBadRequest},
	} {
		resp, body, _ := rawRequest(t, addr, http.MethodGet, tc.raw)
		if resp.StatusCode != tc.code || !strings.HasPrefix(body, "sandboxd egress: ") {
			t.Errorf("%s: got %d %q, want %d", tc.name, resp.StatusCode, body, tc.code)
		}
	}
	// The first announcement is a good request's, made after all the bad
	// ones were answered.
	host, port := hostPort(t, ts.URL)
	resp, err := proxyClient(t, addr, nil).Get(ts.URL + "/")
	if err != nil {
		t.Fatalf("GET through the proxy: %v", err)
	}
	resp.Body.Close()
	wantAnnounced(t, next(t, seen), host, port, http.MethodGet)
}

// TestEgressBracketedIPv6 guarantees that an IPv6 destination is announced
// without its brackets.
func TestEgressBracketedIPv6(t *testing.T) {
	a := startEgressAgent(t)
	acc, addr, _ := a.accept(t)
	seen := a.daemon(acc, func(*agentv1.EgressConnection) (bool, string) { return false, "no" })
	rawRequest(t, addr, http.MethodConnect, "CONNECT [2001:db8::1]:8443 HTTP/1.1\r\n\r\n")
	wantAnnounced(t, next(t, seen), "2001:db8::1", 8443, http.MethodConnect)
	rawRequest(t, addr, http.MethodGet, "GET http://[2001:db8::1]/ HTTP/1.1\r\n\r\n")
	wantAnnounced(t, next(t, seen), "2001:db8::1", 80, http.MethodGet)
}

// TestEgressHalfClose guarantees that a tunnel carries bytes both ways and
// half-closes: the client's end of sending reaches the destination as EOF,
// and the destination's answer still comes back after it.
func TestEgressHalfClose(t *testing.T) {
	echo := echoServer(t)
	a := startEgressAgent(t)
	acc, addr, _ := a.accept(t)
	a.daemon(acc, allowAll)

	resp, _, conn := rawRequest(t, addr, http.MethodConnect, "CONNECT "+echo+" HTTP/1.1\r\n\r\n")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT got %d, want 200", resp.StatusCode)
	}
	payload := bytes.Repeat([]byte("0123456789abcdef"), 10<<10) // several frames
	written := make(chan error, 1)
	go func() {
		_, err := conn.Write(payload)
		if err == nil {
			err = conn.CloseWrite()
		}
		written <- err
	}()
	got, err := io.ReadAll(conn)
	if err := <-written; err != nil {
		t.Fatalf("sending: %v", err)
	}
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("echoed %d bytes (%v), want the %d sent", len(got), err, len(payload))
	}
}

// TestEgressSecondAcceptReplaces guarantees the documented choice: a second
// EgressAccept replaces the first, whose stream ends with ABORTED, and the
// new proxy serves.
func TestEgressSecondAcceptReplaces(t *testing.T) {
	ts, _ := recordingServer(t)
	a := startEgressAgent(t)
	first, _, _ := a.accept(t)
	second, addr, _ := a.accept(t)
	if _, err := first.Recv(); err == nil {
		t.Fatal("the first EgressAccept announced a connection")
	} else {
		wantCode(t, err, codes.Aborted)
	}
	seen := a.daemon(second, allowAll)
	resp, err := proxyClient(t, addr, nil).Get(ts.URL + "/")
	if err != nil {
		t.Fatalf("GET through the new proxy: %v", err)
	}
	resp.Body.Close()
	host, port := hostPort(t, ts.URL)
	wantAnnounced(t, next(t, seen), host, port, http.MethodGet)
}

// TestEgressAcceptHeadersMeanListening guarantees what the daemon waits
// for before it hands a sandbox with egress to its client: EgressAccept's
// response headers arrive only once the proxy listens, so a client's first
// request never finds the port closed.
func TestEgressAcceptHeadersMeanListening(t *testing.T) {
	a := startEgressAgent(t)
	gate := make(chan struct{})
	listen := a.srv.egress.listen
	a.srv.egress.listen = func() (*net.TCPListener, error) {
		<-gate
		return listen()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	acc, err := a.EgressAccept(ctx, &agentv1.EgressAcceptRequest{})
	if err != nil {
		t.Fatal(err)
	}
	headers := make(chan error, 1)
	go func() {
		_, err := acc.Header()
		headers <- err
	}()
	select {
	case err := <-headers:
		t.Fatalf("headers (%v) arrived before the proxy listened", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(gate)
	select {
	case err := <-headers:
		if err != nil {
			t.Fatalf("Header: %v", err)
		}
	case <-time.After(egressWait):
		t.Fatal("no headers once the proxy listened")
	}
	conn, err := net.Dial("tcp", <-a.addrs)
	if err != nil {
		t.Fatalf("the proxy does not accept connections once its headers arrived: %v", err)
	}
	conn.Close()
}

// TestEgressAcceptCancel guarantees that ending the EgressAccept stream
// closes the listener and the proxy's connections, relayed or awaiting a
// verdict.
func TestEgressAcceptCancel(t *testing.T) {
	echo := echoServer(t)
	a := startEgressAgent(t)
	acc, addr, cancel := a.accept(t)

	relayed, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer relayed.Close()
	io.WriteString(relayed, "CONNECT "+echo+" HTTP/1.1\r\n\r\n")
	c, err := acc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	go a.relay(context.Background(), c, true, "")
	_ = relayed.SetDeadline(time.Now().Add(egressWait))
	br := bufio.NewReader(relayed)
	if resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect}); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	pending, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer pending.Close()
	io.WriteString(pending, "CONNECT "+echo+" HTTP/1.1\r\n\r\n")
	if _, err := acc.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()

	for name, conn := range map[string]io.Reader{"relayed": br, "pending": pending} {
		_ = pending.SetReadDeadline(time.Now().Add(egressWait))
		buf := make([]byte, 64)
		for {
			_, err := conn.Read(buf)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the %s connection stayed open", name)
			}
			if err != nil {
				break
			}
		}
	}
	for end := time.Now().Add(egressWait); ; time.Sleep(10 * time.Millisecond) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(end) {
			t.Fatal("the proxy still accepts connections")
		}
	}
}

// TestEgressVerdictTimeout guarantees that a connection the daemon does
// not claim in time gets 504, and cannot be claimed afterwards.
func TestEgressVerdictTimeout(t *testing.T) {
	a := startEgressAgent(t)
	a.srv.egress.verdictTimeout = 100 * time.Millisecond
	acc, addr, _ := a.accept(t)
	resp, body, _ := rawRequest(t, addr, http.MethodGet, "GET http://example.com/ HTTP/1.1\r\n\r\n")
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("got %d %q, want 504", resp.StatusCode, body)
	}
	c, err := acc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	st, err := a.EgressRelay(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&agentv1.EgressFrame{Id: c.Id, Allowed: true}); err != nil {
		t.Fatal(err)
	}
	_, err = st.Recv()
	wantCode(t, err, codes.NotFound)
}

// TestEgressRelayClaims guarantees that an EgressRelay must name a
// connection that awaits a verdict, and that a connection is claimed once.
func TestEgressRelayClaims(t *testing.T) {
	a := startEgressAgent(t)
	acc, addr, _ := a.accept(t)
	open := func(first *agentv1.EgressFrame) error {
		st, err := a.EgressRelay(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(first); err != nil {
			t.Fatal(err)
		}
		_ = st.CloseSend()
		_, err = st.Recv()
		return err
	}
	wantCode(t, open(&agentv1.EgressFrame{Allowed: true}), codes.InvalidArgument)
	wantCode(t, open(&agentv1.EgressFrame{Id: 12345, Allowed: true}), codes.NotFound)

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET http://example.com/ HTTP/1.1\r\n\r\n")
	c, err := acc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := open(&agentv1.EgressFrame{Id: c.Id, Reason: "no"}); err != io.EOF {
		t.Fatalf("the denying relay ended with %v, want a clean end", err)
	}
	wantCode(t, open(&agentv1.EgressFrame{Id: c.Id, Allowed: true}), codes.NotFound)
}

// TestEgressRelayFailureClosesClient guarantees that when the daemon's
// relay stream fails mid-connection, the client's connection closes.
func TestEgressRelayFailureClosesClient(t *testing.T) {
	echo := echoServer(t)
	a := startEgressAgent(t)
	acc, addr, _ := a.accept(t)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "CONNECT "+echo+" HTTP/1.1\r\n\r\n")
	c, err := acc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go a.relay(ctx, c, true, "")
	br := bufio.NewReader(conn)
	_ = conn.SetDeadline(time.Now().Add(egressWait))
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	io.WriteString(conn, "ping")
	got := make([]byte, 4)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "ping" {
		t.Fatalf("the tunnel echoed %q, %v; want ping", got, err)
	}
	cancel()
	if n, err := br.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes after the relay failed, want the connection closed", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the client's connection stayed open after the relay failed")
	}
}

// TestEgressConnectionLimit guarantees that connections beyond
// maxEgressConns at a time get 503 instead of tying up the agent, and that
// a closed connection frees its place.
func TestEgressConnectionLimit(t *testing.T) {
	a := startEgressAgent(t)
	acc, addr, _ := a.accept(t)
	seen := a.daemon(acc, func(*agentv1.EgressConnection) (bool, string) { return false, "no" })
	idle := make([]net.Conn, maxEgressConns)
	for i := range idle {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		idle[i] = conn
	}
	resp, body, _ := rawRequest(t, addr, http.MethodGet, "GET http://example.com/ HTTP/1.1\r\n\r\n")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("got %d %q, want 503", resp.StatusCode, body)
	}
	idle[0].Close()
	for end := time.Now().Add(egressWait); ; time.Sleep(10 * time.Millisecond) {
		resp, _, _ := rawRequest(t, addr, http.MethodGet, "GET http://example.com/ HTTP/1.1\r\n\r\n")
		if resp.StatusCode == http.StatusForbidden {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("still %d after a connection closed", resp.StatusCode)
		}
	}
	wantAnnounced(t, next(t, seen), "example.com", 80, http.MethodGet)
}
