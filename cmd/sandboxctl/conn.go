package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

const (
	// defaultSocket is where sandboxd listens unless told otherwise.
	defaultSocket = "/run/sandboxd/sandboxd.sock"
	// socketEnv names the environment variable that overrides defaultSocket.
	socketEnv = "SANDBOXD_SOCKET"
	// maxMessageSize bounds every gRPC message either way; Exec code and
	// stdin are at most 1 MiB each and file chunks are uploadChunkSize; an
	// Exec result with the most figures a policy allows is up to 24 MiB
	// (the daemon's maxSendMessage).
	maxMessageSize = 24 << 20
)

// cli is what a verb runs with: its standard streams and the daemon.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	flags connFlags // how to reach the daemon
	conn  *conn     // dialled on first use
}

// tokenEnv names the environment variable that gives --token: a token on
// the command line shows in ps and shell history.
const tokenEnv = "SANDBOXD_TOKEN"

// connFlags say how to reach and authenticate to the daemon.
type connFlags struct {
	socket                 string // --socket or --addr
	token                  string // --token
	tlsCA, tlsCert, tlsKey string // --tls-ca, --tls-cert, --tls-key
}

// merge sets in f the flags that later sets.
func (f *connFlags) merge(later connFlags) {
	for _, p := range []struct {
		dst *string
		v   string
	}{{&f.socket, later.socket}, {&f.token, later.token},
		{&f.tlsCA, later.tlsCA}, {&f.tlsCert, later.tlsCert}, {&f.tlsKey, later.tlsKey}} {
		if p.v != "" {
			*p.dst = p.v
		}
	}
}

// addGlobalFlags registers on fs the flags that sandboxctl accepts before
// the verb and every verb accepts too, storing them in f.
func addGlobalFlags(fs *flag.FlagSet, f *connFlags) {
	const addrHelp = "`ADDR` of sandboxd: a unix socket PATH, unix:PATH, or HOST:PORT for TCP (env " +
		socketEnv + ", default " + defaultSocket + ")"
	fs.StringVar(&f.socket, "socket", "", addrHelp)
	fs.StringVar(&f.socket, "addr", "", addrHelp+"; the same as --socket")
	fs.StringVar(&f.token, "token", "", "bearer `TOKEN` of your tenant (env "+tokenEnv+", which keeps it out of ps and shell history)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "connect over TLS, trusting the CA certificates in `FILE` (PEM) for the daemon's")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "connect over TLS with the client certificate in `FILE` (PEM; mutual TLS), with --tls-key")
	fs.StringVar(&f.tlsKey, "tls-key", "", "the private key of --tls-cert, a PEM `FILE`")
}

// client returns a client of the daemon, connecting on first use.
func (c *cli) client() (sandboxv1.SandboxServiceClient, error) {
	if c.conn == nil {
		security, err := c.flags.security(os.Getenv(tokenEnv))
		if err != nil {
			return nil, err
		}
		conn, err := dial(parseEndpoint(resolveSocket(c.flags.socket, os.Getenv(socketEnv))), security...)
		if err != nil {
			return nil, err
		}
		c.conn = conn
	}
	return sandboxv1.NewSandboxServiceClient(c.conn.cc), nil
}

// security returns the dial options the flags ask for: TLS when --tls-ca
// or --tls-cert is given, and the bearer token (--token, else envToken)
// on every call.
func (f *connFlags) security(envToken string) ([]grpc.DialOption, error) {
	var opts []grpc.DialOption
	if f.tlsCA != "" || f.tlsCert != "" || f.tlsKey != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if f.tlsCA != "" {
			pem, err := os.ReadFile(f.tlsCA)
			if err != nil {
				return nil, fmt.Errorf("--tls-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--tls-ca %s holds no PEM certificate", f.tlsCA)
			}
			cfg.RootCAs = pool
		}
		if (f.tlsCert == "") != (f.tlsKey == "") {
			return nil, usagef("--tls-cert and --tls-key go together")
		}
		if f.tlsCert != "" {
			cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
			if err != nil {
				return nil, fmt.Errorf("--tls-cert and --tls-key: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	}
	token := f.token
	if token == "" {
		token = envToken
	}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
	}
	return opts, nil
}

// bearer sends a tenant's token as `authorization: Bearer TOKEN`. It is
// allowed without TLS, for the unix socket and loopback TCP; off loopback
// the daemon serves only TLS.
type bearer string

// GetRequestMetadata adds the token to a call.
func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false: see bearer.
func (bearer) RequireTransportSecurity() bool { return false }

// close closes the connection to the daemon, if any.
func (c *cli) close() {
	if c.conn != nil {
		c.conn.cc.Close()
	}
}

// resolveSocket picks the daemon address: the --socket flag, else the
// SANDBOXD_SOCKET environment variable, else defaultSocket.
func resolveSocket(flagValue, envValue string) string {
	switch {
	case flagValue != "":
		return flagValue
	case envValue != "":
		return envValue
	}
	return defaultSocket
}

// endpoint is where the daemon listens.
type endpoint struct {
	network string // "unix" or "tcp"
	address string // socket path or host:port
}

// String returns the address as users write it.
func (e endpoint) String() string { return e.address }

// parseEndpoint reads a daemon address: "unix:PATH" or "unix://PATH" is a
// unix socket, "tcp://HOST:PORT" is TCP; otherwise anything with a slash is
// a socket path, HOST:PORT with a numeric port is TCP, and the rest is a
// socket path.
func parseEndpoint(s string) endpoint {
	if rest, ok := strings.CutPrefix(s, "unix:"); ok {
		if p, ok := strings.CutPrefix(rest, "//"); ok {
			rest = p
		}
		return endpoint{"unix", rest}
	}
	if rest, ok := strings.CutPrefix(s, "tcp://"); ok {
		return endpoint{"tcp", rest}
	}
	if !strings.Contains(s, "/") {
		if _, port, err := net.SplitHostPort(s); err == nil {
			if _, err := strconv.ParseUint(port, 10, 16); err == nil {
				return endpoint{"tcp", s}
			}
		}
	}
	return endpoint{"unix", s}
}

// conn is a connection to the daemon that remembers how dialling went, so
// that a failed RPC can be told apart as "never reached the daemon".
type conn struct {
	ep endpoint
	cc *grpc.ClientConn

	mu        sync.Mutex
	connected bool  // some dial succeeded
	dialErr   error // the last failed dial
}

// dial creates a client connection to ep. Like grpc.NewClient it does not
// connect until the first RPC.
func dial(ep endpoint, security ...grpc.DialOption) (*conn, error) {
	c := &conn{ep: ep}
	target := ep.address
	if ep.network == "unix" {
		abs, err := filepath.Abs(ep.address)
		if err != nil {
			return nil, err
		}
		target = "unix://" + abs
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()), // replaced by TLS in security, if any
		grpc.WithContextDialer(c.dialContext),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(maxMessageSize),
			grpc.MaxCallSendMsgSize(maxMessageSize),
		),
	}, security...)
	cc, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("bad daemon address %q: %v", ep.address, err)
	}
	c.cc = cc
	return c, nil
}

// dialContext opens the transport: the socket path for unix (gRPC's own
// rendering of the address is ignored), the resolved addr for TCP.
func (c *conn) dialContext(ctx context.Context, addr string) (net.Conn, error) {
	address := c.ep.address
	if c.ep.network == "tcp" {
		address = addr
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, c.ep.network, address)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.dialErr = err
	} else {
		c.connected = true
	}
	return nc, err
}

// unreachable returns, when err is the failure of an RPC that never reached
// the daemon, an error that names the address and the likely cause;
// otherwise nil.
func (c *conn) unreachable(err error) error {
	if status.Code(err) != codes.Unavailable {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.connected {
		return nil
	}
	var why string
	switch {
	case c.dialErr == nil:
		why = status.Convert(err).Message()
	case errors.Is(c.dialErr, fs.ErrNotExist), errors.Is(c.dialErr, syscall.ECONNREFUSED):
		why = "is the daemon running? (sudo make run)"
	case errors.Is(c.dialErr, fs.ErrPermission):
		why = "permission denied (run as root or get access to the socket)"
	default:
		why = c.dialErr.Error()
	}
	return fmt.Errorf("cannot reach sandboxd at %s: %s", c.ep, why)
}
