package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/sandboxd/sandboxd/runtime/identifiers"
)

// Defaults of the daemon's flags.
const (
	defaultSocket   = "/run/sandboxd/sandboxd.sock"
	defaultStateDir = "/var/lib/sandboxd"
	// agentName is the agent binary's name beside sandboxd (make build puts
	// both in bin/).
	agentName = "sandbox-agent"
)

// options are the daemon's settings from its flags.
type options struct {
	socket        string
	listenTCP     string
	metricsListen string
	policy        string
	stateDir      string
	runsc         string
	rootfs        string
	agent         string
	platform      string
	runscLogs     string
	auditLog      string
	nodeAddress   string
	logLevel      slog.Level
	destroyOnExit bool
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("sandboxd", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: sandboxd [flags]\n       sandboxd check-policy FILE...\n       sandboxd hash-token < TOKEN_FILE\n       sandboxd health [--socket PATH]\n\nflags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.socket, "socket", "", "unix socket to serve on (default: the policy's host.socket, else "+defaultSocket+")")
	fs.StringVar(&o.listenTCP, "listen-tcp", "", "also serve on this loopback TCP address, e.g. 127.0.0.1:7070 (default: the policy's host.listen_tcp)")
	fs.StringVar(&o.metricsListen, "metrics-listen", "", "serve Prometheus metrics at http://ADDR/metrics on a loopback address, e.g. 127.0.0.1:9090 (default: the policy's host.metrics_listen; empty: off)")
	fs.StringVar(&o.policy, "policy", "", "policy file, reloaded on SIGHUP and when it changes (default: the embedded default policy)")
	fs.StringVar(&o.stateDir, "state-dir", defaultStateDir, "directory for the daemon's state (runsc root, bundles); one daemon per directory")
	fs.StringVar(&o.runsc, "runsc", defaultRunsc, "runsc binary (default: the one `make runsc` built)")
	fs.StringVar(&o.rootfs, "rootfs", defaultRootfs, "rootfs directory that templates with `rootfs: default` use (default: the one `make rootfs` built)")
	fs.StringVar(&o.agent, "agent", "", "sandbox agent binary (default: "+agentName+" beside sandboxd)")
	fs.StringVar(&o.platform, "platform", "systrap", "gVisor platform: systrap or ptrace")
	fs.StringVar(&o.runscLogs, "runsc-log-dir", "", "write runsc debug logs here, one file per sandbox and command")
	fs.StringVar(&o.auditLog, "audit-log", "", "append one JSON line per API call to `FILE`, rotated by size (default: the policy's host.audit_log; empty: none)")
	fs.StringVar(&o.nodeAddress, "node-address", "", "`HOST:PORT` clients reach this daemon at, put in every sandbox ID so clients and proxies send each call to its sandbox's node (many nodes; in Kubernetes the node's IP from the Downward API); empty: IDs name no node")
	fs.BoolVar(&o.destroyOnExit, "destroy-on-exit", false, "destroy every sandbox when the daemon stops, instead of pausing them to disk for the next start to adopt")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see sandboxd -h)", fs.Arg(0))
	}
	if o.agent == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the agent beside sandboxd: %w", err)
		}
		o.agent = filepath.Join(filepath.Dir(exe), agentName)
	}
	return o, nil
}

// check verifies that the binaries and the rootfs exist, with a hint on how
// to get them.
func (o *options) check() error {
	switch o.platform {
	case "systrap", "ptrace":
	default:
		return fmt.Errorf("--platform %q: use systrap or ptrace", o.platform)
	}
	if o.nodeAddress != "" {
		if err := identifiers.ValidateNodeAddress(o.nodeAddress); err != nil {
			return fmt.Errorf("--node-address: %w", err)
		}
	}
	var err error
	for _, p := range []*string{&o.runsc, &o.rootfs, &o.agent, &o.stateDir, &o.auditLog} {
		if *p == "" {
			continue
		}
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	if o.runsc == "" {
		return fmt.Errorf("no runsc binary: pass --runsc or build sandboxd with `make build` after `make runsc`")
	}
	if _, err := os.Stat(o.runsc); err != nil {
		return fmt.Errorf("runsc binary: %w (build it with `make runsc`)", err)
	}
	if o.rootfs == "" {
		return fmt.Errorf("no rootfs: pass --rootfs or build sandboxd with `make build` after `make rootfs`")
	}
	if st, err := os.Stat(o.rootfs); err != nil || !st.IsDir() {
		return fmt.Errorf("rootfs %s is not a directory (build it with `make rootfs`)", o.rootfs)
	}
	if _, err := os.Stat(o.agent); err != nil {
		return fmt.Errorf("sandbox agent: %w (build it with `make build`, or pass --agent)", err)
	}
	return nil
}
