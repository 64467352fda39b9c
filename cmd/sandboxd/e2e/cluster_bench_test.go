package e2e

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/client"
	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// BenchmarkClusterPaths measures what many nodes cost a call: a trivial
// Python Exec on one node's sandbox over the unix socket (the baseline),
// through the client over TCP (the metadata it adds, placement not
// involved), and through the nginx proxy of deploy/nginx.
func BenchmarkClusterPaths(b *testing.B) {
	dir, err := os.MkdirTemp("/tmp", "sbd-clbench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	n := startBenchNode(b, dir)
	proxy := startNginx(b, []string{n.addr})
	paths := []struct {
		name string
		cfg  client.Config
	}{
		{"unix", client.Config{Addrs: []string{n.socket}, Token: tokenA}},
		{"tcp", client.Config{Addrs: []string{n.addr}, Token: tokenA}},
		{"nginx", client.Config{Addrs: []string{n.addr}, Proxy: proxy, Token: tokenA}},
	}
	first, err := client.New(paths[0].cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer first.Close()
	sb, err := first.CreateSandbox(context.Background(), &sandboxv1.CreateSandboxRequest{})
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			cl, err := client.New(p.cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			var samples []time.Duration
			for b.Loop() {
				start := time.Now()
				if _, err := execOut(context.Background(), cl, sb.GetSandboxId(), "1"); err != nil {
					b.Fatal(err)
				}
				samples = append(samples, time.Since(start))
			}
			reportPercentiles(b, samples)
		})
	}
}

// BenchmarkNodeExecThroughput measures how many trivial Python Execs one
// node serves per second with 4 sandboxes and 4 callers each (one caller
// per sandbox at a time, as a tool loop calls): the per-node figure behind
// BENCHMARKS.md's capacity on paper.
func BenchmarkNodeExecThroughput(b *testing.B) {
	dir, err := os.MkdirTemp("/tmp", "sbd-tput-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	n := startBenchNode(b, dir)
	cl, err := client.New(client.Config{Addrs: []string{n.socket}, Token: tokenA})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	const sandboxes = 4
	var ids []string
	for range sandboxes {
		sb, err := cl.CreateSandbox(context.Background(), &sandboxv1.CreateSandboxRequest{})
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, sb.GetSandboxId())
	}
	var done atomic.Int64
	start := time.Now()
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N/sandboxes + 1
	for _, id := range ids {
		wg.Go(func() {
			for range per {
				if _, err := execOut(context.Background(), cl, id, "1"); err != nil {
					b.Error(err)
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(done.Load())/time.Since(start).Seconds(), "execs/s")
}

// startBenchNode starts one node of the cluster test's policy.
func startBenchNode(b *testing.B, dir string) *node {
	b.Helper()
	policy := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(policy, []byte(clusterPolicyText()), 0o600); err != nil {
		b.Fatal(err)
	}
	return startNode(b, policy, dir, 0)
}
