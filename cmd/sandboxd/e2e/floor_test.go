package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sandboxd/sandboxd/runtime/stdioconn"
)

// floorRequest is the size of the raw round trip's request and answer: about
// an ExecRequest for "pass".
const floorRequest = 64

// BenchmarkPipeFloor measures the floor under the "daemon <-> agent" stage
// of an Exec: one round trip over a sandbox init's stdin/stdout pipes to a
// Go process on one thread (as the agent is), raw (write, read back) and
// as a unary gRPC call over the same pipes. The gap between the two is what
// gRPC costs; the gap between grpc and the Exec trace's stage is the agent's
// own work around the call (scheduling, other goroutines, the kernel
// process sharing the sandbox).
//
//	go test -run '^$' -bench PipeFloor -benchtime 2000x ./cmd/sandboxd/e2e/
func BenchmarkPipeFloor(b *testing.B) {
	requireE2E(b)
	prog := filepath.Join(bins.dir, "pipefloor")
	if err := goBuild(prog, "./testdata/pipefloor"); err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"raw", "grpc"} {
		b.Run(mode, func(b *testing.B) {
			r, w := startFloorSandbox(b, prog, mode)
			var samples []time.Duration
			switch mode {
			case "raw":
				msg, buf := make([]byte, floorRequest), make([]byte, floorRequest)
				for b.Loop() {
					start := time.Now()
					if _, err := w.Write(msg); err != nil {
						b.Fatal(err)
					}
					for got := 0; got < len(buf); {
						n, err := r.Read(buf[got:])
						if err != nil {
							b.Fatal(err)
						}
						got += n
					}
					samples = append(samples, time.Since(start))
				}
			case "grpc":
				conn := stdioconn.New(r, w)
				cc, err := grpc.NewClient("passthrough:///pipefloor",
					grpc.WithTransportCredentials(insecure.NewCredentials()),
					grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return conn, nil }))
				if err != nil {
					b.Fatal(err)
				}
				defer cc.Close()
				health := healthpb.NewHealthClient(cc)
				if _, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
					b.Fatal(err) // the connection's set-up, untimed
				}
				for b.Loop() {
					start := time.Now()
					if _, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
						b.Fatal(err)
					}
					samples = append(samples, time.Since(start))
				}
			}
			reportPercentiles(b, samples)
		})
	}
}

// startFloorSandbox runs prog as the init of a gVisor sandbox on the test
// rootfs, with no network, and returns the far ends of its stdout (read)
// and stdin (write). The sandbox is deleted at the end of the test.
func startFloorSandbox(b *testing.B, prog, mode string) (r, w *os.File) {
	dir := b.TempDir()
	spec := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args: []string{"/pipefloor", mode}, Cwd: "/", Env: []string{"PATH=/usr/bin:/bin"},
			User: specs.User{UID: 65534, GID: 65534}, NoNewPrivileges: true,
		},
		Root: &specs.Root{Path: os.Getenv("SANDBOXD_ROOTFS"), Readonly: true},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/pipefloor", Type: "bind", Source: prog, Options: []string{"bind", "ro"}},
		},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.NetworkNamespace}}},
	}
	data, err := json.Marshal(spec)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		b.Fatal(err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	root, id := filepath.Join(dir, "runsc"), fmt.Sprintf("pipefloor-%s-%d", mode, os.Getpid())
	runsc := func(args ...string) *exec.Cmd {
		return exec.Command(os.Getenv("SANDBOXD_RUNSC"), append([]string{"--root", root, "--network=none"}, args...)...)
	}
	cmd := runsc("run", "--bundle", dir, id)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	inR.Close()
	outW.Close()
	b.Cleanup(func() {
		inW.Close()
		outR.Close()
		_ = runsc("delete", "--force", id).Run()
		_ = cmd.Wait()
		// runsc pins a network namespace in its root (see
		// runtime/manager's cleanup): unmount it so TempDir can go.
		for unix.Unmount(filepath.Join(root, "null-netns"), unix.MNT_DETACH) == nil {
		}
	})
	return outR, inW
}
