package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandboxd/sandboxd/client"
	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

const (
	// defaultSocket is where sandboxd listens unless told otherwise.
	defaultSocket = "/run/sandboxd/sandboxd.sock"
	// socketEnv names the environment variable that overrides defaultSocket.
	socketEnv = "SANDBOXD_SOCKET"
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
	addrs                  addrList // --socket or --addr, repeatable
	proxy                  string   // --proxy
	token                  string   // --token
	tlsCA, tlsCert, tlsKey string   // --tls-ca, --tls-cert, --tls-key
}

// addrList is a flag that may repeat: each use adds an address.
type addrList []string

func (l *addrList) String() string { return strings.Join(*l, ",") }

func (l *addrList) Set(v string) error {
	if v == "" {
		return errors.New("empty address")
	}
	*l = append(*l, v)
	return nil
}

// merge sets in f the flags that later sets.
func (f *connFlags) merge(later connFlags) {
	if len(later.addrs) > 0 {
		f.addrs = later.addrs
	}
	for _, p := range []struct {
		dst *string
		v   string
	}{{&f.proxy, later.proxy}, {&f.token, later.token},
		{&f.tlsCA, later.tlsCA}, {&f.tlsCert, later.tlsCert}, {&f.tlsKey, later.tlsKey}} {
		if p.v != "" {
			*p.dst = p.v
		}
	}
}

// addGlobalFlags registers on fs the flags that sandboxctl accepts before
// the verb and every verb accepts too, storing them in f.
func addGlobalFlags(fs *flag.FlagSet, f *connFlags) {
	const addrHelp = "`ADDR` of sandboxd: a unix socket PATH, unix:PATH, or HOST:PORT for TCP; repeat it for the nodes of a cluster, " +
		"or give dns:///NAME:PORT to take them from DNS (env " + socketEnv + ", default " + defaultSocket + ")"
	fs.Var(&f.addrs, "socket", addrHelp)
	fs.Var(&f.addrs, "addr", addrHelp+"; the same as --socket")
	fs.StringVar(&f.proxy, "proxy", "", "send every call through the proxy at `HOST:PORT` (deploy/nginx), which routes it to its node by x-sandbox-node")
	fs.StringVar(&f.token, "token", "", "bearer `TOKEN` of your tenant (env "+tokenEnv+", which keeps it out of ps and shell history)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "connect over TLS, trusting the CA certificates in `FILE` (PEM) for the daemon's")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "connect over TLS with the client certificate in `FILE` (PEM; mutual TLS), with --tls-key")
	fs.StringVar(&f.tlsKey, "tls-key", "", "the private key of --tls-cert, a PEM `FILE`")
}

// client returns a client of the daemon (or cluster), connecting on first
// use.
func (c *cli) client() (sandboxv1.SandboxServiceClient, error) {
	if c.conn == nil {
		cfg, err := c.flags.config(os.Getenv(tokenEnv))
		if err != nil {
			return nil, err
		}
		cfg.Addrs = resolveAddrs(c.flags.addrs, os.Getenv(socketEnv))
		cn := &conn{addrs: cfg.Addrs}
		cfg.OnDial = cn.dialed
		cl, err := client.New(cfg)
		if err != nil {
			return nil, usagef("%v", err)
		}
		cn.cl = cl
		c.conn = cn
	}
	return c.conn.cl, nil
}

// config returns the client settings the flags ask for: TLS when --tls-ca
// or --tls-cert is given, and the bearer token (--token, else envToken).
func (f *connFlags) config(envToken string) (client.Config, error) {
	cfg := client.Config{Proxy: f.proxy, Token: f.token}
	if cfg.Token == "" {
		cfg.Token = envToken
	}
	if f.tlsCA != "" || f.tlsCert != "" || f.tlsKey != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if f.tlsCA != "" {
			pem, err := os.ReadFile(f.tlsCA)
			if err != nil {
				return cfg, fmt.Errorf("--tls-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return cfg, fmt.Errorf("--tls-ca %s holds no PEM certificate", f.tlsCA)
			}
			tc.RootCAs = pool
		}
		if (f.tlsCert == "") != (f.tlsKey == "") {
			return cfg, usagef("--tls-cert and --tls-key go together")
		}
		if f.tlsCert != "" {
			cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
			if err != nil {
				return cfg, fmt.Errorf("--tls-cert and --tls-key: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		cfg.TLS = tc
	}
	return cfg, nil
}

// close closes the connections to the daemons, if any.
func (c *cli) close() {
	if c.conn != nil {
		c.conn.cl.Close()
	}
}

// resolveAddrs picks the daemon addresses: the --socket/--addr flags, else
// the SANDBOXD_SOCKET environment variable, else defaultSocket.
func resolveAddrs(flagValues []string, envValue string) []string {
	switch {
	case len(flagValues) > 0:
		return flagValues
	case envValue != "":
		return []string{envValue}
	}
	return []string{defaultSocket}
}

// conn is the client of the daemons and what dialling them went like, so
// that a failed RPC can be told apart as "never reached the daemon".
type conn struct {
	cl    *client.Client
	addrs []string

	mu        sync.Mutex
	connected bool  // some dial succeeded
	dialErr   error // the last failed dial
}

// dialed records the outcome of one connection attempt.
func (c *conn) dialed(_ string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.dialErr = err
	} else {
		c.connected = true
	}
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
	return fmt.Errorf("cannot reach sandboxd at %s: %s", strings.Join(c.addrs, ", "), why)
}
