package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// healthSubcommand names `sandboxd health`.
const healthSubcommand = "health"

// defaultHealthTimeout bounds one health check. The daemon answers from
// memory in well under a millisecond, so two seconds means it is stuck;
// it stays below the timeoutSeconds of the Kubernetes readiness probe that
// runs this check (deploy/kubernetes), so the probe sees this command's
// verdict, not its own timeout.
const defaultHealthTimeout = 2 * time.Second

// healthCheck runs `sandboxd health [--socket PATH] [--service NAME]
// [--timeout D]`: it calls grpc.health.v1.Health/Check on the daemon's
// unix socket and exits 0 only if the answer is SERVING, 1 for any other
// answer or no answer, and 2 on usage errors (0 for -h). It is the
// readiness check of a container that runs the daemon: the unix socket
// needs no TLS and no credentials (health is open), where a TCP check
// would need both. It prints the status on stdout and any failure on
// stderr.
func healthCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sandboxd health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", defaultSocket, "the daemon's unix socket")
	service := fs.String("service", sandboxv1.SandboxService_ServiceDesc.ServiceName, `service whose status to check; "" for the server as a whole`)
	timeout := fs.Duration("timeout", defaultHealthTimeout, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: sandboxd health [--socket PATH] [--service NAME] [--timeout D]\n\n"+
			"Exits 0 if the daemon on the socket reports SERVING, 1 otherwise.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sandboxd: health: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	status, err := healthStatus(ctx, *socket, *service)
	if err != nil {
		fmt.Fprintf(stderr, "sandboxd: health: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, status)
	if status != healthpb.HealthCheckResponse_SERVING {
		return 1
	}
	return 0
}

// healthStatus asks the daemon on the unix socket for service's status.
func healthStatus(ctx context.Context, socket, service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	conn, err := grpc.NewClient("unix:"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, fmt.Errorf("connecting to %s: %w", socket, err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return 0, fmt.Errorf("checking the health of %q on %s: %w", service, socket, err)
	}
	return resp.GetStatus(), nil
}
