package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/sandboxd/sandboxd/policy"
	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"github.com/sandboxd/sandboxd/runtime/audit"
	"github.com/sandboxd/sandboxd/runtime/cgroups"
	"github.com/sandboxd/sandboxd/runtime/manager"
	"github.com/sandboxd/sandboxd/runtime/metrics"
	"github.com/sandboxd/sandboxd/runtime/pool"
	"github.com/sandboxd/sandboxd/runtime/runsc"
)

// API limits.
const (
	// maxRecvMessage caps one gRPC message from a client: Upload chunks,
	// Exec code (1 MiB) and EditFile's text (4 MiB) fit with room to spare.
	maxRecvMessage = 8 << 20
	// maxSendMessage caps one gRPC message to a client: an Exec result
	// with the most figures a policy allows (16 MiB, policy.MaxImageBytes)
	// and 1,000 reported files fits. Clients must accept as much to get
	// such a result (sandboxctl does); the Go gRPC default is 4 MiB.
	maxSendMessage = 24 << 20
	// gracePeriod is how long shutdown waits for running RPCs before it
	// cancels them and pauses (or destroys) the sandboxes.
	gracePeriod = 5 * time.Second
)

func runDaemon(args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: o.logLevel}))
	if err := o.check(); err != nil {
		return err
	}
	pol := policy.Default()
	if o.policy != "" {
		if o.policy, err = filepath.Abs(o.policy); err != nil {
			return err
		}
		if pol, err = policy.Load(o.policy); err != nil {
			return err
		}
	}
	socket := firstOf(o.socket, pol.Host.Socket, defaultSocket)
	tcp := firstOf(o.listenTCP, pol.Host.ListenTCP)
	metricsAddr := firstOf(o.metricsListen, pol.Host.MetricsListen)
	if err := checkLoopback(metricsAddr, "the metrics listener has no authentication"); err != nil {
		return err
	}
	if err := checkAPIListener(tcp, pol); err != nil {
		return err
	}
	tlsConfig, err := serverTLS(pol.Host.TLS)
	if err != nil {
		return err
	}

	if err := os.MkdirAll(o.stateDir, 0o700); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	unlock, err := lockStateDir(o.stateDir)
	if err != nil {
		return err
	}
	defer unlock()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// The audit log opens before any sandbox boots, so a bad path stops the
	// daemon at once; it closes after the server stopped, with every call's
	// line queued.
	auditor, err := newAuditor(audit.Config{
		Path: firstOf(o.auditLog, pol.Host.AuditLog), MaxBytes: pol.Host.AuditLogMaxBytes, Keep: pol.Host.AuditLogKeep,
	}, metrics.NewRPC(reg), log)
	if err != nil {
		return err
	}
	defer func() {
		if err := auditor.Close(); err != nil {
			log.Error("closing the audit log", "err", err)
		}
	}()
	cg, err := cgroups.NewManager(cgroupParent(o.stateDir))
	if err != nil {
		return fmt.Errorf("setting up cgroups: %w", err)
	}
	var m *manager.Manager
	mx := metrics.New(reg, func() []pool.Status { return m.Pools() })
	m, err = manager.New(ctx, manager.Config{
		Runsc: runsc.Runsc{
			Binary: o.runsc, Root: filepath.Join(o.stateDir, "runsc"),
			Platform: o.platform, Network: "none", LogDir: o.runscLogs,
		},
		StateDir:      o.stateDir,
		DefaultRootfs: o.rootfs,
		AgentBinary:   o.agent,
		Policy:        pol,
		Logger:        log,
		Metrics:       mx,
		Cgroups:       cg,
		EgressAudit:   auditor.Egress,
		Node:          o.nodeAddress,
		Listeners:     tcpListeners(log, tcp, metricsAddr),
	})
	if err != nil {
		return err
	}
	go (&reloader{path: o.policy, log: log, current: pol, apply: m.UpdatePolicy}).run(ctx)

	// WaitForHandlers: Stop returns only once every handler has, so no
	// CreateSandbox is still booting when the manager destroys everything.
	creds := &listenerCreds{}
	if tlsConfig != nil {
		creds.tls = credentials.NewTLS(tlsConfig)
	}
	auth := &authenticator{policy: m.Policy, denied: auditor.Denied}
	// Authentication runs first in both chains: it puts the tenant in the
	// context the audit records, and reports the calls it refuses (which
	// never reach the auditor's interceptors) to auditor.Denied.
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(maxRecvMessage), grpc.MaxSendMsgSize(maxSendMessage), grpc.WaitForHandlers(true),
		grpc.Creds(creds), grpc.ChainUnaryInterceptor(auth.unary, auditor.unary, checkRouteUnary), grpc.ChainStreamInterceptor(auth.stream, auditor.stream, checkRouteStream))
	sandboxv1.RegisterSandboxServiceServer(srv, &server{m: m, node: o.nodeAddress})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	hs.SetServingStatus(sandboxv1.SandboxService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	reflection.Register(srv)

	listeners, err := listen(socket, tcp)
	if err != nil {
		m.Close(context.Background(), !o.destroyOnExit)
		return err
	}
	if metricsAddr != "" {
		stopMetrics, err := serveMetrics(metricsAddr, reg, log)
		if err != nil {
			m.Close(context.Background(), !o.destroyOnExit)
			return err
		}
		defer stopMetrics()
	}
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() { errc <- srv.Serve(l) }()
	}
	log.Info("sandboxd serving", "socket", socket, "tcp", tcp, "node", o.nodeAddress, "metrics", metricsAddr, "policy", pol.Source,
		"runsc", o.runsc, "rootfs", o.rootfs, "state_dir", o.stateDir, "platform", o.platform)

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-errc:
		log.Error("server stopped", "err", err)
	}
	hs.Shutdown()
	stopServer(srv)
	// The policy in force bounds the pauses (host.shutdown_timeout).
	cctx, cancel := context.WithTimeout(context.Background(), m.Policy().Host.ShutdownTimeout)
	defer cancel()
	m.Close(cctx, !o.destroyOnExit)
	os.Remove(socket)
	if errors.Is(err, grpc.ErrServerStopped) {
		err = nil
	}
	return err
}

// tcpListeners resolves the daemon's TCP listen addresses, for the egress
// dialer to refuse: a sandbox must never reach the daemon that runs it.
func tcpListeners(log *slog.Logger, addrs ...string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, a := range addrs {
		if a == "" {
			continue
		}
		ta, err := net.ResolveTCPAddr("tcp", a)
		if err != nil {
			log.Warn("cannot resolve a listen address; the listen step will say why", "addr", a, "err", err)
			continue
		}
		out = append(out, ta.AddrPort())
	}
	return out
}

// stopServer lets running RPCs finish for gracePeriod, then cancels them.
func stopServer(srv *grpc.Server) {
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(gracePeriod):
		srv.Stop()
	}
}

// cgroupParent names the cgroup that holds this daemon's sandboxes, one per
// state directory, so daemons on separate state directories never delete
// each other's groups.
func cgroupParent(stateDir string) string {
	sum := sha256.Sum256([]byte(stateDir))
	return "sandboxd-" + hex.EncodeToString(sum[:5])
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// checkLoopback refuses TCP addresses other than loopback: the API has no
// authentication, so it must not be reachable from other hosts.
func checkLoopback(addr, why string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("listen address %q: only loopback addresses (127.0.0.1, [::1]) are allowed: %s", addr, why)
	}
	return nil
}

// checkAPIListener applies the policy's rule for host.listen_tcp to the
// address the daemon will listen on, which --listen-tcp may set.
func checkAPIListener(addr string, pol *policy.Policy) error {
	if addr == "" {
		return nil
	}
	if msg := pol.APIListenerProblem(addr); msg != "" {
		return fmt.Errorf("API listen address: %s", msg)
	}
	return nil
}
