package main

// This file is the egress proxy: EgressAccept runs an HTTP proxy on
// loopback inside the sandbox (gVisor's netstack serves loopback even with
// --network=none), and EgressRelay carries each of its connections to the
// daemon, which decides and dials. A client names its destination with
// CONNECT host:port (a tunnel, for HTTPS) or a plain HTTP request with an
// absolute URI; the proxy announces it on the EgressAccept stream, waits
// for the daemon's verdict on an EgressRelay stream, and then either
// answers 403 or relays the connection's bytes both ways. One request per
// plain HTTP connection: keep-alive to the proxy is not supported.
//
// EgressAccept sends its response headers once the proxy listens. A second
// EgressAccept replaces the first: the old proxy stops (its stream
// ends with ABORTED, its connections close) and the new one listens. A
// restarted daemon (resync.go) thus gets the proxy back even if the old
// connection's stream has not noticed its end yet.
//
// Everything a client sends is untrusted: the request head is read with a
// size limit and a deadline, and the number of connections is bounded.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "github.com/sandboxd/sandboxd/proto/agent/v1"
)

// maxEgressHeader bounds a client's request line and headers: 64 KiB is
// twice what nginx accepts by default (four buffers of 8 KiB), so a real
// client never hits it, and a hostile one cannot make the agent buffer more.
const maxEgressHeader = 64 << 10

// egressHeaderTimeout bounds how long a client may take to send its
// request head, so an idle connection does not hold a slot for ever.
const egressHeaderTimeout = 30 * time.Second

// egressVerdictTimeout bounds the wait for the daemon's verdict on an
// announced connection; the client then gets 504 Gateway Timeout. The
// daemon resolves and checks a name well within it, and a client's own
// connect timeout is typically of this order.
const egressVerdictTimeout = 30 * time.Second

// maxEgressFrame is the most data one EgressFrame from the agent carries:
// large enough that a bulk transfer costs few messages, small enough to
// stay far below the gRPC message limit and the flow-control window.
const maxEgressFrame = 32 << 10

// maxEgressConns bounds the proxy's connections at a time (reading their
// head, waiting for a verdict, or relaying): each costs a goroutine and a
// daemon-side stream, and sandboxed code may open them in a loop. Browsers
// use 6 per host; 256 leaves room for parallel downloads of many hosts.
const maxEgressConns = 256

// egressLingerTimeout and maxEgressLinger bound the discard of a client's
// unread bytes after an error response: closing a socket with unread data
// resets it, and the reset can destroy the response before the client
// reads it.
const (
	egressLingerTimeout = time.Second
	maxEgressLinger     = 256 << 10
)

// egressAcceptBackoff is the pause after a failed accept other than the
// listener's close (EMFILE when sandboxed code exhausts the descriptors):
// such failures pass, so the proxy retries instead of ending egress.
const egressAcceptBackoff = 50 * time.Millisecond

// maxEgressHost is the longest destination host accepted: a DNS name has at
// most 253 characters, and IP literals are shorter.
const maxEgressHost = 253

// connectEstablished answers an allowed CONNECT; the tunnel starts after it.
const connectEstablished = "HTTP/1.1 200 Connection established\r\n\r\n"

// errEgressReplaced ends the stream of an EgressAccept a newer one replaced.
var errEgressReplaced = status.Error(codes.Aborted, "a newer EgressAccept replaced this one")

// egress is the state shared by EgressAccept and EgressRelay. Its zero value
// is ready to use.
type egress struct {
	// listen opens the proxy's listener; nil listens on loopback at
	// EgressProxyPort. Tests listen on a free port instead.
	listen func() (*net.TCPListener, error)
	// verdictTimeout replaces egressVerdictTimeout when positive (tests).
	verdictTimeout time.Duration

	mu sync.Mutex
	// proxy is the running proxy, or nil.
	proxy *egressProxy
	// lastID is the last connection ID given out. IDs are never reused,
	// even across EgressAccepts, so a stale relay cannot claim a new
	// connection.
	lastID uint64
	// pending holds the announced connections that await a verdict.
	pending map[uint64]*egressConn
}

// egressProxy is one EgressAccept's proxy.
type egressProxy struct {
	e      *egress
	ctx    context.Context // ends when the proxy stops
	cancel context.CancelCauseFunc
	stream grpc.ServerStreamingServer[agentv1.EgressConnection]
	// sendMu serializes announcements, which the connections make from
	// their own goroutines.
	sendMu sync.Mutex
	// slots holds a token per open connection (maxEgressConns).
	slots chan struct{}
	// stopped is closed once the listener is closed, so a replacement can
	// listen on the same address.
	stopped chan struct{}
}

// egressConn is a client connection to the proxy.
type egressConn struct {
	p    *egressProxy
	conn *net.TCPConn
	id   uint64
	// claimed is closed when an EgressRelay takes the connection over.
	claimed chan struct{}
	// connect tells a CONNECT tunnel from a forwarded plain HTTP request.
	connect bool
	// head is what goes to the destination before the client's further
	// bytes: the rewritten request head of a plain HTTP request, and what
	// the client sent after its head.
	head      []byte
	closeOnce sync.Once
	// unwatch stops closing the connection when the proxy stops.
	unwatch func() bool
}

// egressRequest is a client's checked first request.
type egressRequest struct {
	host   string
	port   uint32
	method string
	// head is the rewritten request head of a plain HTTP request; nil for
	// CONNECT.
	head []byte
}

// errorAnswer is an HTTP error answer for a client: its status code and
// the text of its body.
type errorAnswer struct {
	code int
	msg  string
}

// EgressAccept runs the egress proxy until the stream ends or a newer
// EgressAccept replaces it, announcing each connection a client opens.
func (s *server) EgressAccept(_ *agentv1.EgressAcceptRequest, stream grpc.ServerStreamingServer[agentv1.EgressConnection]) error {
	return s.egress.accept(stream)
}

// EgressRelay takes over the connection the daemon's first frame names:
// it answers 403 if the frame denies it, else relays its bytes both ways.
func (s *server) EgressRelay(stream grpc.BidiStreamingServer[agentv1.EgressFrame, agentv1.EgressFrame]) error {
	first, err := stream.Recv()
	if err == io.EOF {
		return status.Error(codes.InvalidArgument, "the stream ended before its first frame")
	}
	if err != nil {
		return err
	}
	if first.GetId() == 0 {
		return status.Error(codes.InvalidArgument, "the first frame must name a connection (id)")
	}
	c := s.egress.claim(first.GetId())
	if c == nil {
		return status.Errorf(codes.NotFound, "no connection %d awaits a verdict", first.GetId())
	}
	defer c.close()
	if !first.GetAllowed() {
		reason := first.GetReason()
		if reason == "" {
			reason = "denied"
		}
		c.reject(http.StatusForbidden, reason)
		return nil
	}
	return c.relay(stream, first)
}

// accept runs a proxy for stream, replacing the running one, until the
// stream ends or a newer one replaces it.
func (e *egress) accept(stream grpc.ServerStreamingServer[agentv1.EgressConnection]) error {
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	p := &egressProxy{e: e, ctx: ctx, cancel: cancel, stream: stream,
		slots: make(chan struct{}, maxEgressConns), stopped: make(chan struct{})}
	// Deferred first, so it runs last: after the listener's close.
	defer close(p.stopped)
	e.mu.Lock()
	old := e.proxy
	e.proxy = p
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		if e.proxy == p {
			e.proxy = nil
		}
		e.mu.Unlock()
	}()
	if old != nil {
		old.cancel(errEgressReplaced)
		<-old.stopped
	}
	lis, err := e.listener()
	if err != nil {
		return status.Errorf(codes.Unavailable, "starting the egress proxy: %v", err)
	}
	// The response headers tell the daemon that the proxy listens: it
	// hands the sandbox to its client (or resumes it) only then, so that
	// the client's first request finds the proxy.
	if err := stream.SendHeader(nil); err != nil {
		lis.Close()
		return err
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.acceptLoop(lis, &wg) })
	<-ctx.Done()
	lis.Close()
	wg.Wait()
	return causeStatus(ctx)
}

// causeStatus is the gRPC status of why ctx ended: its cause if that is a
// status (errEgressReplaced, a relay's failure), else CANCELLED or
// DEADLINE_EXCEEDED.
func causeStatus(ctx context.Context) error {
	cause := context.Cause(ctx)
	if _, ok := status.FromError(cause); ok {
		return cause
	}
	return status.FromContextError(cause).Err()
}

// listener opens the proxy's listener.
func (e *egress) listener() (*net.TCPListener, error) {
	if e.listen != nil {
		return e.listen()
	}
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(agentv1.EgressProxyPort_EGRESS_PROXY_PORT_DEFAULT)}
	lis, err := net.ListenTCP("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	return lis, nil
}

// verdictWait is how long a connection waits for its verdict.
func (e *egress) verdictWait() time.Duration {
	if e.verdictTimeout > 0 {
		return e.verdictTimeout
	}
	return egressVerdictTimeout
}

// register gives c the next ID and makes it await a verdict.
func (e *egress) register(c *egressConn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lastID++
	c.id = e.lastID
	c.claimed = make(chan struct{})
	if e.pending == nil {
		e.pending = make(map[uint64]*egressConn)
	}
	e.pending[c.id] = c
}

// unregister stops connection id from awaiting a verdict, and reports
// whether it still did (else an EgressRelay has claimed it).
func (e *egress) unregister(id uint64) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.pending[id]
	delete(e.pending, id)
	return ok
}

// claim hands connection id, if it awaits a verdict, to the caller.
func (e *egress) claim(id uint64) *egressConn {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.pending[id]
	if c != nil {
		delete(e.pending, id)
		close(c.claimed)
	}
	return c
}

// acceptLoop serves lis's connections, each in a goroutine of wg, until
// lis closes.
func (p *egressProxy) acceptLoop(lis *net.TCPListener, wg *sync.WaitGroup) {
	for {
		conn, err := lis.AcceptTCP()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(egressAcceptBackoff):
			}
			continue
		}
		select {
		case p.slots <- struct{}{}:
			wg.Go(func() { p.serve(conn) })
		default:
			// A new connection's send buffer is empty: this small write
			// does not block.
			_ = writeErrorAnswer(conn, http.StatusServiceUnavailable, fmt.Sprintf("more than %d connections at a time", maxEgressConns))
			conn.Close()
		}
	}
}

// serve reads a connection's request, announces it, and waits until an
// EgressRelay claims it, answering 504 if none does in time.
func (p *egressProxy) serve(conn *net.TCPConn) {
	c := &egressConn{p: p, conn: conn}
	c.unwatch = context.AfterFunc(p.ctx, func() { conn.Close() })
	req, head, bad := readEgressRequest(conn)
	if bad != nil {
		c.reject(bad.code, bad.msg)
		c.close()
		return
	}
	c.connect, c.head = req.method == http.MethodConnect, head
	p.e.register(c)
	if err := p.announce(c.id, req); err != nil {
		if p.e.unregister(c.id) {
			c.close()
		}
		return
	}
	wait := p.e.verdictWait()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-c.claimed:
	case <-timer.C:
		if p.e.unregister(c.id) {
			c.reject(http.StatusGatewayTimeout, fmt.Sprintf("no verdict from sandboxd within %v", wait))
			c.close()
		}
	case <-p.ctx.Done():
		if p.e.unregister(c.id) {
			c.close()
		}
	}
}

// announce sends connection id's destination on the EgressAccept stream.
func (p *egressProxy) announce(id uint64, req *egressRequest) error {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	return p.stream.Send(&agentv1.EgressConnection{Id: id, Host: req.host, Port: req.port, Method: req.method})
}

// relay carries an allowed connection: the CONNECT answer to the client,
// then its head and bytes to the daemon, and the daemon's bytes back, until
// both sides have sent eof or either fails.
func (c *egressConn) relay(stream grpc.BidiStreamingServer[agentv1.EgressFrame, agentv1.EgressFrame], first *agentv1.EgressFrame) error {
	ctx, cancel := context.WithCancelCause(c.p.ctx)
	defer cancel(nil)
	// Closing the connection unblocks the client reads and writes when the
	// daemon's side fails or the proxy stops.
	context.AfterFunc(ctx, func() { c.conn.Close() })
	if c.connect {
		if _, err := io.WriteString(c.conn, connectEstablished); err != nil {
			return status.Errorf(codes.Aborted, "answering the client: %v", err)
		}
	}
	if err := sendEgressData(stream, c.head); err != nil {
		return err
	}
	down := make(chan struct{})
	go func() {
		defer close(down)
		if err := c.toClient(stream, first); err != nil {
			cancel(err)
		}
	}()
	buf := make([]byte, maxEgressFrame)
	for {
		n, err := c.conn.Read(buf)
		if n > 0 {
			// A fresh slice: gRPC may use a sent message after Send returns.
			if err := stream.Send(&agentv1.EgressFrame{Data: bytes.Clone(buf[:n])}); err != nil {
				return err
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return causeStatus(ctx)
			}
			return status.Errorf(codes.Aborted, "reading from the client: %v", err)
		}
	}
	if err := stream.Send(&agentv1.EgressFrame{Eof: true}); err != nil {
		return err
	}
	// If the relay fails meanwhile, toClient may still be blocked in Recv;
	// that returns once this handler has, since that ends the stream.
	select {
	case <-down:
	case <-ctx.Done():
	}
	if ctx.Err() != nil {
		return causeStatus(ctx)
	}
	return nil
}

// toClient writes the daemon's data, starting with its first frame's, to
// the client until the daemon's eof (or the end of its sending), then
// half-closes the client connection.
func (c *egressConn) toClient(stream grpc.BidiStreamingServer[agentv1.EgressFrame, agentv1.EgressFrame], f *agentv1.EgressFrame) error {
	for {
		if data := f.GetData(); len(data) > 0 {
			if _, err := c.conn.Write(data); err != nil {
				return status.Errorf(codes.Aborted, "writing to the client: %v", err)
			}
		}
		if f.GetEof() {
			break
		}
		var err error
		f, err = stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := c.conn.CloseWrite(); err != nil {
		return status.Errorf(codes.Aborted, "half-closing the client connection: %v", err)
	}
	return nil
}

// reject answers the client with an HTTP error and lingers: it half-closes
// the connection and discards what the client still sends, for a bounded
// time and size, so that the close does not reset the connection before
// the client has read the answer. Errors are the client's problem: it gets
// the answer or a closed connection.
func (c *egressConn) reject(code int, msg string) {
	_ = c.conn.SetDeadline(time.Now().Add(egressLingerTimeout))
	if writeErrorAnswer(c.conn, code, msg) != nil {
		return
	}
	_ = c.conn.CloseWrite()
	_, _ = io.CopyN(io.Discard, c.conn, maxEgressLinger)
}

// close closes the client connection and frees its slot; it may be called
// more than once.
func (c *egressConn) close() {
	c.closeOnce.Do(func() {
		c.unwatch()
		c.conn.Close()
		<-c.p.slots
	})
}

// writeErrorAnswer writes an HTTP error answer with msg as its text body.
func writeErrorAnswer(w io.Writer, code int, msg string) error {
	body := "sandboxd egress: " + msg + "\n"
	_, err := fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		code, http.StatusText(code), len(body), body)
	return err
}

// sendEgressData sends data to the daemon in frames of at most
// maxEgressFrame bytes.
func sendEgressData(stream grpc.BidiStreamingServer[agentv1.EgressFrame, agentv1.EgressFrame], data []byte) error {
	for len(data) > 0 {
		n := min(len(data), maxEgressFrame)
		if err := stream.Send(&agentv1.EgressFrame{Data: data[:n]}); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// readEgressRequest reads a client's request head, within maxEgressHeader
// and egressHeaderTimeout, and checks its destination. It returns what goes
// to the destination first: for a plain HTTP request the rewritten head,
// then whatever the client sent after its head (the start of a body, or
// of a tunnel's first bytes).
func readEgressRequest(conn *net.TCPConn) (*egressRequest, []byte, *errorAnswer) {
	// Failing, the deadline fails the read too: the connection is closed.
	_ = conn.SetReadDeadline(time.Now().Add(egressHeaderTimeout))
	lr := &io.LimitedReader{R: conn, N: maxEgressHeader}
	br := bufio.NewReader(lr)
	req, err := http.ReadRequest(br)
	if err != nil {
		var ne net.Error
		switch {
		case lr.N == 0:
			return nil, nil, &errorAnswer{http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("request head larger than %d KiB", maxEgressHeader>>10)}
		case errors.As(err, &ne) && ne.Timeout():
			return nil, nil, &errorAnswer{http.StatusRequestTimeout, fmt.Sprintf("no complete request head within %v", egressHeaderTimeout)}
		default:
			return nil, nil, &errorAnswer{http.StatusBadRequest, "malformed request"}
		}
	}
	_ = conn.SetReadDeadline(time.Time{})
	r, bad := egressTarget(req)
	if bad != nil {
		return nil, nil, bad
	}
	rest, _ := br.Peek(br.Buffered())
	return r, append(r.head, rest...), nil
}

// egressTarget checks a request's destination: a CONNECT's authority, or a
// plain HTTP request's absolute http:// URI, whose head it rewrites.
func egressTarget(req *http.Request) (*egressRequest, *errorAnswer) {
	if req.ProtoMajor != 1 {
		return nil, &errorAnswer{http.StatusHTTPVersionNotSupported, "only HTTP/1.x"}
	}
	if req.Method == http.MethodConnect {
		// The request target must be exactly host:port, no user or path.
		if req.RequestURI != req.URL.Host {
			return nil, &errorAnswer{http.StatusBadRequest, "CONNECT needs host:port"}
		}
		host, port, err := net.SplitHostPort(req.URL.Host)
		if err != nil {
			return nil, &errorAnswer{http.StatusBadRequest, "CONNECT needs host:port"}
		}
		return checkedTarget(req.Method, host, port, nil)
	}
	u := req.URL
	switch {
	case u.Scheme == "":
		return nil, &errorAnswer{http.StatusBadRequest, "this is a proxy: send CONNECT host:port, or a request with an absolute URI (GET http://host/path)"}
	case u.Scheme != "http":
		return nil, &errorAnswer{http.StatusBadRequest, fmt.Sprintf("only http:// URIs are forwarded; use CONNECT for %s", u.Scheme)}
	case u.Host == "" || u.Opaque != "":
		return nil, &errorAnswer{http.StatusBadRequest, "the URI has no host"}
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	return checkedTarget(req.Method, u.Hostname(), port, rewriteHead(req))
}

// checkedTarget checks a destination's host and port.
func checkedTarget(method, host, port string, head []byte) (*egressRequest, *errorAnswer) {
	if !validEgressHost(host) {
		return nil, &errorAnswer{http.StatusBadRequest, "invalid destination host"}
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return nil, &errorAnswer{http.StatusBadRequest, "the destination port must be 1-65535"}
	}
	return &egressRequest{host: host, port: uint32(n), method: method, head: head}, nil
}

// validEgressHost reports whether host can be a DNS name or an IPv6
// literal (without brackets or zone): the daemon gets nothing else to check.
func validEgressHost(host string) bool {
	if host == "" || len(host) > maxEgressHost {
		return false
	}
	if strings.Contains(host, ":") {
		addr, err := netip.ParseAddr(host)
		return err == nil && addr.Is6() && addr.Zone() == ""
	}
	for _, r := range host {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '.', r == '-', r == '_':
		default:
			return false
		}
	}
	return true
}

// hopHeaders are the headers for the proxy, not the destination; the
// rewritten head drops them and says Connection: close itself.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Proxy-Authorization", "Keep-Alive"}

// rewriteHead writes a plain HTTP request's head for its destination: in
// origin form, with Host set to the URI's authority (the name the daemon
// checks, whatever Host the client sent), without the proxy's headers, and
// with Connection: close, since the proxy forwards one request per
// connection. The body's framing stays as the client sent it (net/http has
// rejected ambiguous framing), so the body follows raw.
func rewriteHead(req *http.Request) []byte {
	h := req.Header
	h.Del("Host")
	for _, name := range hopHeaders {
		h.Del(name)
	}
	// ReadRequest takes a chunked Transfer-Encoding out of the header.
	if len(req.TransferEncoding) > 0 {
		h.Set("Transfer-Encoding", strings.Join(req.TransferEncoding, ", "))
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/%d.%d\r\nHost: %s\r\n", req.Method, req.URL.RequestURI(), req.ProtoMajor, req.ProtoMinor, req.URL.Host)
	_ = h.Write(&b) // a bytes.Buffer does not fail
	b.WriteString("Connection: close\r\n\r\n")
	return b.Bytes()
}
