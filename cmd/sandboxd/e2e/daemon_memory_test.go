package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestEndlessOutputKeepsDaemonMemoryBounded guarantees that `yes` forever,
// read by the client to the end of the template's 128Mi output cap, grows
// the daemon's resident memory by far less than the output (under 64 MiB),
// and that the sandbox keeps working.
func TestEndlessOutputKeepsDaemonMemoryBounded(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, resourcesPolicy)})
	id := d.createTemplate(t, "bigout")
	// Warm up the daemon's Exec path (gRPC buffers, the race detector's
	// shadow memory) with a few MiB, so that only growth is measured.
	wantOK(t, sh(t, d, id, "head -c 4M /dev/zero"))
	pid := d.cmd.Process.Pid
	before := vmRSS(t, pid)
	stream, err := d.client.Exec(ctx(t), &sandboxv1.ExecRequest{SandboxId: id, Language: sandboxv1.Language_LANGUAGE_BASH, Code: "yes", Timeout: durationpb.New(2 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var got, next int64
	peak := before
	var res *sandboxv1.ExecResult
	for res == nil {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
		got += int64(len(ev.GetStdout()) + len(ev.GetStderr()))
		if got >= next {
			next += 8 << 20
			peak = max(peak, vmRSS(t, pid))
		}
		res = ev.GetResult()
	}
	const limit = 128 << 20 // templates.bigout.limits.output
	const maxGrowth = 64 << 20
	t.Logf("yes: %v, %d MiB in %v; daemon RSS %d MiB before, peak %d MiB (+%d MiB)",
		res.Status, got>>20, time.Since(start), before>>20, peak>>20, (peak-before)>>20)
	if res.Status != sandboxv1.ExecStatus_EXEC_STATUS_OUTPUT_TRUNCATED || got != limit {
		t.Errorf("yes ended %v after %d bytes, want OUTPUT_TRUNCATED after %d", res, got, limit)
	}
	if peak-before > maxGrowth {
		t.Errorf("the daemon's RSS grew by %d MiB while streaming %d MiB, want under %d MiB", (peak-before)>>20, got>>20, maxGrowth>>20)
	}
	wantSandboxWorks(t, d, id, "the endless output")
	wantDaemonServes(t, d)
}

// TestStalledClientKeepsDaemonMemoryFlat guarantees that a client that
// opens the Exec stream of code printing 1 MiB lines without end and then
// stops reading makes the daemon buffer almost nothing (its resident memory
// grows by under 32 MiB over 8 s): back-pressure reaches the code through
// the agent. After the client cancels, the sandbox keeps working.
func TestStalledClientKeepsDaemonMemoryFlat(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, resourcesPolicy)})
	id := d.createTemplate(t, "bigout")
	wantOK(t, sh(t, d, id, "head -c 4M /dev/zero"))
	pid := d.cmd.Process.Pid
	before := vmRSS(t, pid)
	cctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := d.client.Exec(cctx, &sandboxv1.ExecRequest{SandboxId: id, Language: sandboxv1.Language_LANGUAGE_PYTHON, Timeout: durationpb.New(time.Minute),
		Code: "line = 'x' * (1 << 20)\nwhile True:\n    print(line)"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	const maxGrowth = 32 << 20
	peak := before
	var samples []string
	for range 8 {
		time.Sleep(time.Second)
		rss := vmRSS(t, pid)
		peak = max(peak, rss)
		samples = append(samples, strconv.FormatInt(rss>>20, 10))
	}
	t.Logf("daemon RSS %d MiB before, then each second without reading: %s MiB", before>>20, strings.Join(samples, " "))
	if peak-before > maxGrowth {
		t.Errorf("the daemon's RSS grew by %d MiB while the client did not read, want under %d MiB", (peak-before)>>20, maxGrowth>>20)
	}
	cancel()
	wantSandboxWorks(t, d, id, "the stalled client")
	wantDaemonServes(t, d)
}

// vmRSS returns the resident memory of process pid in bytes.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
