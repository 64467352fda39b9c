package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// benchFake is an in-process daemon with a warm pool and a snapshot, for
// bench: creates take from the pool unless bypass_pool or bypass_snapshot
// (cold_start and start say which), a cold create is restored when the
// snapshot is ready and booted otherwise, the pool refills after refill,
// GetSandbox reports a memory usage by start kind, Exec understands the
// scenarios' code (x = 1 sets x, which print(x) prints), and files are kept
// per sandbox. PauseSandbox pauses an idle sandbox after pauseDelay and
// refuses a busy one (an Exec not yet ended, up to execTail after its
// result) as the daemon does; an Exec of a paused sandbox resumes it after
// resumeDelay. With procs, each sandbox has a host process with its ID in
// the command line, as runsc's have. A legacy fake is a daemon that
// predates pools, snapshots and pause: it does not implement ListPools and
// PauseSandbox and never says how a sandbox started.
type benchFake struct {
	sandboxv1.UnimplementedSandboxServiceServer

	targetIdle int32
	refill     time.Duration
	// snapshotReady is when the snapshot is built: BUILDING before, then
	// snapshot (READY unless a test says otherwise).
	snapshotReady time.Time
	snapshot      sandboxv1.SnapshotState
	procs         bool
	legacy        bool
	// execHook, if set, runs at the start of every Exec with its number
	// (from 1); a non-nil result is the Exec's failure.
	execHook func(n int, req *sandboxv1.ExecRequest) error
	// pauseHook, if set, runs at the start of every PauseSandbox with its
	// number (from 1); a non-nil answer or error is the call's.
	pauseHook func(n int) (*sandboxv1.Sandbox, error)
	// pauseDelay is how long a pause takes, resumeDelay how long an Exec
	// of a paused sandbox takes to resume it, and execTail how long an
	// Exec holds the sandbox after it sent its result.
	pauseDelay, resumeDelay, execTail time.Duration

	mu        sync.Mutex
	idle      int32
	booting   int32
	seq       int
	live      map[string]map[string]string   // sandbox ID -> labels
	starts    map[string]sandboxv1.StartKind // sandbox ID -> how it started
	cmds      map[string]*exec.Cmd           // sandbox ID -> its host process, with procs
	files     map[string][]byte              // ID + "/" + path -> contents
	vars      map[string]bool                // sandbox ID -> x is set (resumeSetCode ran)
	paused    map[string]bool                // sandbox ID -> paused
	busy      map[string]int                 // sandbox ID -> Execs not yet ended
	creates   []*sandboxv1.CreateSandboxRequest
	codes     []string
	execs     int
	pauses    int // PauseSandbox calls
	resumes   int // Execs that resumed a paused sandbox
	maxChunk  int
	maxLive   int
	destroyed int
}

// fakeMemory is the memory usage the fake reports per start kind.
var fakeMemory = map[sandboxv1.StartKind]int64{
	sandboxv1.StartKind_START_KIND_POOL:    100 << 20,
	sandboxv1.StartKind_START_KIND_RESTORE: 100 << 20,
	sandboxv1.StartKind_START_KIND_BOOT:    250 << 20,
}

func newBenchFake(targetIdle int32) *benchFake {
	return &benchFake{
		targetIdle: targetIdle, idle: targetIdle, refill: 10 * time.Millisecond,
		snapshot: sandboxv1.SnapshotState_SNAPSHOT_STATE_READY,
		live:     map[string]map[string]string{}, starts: map[string]sandboxv1.StartKind{},
		cmds: map[string]*exec.Cmd{}, files: map[string][]byte{},
		vars: map[string]bool{}, paused: map[string]bool{}, busy: map[string]int{},
	}
}

// newLegacyFake returns a fake daemon that predates pools and snapshots.
func newLegacyFake() *benchFake {
	f := newBenchFake(0)
	f.legacy = true
	return f
}

// snapshotState is the state of the fake's snapshot now; f.mu held.
func (f *benchFake) snapshotState() sandboxv1.SnapshotState {
	if time.Now().Before(f.snapshotReady) {
		return sandboxv1.SnapshotState_SNAPSHOT_STATE_BUILDING
	}
	return f.snapshot
}

func (f *benchFake) CreateSandbox(_ context.Context, req *sandboxv1.CreateSandboxRequest) (*sandboxv1.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates = append(f.creates, req)
	start := sandboxv1.StartKind_START_KIND_POOL
	switch {
	case req.GetBypassSnapshot():
		start = sandboxv1.StartKind_START_KIND_BOOT
	case req.GetBypassPool() || f.idle == 0:
		start = sandboxv1.StartKind_START_KIND_BOOT
		if f.snapshotState() == sandboxv1.SnapshotState_SNAPSHOT_STATE_READY {
			start = sandboxv1.StartKind_START_KIND_RESTORE
		}
	default:
		f.idle--
		f.booting++
		time.AfterFunc(f.refill, func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.booting--
			f.idle++
		})
	}
	f.seq++
	id := fmt.Sprintf("sb-%d", f.seq)
	f.live[id] = req.GetLabels()
	f.starts[id] = start
	f.maxLive = max(f.maxLive, len(f.live))
	if f.procs {
		// Like runsc-gofer's --bundle: the ID ends a path.
		cmd := exec.Command("sleep", "60")
		cmd.Args[0] = "/fake/bundles/" + id
		if err := cmd.Start(); err != nil {
			return nil, status.Errorf(codes.Internal, "starting the sandbox's process: %v", err)
		}
		f.cmds[id] = cmd
	}
	template := req.GetTemplate()
	if template == "" {
		template = "python"
	}
	cold := start != sandboxv1.StartKind_START_KIND_POOL
	if f.legacy { // it says neither
		cold, start = false, sandboxv1.StartKind_START_KIND_UNSPECIFIED
	}
	return &sandboxv1.Sandbox{
		SandboxId: id, Template: template, State: sandboxv1.SandboxState_SANDBOX_STATE_RUNNING,
		ColdStart: cold, Start: start,
	}, nil
}

func (f *benchFake) GetSandbox(_ context.Context, req *sandboxv1.GetSandboxRequest) (*sandboxv1.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	start, ok := f.starts[req.GetSandboxId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "sandbox %q not found", req.GetSandboxId())
	}
	return &sandboxv1.Sandbox{
		SandboxId: req.GetSandboxId(), Start: start,
		Usage: &sandboxv1.ResourceUsage{MemoryBytes: fakeMemory[start]},
	}, nil
}

// stopProcs ends the host processes of the sandboxes still live.
func (f *benchFake) stopProcs() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, cmd := range f.cmds {
		cmd.Process.Kill()
		cmd.Wait()
		delete(f.cmds, id)
	}
}

func (f *benchFake) DestroySandbox(_ context.Context, req *sandboxv1.DestroySandboxRequest) (*sandboxv1.DestroySandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := req.GetSandboxId()
	if _, ok := f.live[id]; ok {
		f.destroyed++
	}
	if cmd := f.cmds[id]; cmd != nil {
		cmd.Process.Kill()
		cmd.Wait()
	}
	delete(f.live, id)
	delete(f.starts, id)
	delete(f.cmds, id)
	delete(f.vars, id)
	delete(f.paused, id)
	return &sandboxv1.DestroySandboxResponse{}, nil
}

func (f *benchFake) ListSandboxes(_ context.Context, req *sandboxv1.ListSandboxesRequest) (*sandboxv1.ListSandboxesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &sandboxv1.ListSandboxesResponse{}
	for id, labels := range f.live {
		match := true
		for k, v := range req.GetLabelSelector() {
			match = match && labels[k] == v
		}
		if match {
			resp.Sandboxes = append(resp.Sandboxes, &sandboxv1.Sandbox{SandboxId: id, Labels: labels})
		}
	}
	return resp, nil
}

func (f *benchFake) ListPools(context.Context, *sandboxv1.ListPoolsRequest) (*sandboxv1.ListPoolsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.legacy {
		return nil, status.Error(codes.Unimplemented, "unknown method ListPools")
	}
	return &sandboxv1.ListPoolsResponse{Pools: []*sandboxv1.Pool{{
		Template: "python", Idle: f.idle, Booting: f.booting, TargetIdle: f.targetIdle, MaxTotal: 16,
		InUse:    int32(len(f.live)),
		Snapshot: &sandboxv1.Snapshot{State: f.snapshotState(), ImageBytes: 64 << 20},
	}}}, nil
}

// locked runs fn with f.mu held, to read or change the fake's state.
func (f *benchFake) locked(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

// fakeOutputs is what the fake's Exec prints for the code bench runs
// (resumeCode only where resumeSetCode ran).
var fakeOutputs = map[string]string{printCode: "1\n", execPythonCode: "", execBashCode: "", warmImportsCode: "", resumeSetCode: ""}

func (f *benchFake) Exec(req *sandboxv1.ExecRequest, stream grpc.ServerStreamingServer[sandboxv1.ExecEvent]) error {
	id := req.GetSandboxId()
	f.mu.Lock()
	f.execs++
	n := f.execs
	f.codes = append(f.codes, req.GetLanguage().String()+":"+req.GetCode())
	_, ok := f.live[id]
	hook, wasPaused, tail := f.execHook, f.paused[id], f.execTail
	if ok {
		f.busy[id]++
	}
	f.mu.Unlock()
	if !ok {
		return status.Errorf(codes.NotFound, "sandbox %q not found", id)
	}
	defer f.locked(func() { f.busy[id]-- })
	if hook != nil {
		if err := hook(n, req); err != nil {
			return err
		}
	}
	if wasPaused {
		time.Sleep(f.resumeDelay)
		f.locked(func() {
			f.paused[id] = false
			f.resumes++
		})
	}
	out, known := fakeOutputs[req.GetCode()]
	f.locked(func() {
		switch req.GetCode() {
		case resumeSetCode:
			f.vars[id] = true
		case resumeCode:
			out, known = resumeWant, f.vars[id]
		}
	})
	defer time.Sleep(tail) // the Exec ends a little after its result
	if !known {
		return stream.Send(resultEvent(&sandboxv1.ExecResult{Status: sandboxv1.ExecStatus_EXEC_STATUS_ERROR, ExitCode: 1, ErrorName: "NameError"}))
	}
	if out != "" {
		if err := stream.Send(&sandboxv1.ExecEvent{Event: &sandboxv1.ExecEvent_Stdout{Stdout: []byte(out)}}); err != nil {
			return err
		}
	}
	return stream.Send(resultEvent(&sandboxv1.ExecResult{Status: sandboxv1.ExecStatus_EXEC_STATUS_OK}))
}

func (f *benchFake) PauseSandbox(_ context.Context, req *sandboxv1.PauseSandboxRequest) (*sandboxv1.Sandbox, error) {
	id := req.GetSandboxId()
	f.mu.Lock()
	f.pauses++
	n, hook := f.pauses, f.pauseHook
	f.mu.Unlock()
	if f.legacy {
		return nil, status.Error(codes.Unimplemented, "unknown method PauseSandbox")
	}
	if hook != nil {
		if sb, err := hook(n); sb != nil || err != nil {
			return sb, err
		}
	}
	f.mu.Lock()
	_, ok := f.live[id]
	busy, paused := f.busy[id] > 0, f.paused[id]
	f.mu.Unlock()
	switch {
	case !ok:
		return nil, status.Errorf(codes.NotFound, "sandbox %q not found", id)
	case busy:
		return nil, status.Errorf(codes.FailedPrecondition, "sandbox %q is busy (an Exec or a file transfer is running, or it is being resumed): pause it when it is idle", id)
	case !paused:
		time.Sleep(f.pauseDelay)
		f.locked(func() { f.paused[id] = true })
	}
	return &sandboxv1.Sandbox{SandboxId: id, State: sandboxv1.SandboxState_SANDBOX_STATE_PAUSED}, nil
}

// resultEvent wraps r as the last event of an Exec stream.
func resultEvent(r *sandboxv1.ExecResult) *sandboxv1.ExecEvent {
	return &sandboxv1.ExecEvent{Event: &sandboxv1.ExecEvent_Result{Result: r}}
}

func (f *benchFake) Upload(stream grpc.ClientStreamingServer[sandboxv1.UploadRequest, sandboxv1.UploadResponse]) error {
	var header *sandboxv1.FileHeader
	var data []byte
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if h := req.GetHeader(); h != nil {
			header = h
			continue
		}
		data = append(data, req.GetChunk()...)
		f.mu.Lock()
		f.maxChunk = max(f.maxChunk, len(req.GetChunk()))
		f.mu.Unlock()
	}
	f.mu.Lock()
	f.files[header.GetSandboxId()+"/"+header.GetPath()] = data
	f.mu.Unlock()
	return stream.SendAndClose(&sandboxv1.UploadResponse{Path: "/workspace/" + header.GetPath(), Size: int64(len(data))})
}

func (f *benchFake) Download(req *sandboxv1.DownloadRequest, stream grpc.ServerStreamingServer[sandboxv1.DownloadResponse]) error {
	f.mu.Lock()
	data, ok := f.files[req.GetSandboxId()+"/"+req.GetPath()]
	f.mu.Unlock()
	if !ok {
		return status.Error(codes.NotFound, "no such file")
	}
	if err := stream.Send(&sandboxv1.DownloadResponse{Msg: &sandboxv1.DownloadResponse_Info{Info: &sandboxv1.FileInfo{Size: int64(len(data))}}}); err != nil {
		return err
	}
	for off := 0; off < len(data); off += 1 << 20 {
		chunk := data[off:min(off+1<<20, len(data))]
		if err := stream.Send(&sandboxv1.DownloadResponse{Msg: &sandboxv1.DownloadResponse_Chunk{Chunk: chunk}}); err != nil {
			return err
		}
	}
	return nil
}

// startBenchFake serves f on a fresh loopback TCP port until the test
// ends and returns its address. Memory runs settle for a millisecond
// instead of memorySettle.
func startBenchFake(t *testing.T, f *benchFake) string {
	t.Helper()
	settle := memorySettle
	memorySettle = time.Millisecond
	t.Cleanup(func() {
		memorySettle = settle
		f.stopProcs()
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	sandboxv1.RegisterSandboxServiceServer(srv, f)
	go srv.Serve(l)
	t.Cleanup(srv.Stop) // returns once Serve is done accepting
	return l.Addr().String()
}

// result is the outcome of one Run in a test.
type result struct {
	err            error
	stdout, stderr string
}

// runBench parses args as bench's flags and runs bench against the daemon
// at addr until ctx ends, as sandboxctl does: notes are lines
// "sandboxctl: bench: MSG" on stderr, and errors render as
// "MESSAGE (code)".
func runBench(ctx context.Context, t *testing.T, addr string, args ...string) result {
	t.Helper()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o := AddFlags(fs, "", "")
	if err := fs.Parse(args); err != nil {
		t.Fatalf("flags %q: %v", args, err)
	}
	var stdout, stderr bytes.Buffer
	err := Run(ctx, Env{
		Stdout: &stdout, Stderr: &stderr, Address: addr,
		Client: func() (sandboxv1.SandboxServiceClient, error) {
			cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return nil, err
			}
			t.Cleanup(func() { cc.Close() })
			return sandboxv1.NewSandboxServiceClient(cc), nil
		},
		Describe: func(err error) string {
			if st, ok := status.FromError(err); ok {
				return fmt.Sprintf("%s (%s)", st.Message(), strings.ToLower(st.Code().String()))
			}
			return err.Error()
		},
		Note: func(msg string) { fmt.Fprintf(&stderr, "sandboxctl: bench: %s\n", msg) },
	}, o)
	return result{err, stdout.String(), stderr.String()}
}

// runOn is runBench without a deadline.
func runOn(t *testing.T, addr string, args ...string) result {
	t.Helper()
	return runBench(context.Background(), t, addr, args...)
}

// wantOK fails the test unless bench succeeded.
func wantOK(t *testing.T, r result) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("bench failed: %v\nstdout: %q\nstderr: %q", r.err, r.stdout, r.stderr)
	}
}

// wantFailed fails the test unless bench failed after it ran: neither a
// usage error nor an interruption.
func wantFailed(t *testing.T, r result) {
	t.Helper()
	var ue *UsageError
	if r.err == nil || errors.As(r.err, &ue) || errors.Is(r.err, context.Canceled) {
		t.Fatalf("err = %v, want a failed benchmark\nstdout: %q\nstderr: %q", r.err, r.stdout, r.stderr)
	}
}

// benchJSON is the part of the --json report the tests read.
type benchJSON struct {
	Config struct {
		Scenarios        []string `json:"scenarios"`
		BurstConcurrency int      `json:"burst_concurrency"`
		FileBytes        int64    `json:"file_bytes"`
		Socket           string   `json:"socket"`
	} `json:"config"`
	Pools   []poolInfo `json:"pools"`
	Results []struct {
		Name               string    `json:"name"`
		Kind               string    `json:"kind"`
		Runs               int       `json:"runs"`
		Successes          int       `json:"successes"`
		P50MS              *float64  `json:"p50_ms"`
		SamplesMS          []float64 `json:"samples_ms"`
		Creates            *int      `json:"creates"`
		ColdStarts         *int      `json:"cold_starts"`
		Restores           *int      `json:"restores"`
		Boots              *int      `json:"boots"`
		Bytes              int64     `json:"bytes"`
		MiBPerSecP50       *float64  `json:"mib_per_s_p50"`
		Sandboxes          int       `json:"sandboxes"`
		SandboxesPerSecP50 *float64  `json:"sandboxes_per_s_p50"`
		CgroupBytes        []int64   `json:"cgroup_bytes"`
		CgroupMiBP50       *float64  `json:"cgroup_mib_p50"`
		PSSBytes           []int64   `json:"pss_bytes"`
		PSSMiBP50          *float64  `json:"pss_mib_p50"`
		Errors             []string  `json:"errors"`
	} `json:"results"`
	VS []comparison `json:"vs"`
}

// deref is *p, or -1 for nil, for messages.
func deref[T int | float64](p *T) T {
	if p == nil {
		return -1
	}
	return *p
}

// readBenchJSON parses the --json report at path.
func readBenchJSON(t *testing.T, path string) benchJSON {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep benchJSON
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("bad JSON report: %v\n%s", err, b)
	}
	return rep
}

// TestBenchAllScenarios guarantees the scenarios end to end against a fake
// daemon with a pool and a ready snapshot: every row with its runs; warm
// runs served warm after bench waited for the refill, cold runs restored
// and boot runs booted (bypass_snapshot and bypass_pool set); the -ready
// rows run the warm imports; exec runs Python and bash; resume pauses a
// sandbox and prints the variable it set before, and VS compares it with
// cold, the only ratio without baselines; files moves the
// file in 1 MiB chunks and checks it; burst runs K = 2 x target_idle at
// once for ceil(N/K) rounds; refill drains the pool of 2 and reports its
// rate; memory reports the cgroup usage of a restored and a booted
// sandbox, without PSS (the fake's sandboxes have no host processes);
// every sandbox carries the run's label and is destroyed; the table, JSON,
// CSV and plot are written and progress is one line per round.
func TestBenchAllScenarios(t *testing.T) {
	f := newBenchFake(2)
	addr := startBenchFake(t, f)
	dir := t.TempDir()
	jsonPath, csvPath, plotPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.csv"), filepath.Join(dir, "r.svg")
	r := runOn(t, addr, "-n", "3", "--warmup", "1", "--file-mib", "2",
		"--json", jsonPath, "--csv", csvPath, "--plot", plotPath)
	wantOK(t, r)

	rep := readBenchJSON(t, jsonPath)
	want := map[string]int{ // timed runs per row
		"warm": 3, "cold": 3, "cold-ready": 3, "boot": 3, "boot-ready": 3, "exec-python": 3, "exec-bash": 3,
		"exec-bash-session": 3, "resume": 3, "files-upload": 3, "files-download": 3,
		"burst":  4, // K = 2 x target_idle = 4, ceil(3/4) = 1 round of 4
		"refill": 3, "memory-restore": 3, "memory-boot": 3,
	}
	var names []string
	for _, res := range rep.Results {
		names = append(names, res.Name)
		if res.Runs != want[res.Name] || res.Successes != res.Runs {
			t.Errorf("%s: %d runs, %d successes; want %d successful runs (errors %q)", res.Name, res.Runs, res.Successes, want[res.Name], res.Errors)
		}
		memory := strings.HasPrefix(res.Name, "memory-")
		if memory && (res.Kind != kindMemory || len(res.SamplesMS) != 0 || res.P50MS != nil || len(res.CgroupBytes) != res.Runs || res.PSSMiBP50 != nil) {
			t.Errorf("%s: kind %s, %d latency samples, %d cgroup samples, PSS %v; want kind memory, no latencies, a cgroup usage per run, no PSS",
				res.Name, res.Kind, len(res.SamplesMS), len(res.CgroupBytes), deref(res.PSSMiBP50))
		}
		if !memory && (res.Kind != kindScenario || len(res.SamplesMS) != res.Runs || res.P50MS == nil) {
			t.Errorf("%s: kind %s, %d samples, p50 %v; want a scenario with a latency per run", res.Name, res.Kind, len(res.SamplesMS), deref(res.P50MS))
		}
		switch res.Name {
		case "warm":
			if *res.Creates != 3 || *res.ColdStarts != 0 {
				t.Errorf("warm: %d of %d cold starts, want all pool hits", *res.ColdStarts, *res.Creates)
			}
		case "cold", "cold-ready", "memory-restore":
			if *res.Creates != 3 || *res.ColdStarts != 3 || deref(res.Restores) != 3 {
				t.Errorf("%s: %d of %d cold starts, %d restores; want all restored", res.Name, *res.ColdStarts, *res.Creates, deref(res.Restores))
			}
		case "boot", "boot-ready", "memory-boot":
			if *res.Creates != 3 || *res.ColdStarts != 3 || deref(res.Boots) != 3 {
				t.Errorf("%s: %d of %d cold starts, %d boots; want all booted", res.Name, *res.ColdStarts, *res.Creates, deref(res.Boots))
			}
		case "burst":
			if *res.Creates != 4 || *res.ColdStarts != 2 || deref(res.Restores) != 2 {
				t.Errorf("burst: %d of %d cold starts, %d restores; want 2 restored (the pool held 2)", *res.ColdStarts, *res.Creates, deref(res.Restores))
			}
		case "files-upload", "files-download":
			if res.Bytes != 2<<20 || res.MiBPerSecP50 == nil {
				t.Errorf("%s: bytes %d, rate %v", res.Name, res.Bytes, res.MiBPerSecP50)
			}
		case "refill":
			if res.Sandboxes != 2 || res.SandboxesPerSecP50 == nil || *res.SandboxesPerSecP50 != 2/(*res.P50MS/1000) {
				t.Errorf("refill: %d sandboxes, rate %v at p50 %v ms; want 2 over the p50", res.Sandboxes, deref(res.SandboxesPerSecP50), deref(res.P50MS))
			}
		}
		if res.Name == "memory-restore" && deref(res.CgroupMiBP50) != 100 || res.Name == "memory-boot" && deref(res.CgroupMiBP50) != 250 {
			t.Errorf("%s: cgroup %v MiB, want the fake's", res.Name, deref(res.CgroupMiBP50))
		}
	}
	if got := strings.Join(names, ","); got != "warm,cold,cold-ready,boot,boot-ready,exec-python,exec-bash,exec-bash-session,resume,files-upload,files-download,burst,refill,memory-restore,memory-boot" {
		t.Errorf("rows = %s", got)
	}
	if rep.Config.BurstConcurrency != 4 || rep.Config.FileBytes != 2<<20 || len(rep.Pools) != 1 || rep.Pools[0].TargetIdle != 2 ||
		rep.Pools[0].Snapshot != "ready" || rep.Pools[0].SnapshotBytes != 64<<20 {
		t.Errorf("config = %+v, pools = %+v", rep.Config, rep.Pools)
	}
	if len(rep.VS) != 1 || rep.VS[0].Scenario != "resume" || rep.VS[0].Baseline != "cold" || rep.VS[0].P50Ratio == nil {
		t.Errorf("vs = %v, want resume / cold alone without baselines", rep.VS)
	}

	f.locked(func() {
		if len(f.live) != 0 {
			t.Errorf("sandboxes left: %v", f.live)
		}
		boots := 0
		for _, c := range f.creates {
			if !strings.HasPrefix(c.GetLabels()[benchLabel], "20") {
				t.Errorf("create without the run label: %v", c)
			}
			if c.GetBypassSnapshot() {
				boots++
				if !c.GetBypassPool() {
					t.Errorf("bypass_snapshot without bypass_pool: %v", c)
				}
			}
		}
		if boots != 3*3+1*2 { // boot, boot-ready (with warm-up) and memory-boot
			t.Errorf("%d creates with bypass_snapshot, want 11", boots)
		}
		if f.maxChunk != benchFileChunk {
			t.Errorf("largest upload chunk %d bytes, want %d", f.maxChunk, benchFileChunk)
		}
		if f.pauses != 1+4 || f.resumes != 4 { // setup, then each run with the warm-up
			t.Errorf("%d pauses, %d resumes; want 5 and 4", f.pauses, f.resumes)
		}
		for _, code := range []string{"LANGUAGE_PYTHON:" + printCode, "LANGUAGE_PYTHON:" + warmImportsCode, "LANGUAGE_PYTHON:pass", "LANGUAGE_BASH:true",
			"LANGUAGE_PYTHON:x = 1", "LANGUAGE_PYTHON:print(x)"} {
			if !slices.Contains(f.codes, code) {
				t.Errorf("no exec of %q", code)
			}
		}
	})

	for _, s := range []string{"SCENARIO", "warm", "pool hits 3/3", "restored 3/3", "booted 3/3", "pool hits 2/4, restored 2/4",
		"MiB/s at p50", "sandboxes/s at p50 (2 a refill)", "burst", "MEMORY", "CGROUP MiB", "0.40x memory-boot's cgroup", "resume / cold"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("table lacks %q:\n%s", s, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "BASELINE") || strings.Contains(r.stdout, "cold starts") {
		t.Errorf("baseline section without --baselines, or cold starts where start kinds are known:\n%s", r.stdout)
	}
	for _, s := range []string{"round 1/4 (warm-up): warm", "round 4/4: warm", "burst: 4 concurrent creates per round, 1 rounds (+1 warm-up)",
		"memory-restore 100 MiB, memory-boot 250 MiB", "memory: no process on this host carries sandbox sb-"} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "snapshot") {
		t.Errorf("a note on a snapshot that was ready all along:\n%s", r.stderr)
	}
	csvData, _ := os.ReadFile(csvPath)
	if lines := strings.Split(strings.TrimSpace(string(csvData)), "\n"); len(lines) != 16 {
		t.Errorf("CSV has %d lines, want header + 15 rows:\n%s", len(lines), csvData)
	}
	if svg, _ := os.ReadFile(plotPath); !bytes.Contains(svg, []byte("<svg")) {
		t.Errorf("plot is not an SVG: %.100s", svg)
	}
}

// TestBenchWaitsForSnapshot guarantees that cold runs measure restores
// when the snapshot becomes ready in time: bench waits for it before the
// first run and says so. When it does not (still building after
// --pool-wait, failed, disabled), bench says so and the notes count the
// boots.
func TestBenchWaitsForSnapshot(t *testing.T) {
	f := newBenchFake(1)
	f.snapshotReady = time.Now().Add(300 * time.Millisecond)
	addr := startBenchFake(t, f)
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	r := runOn(t, addr, "--scenarios", "cold", "-n", "2", "--warmup", "0", "--json", jsonPath)
	wantOK(t, r)
	rep := readBenchJSON(t, jsonPath)
	if res := rep.Results[0]; deref(res.Restores) != 2 || deref(res.Boots) != 0 {
		t.Errorf("cold: %d restores, %d boots; want 2 restores", deref(res.Restores), deref(res.Boots))
	}
	if !strings.Contains(r.stderr, `sandboxctl: bench: waited `) || !strings.Contains(r.stderr, ` for the snapshot of template "python"`) {
		t.Errorf("stderr = %s", r.stderr)
	}
	if rep.Pools[0].Snapshot != "ready" {
		t.Errorf("pools = %+v, want the snapshot the runs met (ready)", rep.Pools)
	}

	for _, tc := range []struct {
		state sandboxv1.SnapshotState
		note  string
	}{
		{sandboxv1.SnapshotState_SNAPSHOT_STATE_BUILDING, `the snapshot of template "python" was still building after `},
		{sandboxv1.SnapshotState_SNAPSHOT_STATE_FAILED, `the snapshot of template "python" failed`},
		{sandboxv1.SnapshotState_SNAPSHOT_STATE_DISABLED, `template "python" has no snapshot (snapshot: false in the policy)`},
	} {
		f.locked(func() {
			f.snapshot = tc.state
			f.snapshotReady = time.Time{}
			if tc.state == sandboxv1.SnapshotState_SNAPSHOT_STATE_BUILDING {
				f.snapshotReady = time.Now().Add(time.Hour)
			}
		})
		r := runOn(t, addr, "--scenarios", "cold", "-n", "2", "--warmup", "0", "--pool-wait", "100ms", "--json", jsonPath)
		wantOK(t, r)
		if res := readBenchJSON(t, jsonPath).Results[0]; deref(res.Boots) != 2 {
			t.Errorf("%s: %d boots, want 2", tc.state, deref(res.Boots))
		}
		for _, s := range []string{"sandboxctl: bench: " + tc.note, "sandboxctl: bench: cold: 2 of 2 sandboxes were booted, not restored"} {
			if !strings.Contains(r.stderr, s) {
				t.Errorf("%s: stderr lacks %q:\n%s", tc.state, s, r.stderr)
			}
		}
		if !strings.Contains(r.stdout, "booted 2/2") {
			t.Errorf("%s: table lacks booted 2/2:\n%s", tc.state, r.stdout)
		}
	}
}

// TestBenchResume guarantees the resume scenario: one sandbox from the
// pool runs x = 1 once; each run pauses it, untimed, and times an Exec of
// print(x) that resumes it, only until its result: neither the pause nor
// the end of the Exec after its result is timed, and the next pause waits
// for that end (the fake refuses a pause while an Exec holds the sandbox);
// the sandbox is destroyed at the end; VS gives resume over cold.
func TestBenchResume(t *testing.T) {
	const (
		pauseDelay  = 250 * time.Millisecond
		resumeDelay = 50 * time.Millisecond
		execTail    = 250 * time.Millisecond
	)
	f := newBenchFake(1)
	f.pauseDelay, f.resumeDelay, f.execTail = pauseDelay, resumeDelay, execTail
	addr := startBenchFake(t, f)
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	r := runOn(t, addr, "--scenarios", "resume,cold", "-n", "3", "--warmup", "1", "--json", jsonPath)
	wantOK(t, r)
	rep := readBenchJSON(t, jsonPath)
	var resume, cold float64
	for _, res := range rep.Results {
		if res.Runs != 3 || res.Successes != 3 {
			t.Fatalf("%s: %d runs, %d successes (errors %q); want 3 successful runs", res.Name, res.Runs, res.Successes, res.Errors)
		}
		switch res.Name {
		case "resume":
			resume = *res.P50MS
			if res.Creates != nil {
				t.Errorf("resume counts %d creates: its sandbox is created at setup, untimed", *res.Creates)
			}
			for _, ms := range res.SamplesMS {
				// The pause or the Exec's tail would add 250 ms.
				if ms < float64(resumeDelay/time.Millisecond) || ms >= float64((resumeDelay+execTail)/time.Millisecond) {
					t.Errorf("resume took %v ms, want the resume (%v) and not the pause (%v) or the Exec's tail (%v)", ms, resumeDelay, pauseDelay, execTail)
				}
			}
		case "cold":
			cold = *res.P50MS
		}
	}
	if rep.Results[0].Name != "cold" || rep.Results[1].Name != "resume" {
		t.Errorf("rows %s, %s; want cold before resume", rep.Results[0].Name, rep.Results[1].Name)
	}
	if len(rep.VS) != 1 || rep.VS[0].Scenario != "resume" || rep.VS[0].Baseline != "cold" || deref(rep.VS[0].P50Ratio) != ratio(resume, cold) {
		t.Errorf("vs = %+v, want resume / cold = %v", rep.VS, ratio(resume, cold))
	}
	if !strings.Contains(r.stdout, "resume / cold") {
		t.Errorf("table lacks resume / cold:\n%s", r.stdout)
	}
	f.locked(func() {
		var creates int
		for _, c := range f.creates {
			if !c.GetBypassPool() {
				creates++ // resume's; cold's bypass the pool
			}
		}
		if creates != 1 || f.pauses != 1+4 || f.resumes != 4 || len(f.live) != 0 {
			t.Errorf("resume: %d creates, %d pauses, %d resumes, sandboxes left %v; want 1 from the pool, 5 pauses (setup and each run), 4 resumes, none left",
				creates, f.pauses, f.resumes, f.live)
		}
		if n := slices.Index(f.codes, "LANGUAGE_PYTHON:x = 1"); n < 0 || slices.Contains(f.codes[n+1:], "LANGUAGE_PYTHON:x = 1") {
			t.Errorf("execs %q, want x = 1 once", f.codes)
		}
	})
}

// TestBenchResumeFailures guarantees that resume counts a failed pause, a
// pause the daemon answers with another state than PAUSED and a failed
// resume as failed runs with their step, and replaces the sandbox after
// each (a failed pause or resume may have ended it), untimed; every
// sandbox is destroyed.
func TestBenchResumeFailures(t *testing.T) {
	f := newBenchFake(1)
	f.pauseHook = func(n int) (*sandboxv1.Sandbox, error) {
		switch n { // 1 is setup's
		case 2:
			return nil, status.Error(codes.Internal, "checkpoint failed")
		case 3:
			return &sandboxv1.Sandbox{State: sandboxv1.SandboxState_SANDBOX_STATE_RUNNING}, nil
		}
		return nil, nil
	}
	var prints int
	f.execHook = func(_ int, req *sandboxv1.ExecRequest) error {
		if req.GetCode() != resumeCode {
			return nil
		}
		if prints++; prints == 1 {
			return status.Error(codes.DataLoss, "the paused image is damaged")
		}
		return nil
	}
	addr := startBenchFake(t, f)
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	r := runOn(t, addr, "--scenarios", "resume", "-n", "5", "--warmup", "0", "--json", jsonPath)
	wantOK(t, r)
	res := readBenchJSON(t, jsonPath).Results[0]
	wantErrs := []string{
		"pause: checkpoint failed (internal)",
		"pause: PauseSandbox answered state SANDBOX_STATE_RUNNING, want SANDBOX_STATE_PAUSED",
		"exec: the paused image is damaged (dataloss)",
	}
	if res.Runs != 5 || res.Successes != 2 || !slices.Equal(res.Errors, wantErrs) {
		t.Errorf("resume = %d runs, %d successes, errors %q; want 5 runs, 2 successes, errors %q", res.Runs, res.Successes, res.Errors, wantErrs)
	}
	for i, e := range wantErrs {
		if s := fmt.Sprintf("sandboxctl: bench: resume: run %d failed: %s", i+1, e); !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
	f.locked(func() {
		if len(f.creates) != 4 || f.destroyed != 4 || len(f.live) != 0 {
			t.Errorf("%d creates, %d destroyed, sandboxes left %v; want setup's and one after each failed run, all destroyed", len(f.creates), f.destroyed, f.live)
		}
	})

	f.locked(func() {
		f.pauseHook = nil
		f.execHook = func(_ int, req *sandboxv1.ExecRequest) error {
			if req.GetCode() == resumeSetCode {
				return status.Error(codes.Unavailable, "agent gone")
			}
			return nil
		}
	})
	r = runOn(t, addr, "--scenarios", "resume", "-n", "1", "--warmup", "0")
	wantFailed(t, r)
	if !strings.Contains(r.stdout, `not run: setup: exec "x = 1": agent gone (unavailable)`) {
		t.Errorf("stdout = %s", r.stdout)
	}
	f.locked(func() {
		if len(f.live) != 0 {
			t.Errorf("sandboxes left: %v", f.live)
		}
	})
}

// TestBenchRefill guarantees the refill scenario: each run starts with the
// pool full, takes its target from the pool (no bypass) and times until
// ListPools shows it full again, at least the fake's refill time and not
// much more; the rate is target over that time; the drained sandboxes are
// destroyed.
func TestBenchRefill(t *testing.T) {
	const refill = 200 * time.Millisecond
	f := newBenchFake(2)
	f.refill = refill
	addr := startBenchFake(t, f)
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	r := runOn(t, addr, "--scenarios", "refill", "-n", "2", "--warmup", "0", "--json", jsonPath)
	wantOK(t, r)
	res := readBenchJSON(t, jsonPath).Results[0]
	if res.Name != "refill" || res.Successes != 2 || res.Sandboxes != 2 {
		t.Fatalf("refill = %d successes, %d sandboxes (errors %q); want 2 runs of 2", res.Successes, res.Sandboxes, res.Errors)
	}
	for _, ms := range res.SamplesMS {
		if ms < float64(refill/time.Millisecond) || ms > float64(refill/time.Millisecond)+500 {
			t.Errorf("refill took %v ms, want about %v", ms, refill)
		}
	}
	if rate := *res.SandboxesPerSecP50; rate > 10 || rate < 2 {
		t.Errorf("rate %v sandboxes/s, want about 2 in 0.2 s", rate)
	}
	f.locked(func() {
		if len(f.creates) != 4 || len(f.live) != 0 {
			t.Errorf("%d creates, %d sandboxes left; want 2 a run, all destroyed", len(f.creates), len(f.live))
		}
		for _, c := range f.creates {
			if c.GetBypassPool() || c.GetBypassSnapshot() {
				t.Errorf("drain bypassed the pool: %v", c)
			}
		}
	})
}

// TestBenchRefillWithoutTarget guarantees that refill of a pool that keeps
// no idle sandboxes is not run, with the reason, rather than timed.
func TestBenchRefillWithoutTarget(t *testing.T) {
	f := newBenchFake(0)
	addr := startBenchFake(t, f)
	r := runOn(t, addr, "--scenarios", "refill", "-n", "1", "--warmup", "0")
	wantFailed(t, r)
	if !strings.Contains(r.stdout, `not run: setup: the pool of template "python" keeps no idle sandboxes (target 0)`) {
		t.Errorf("stdout = %s", r.stdout)
	}
}

// TestBenchMemory guarantees the memory scenario: per run a restored and a
// booted sandbox, each reported with its cgroup usage and the PSS of the
// host processes that carry its ID (the fake starts one per sandbox), the
// ratio in the notes, and both destroyed; a restore that comes back booted
// (snapshot failed) is a failed run, not a mislabelled one.
func TestBenchMemory(t *testing.T) {
	f := newBenchFake(1)
	f.procs = true
	addr := startBenchFake(t, f)
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	r := runOn(t, addr, "--scenarios", "memory", "-n", "2", "--json", jsonPath)
	wantOK(t, r)
	rep := readBenchJSON(t, jsonPath)
	if len(rep.Results) != 2 {
		t.Fatalf("%d rows, want memory-restore and memory-boot", len(rep.Results))
	}
	for _, res := range rep.Results {
		if res.Runs != 2 || res.Successes != 2 || len(res.PSSBytes) != 2 || res.PSSBytes[0] <= 0 || res.PSSMiBP50 == nil {
			t.Errorf("%s: %d runs (no warm-up), %d successes, PSS %v (errors %q); want 2 runs with a PSS each", res.Name, res.Runs, res.Successes, res.PSSBytes, res.Errors)
		}
	}
	for _, s := range []string{"MEMORY", "memory-restore", "restored 2/2; 0.40x memory-boot's cgroup", "x its PSS", "booted 2/2"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("table lacks %q:\n%s", s, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "sandboxctl: bench: memory: the PSS of a sandbox sums its host processes sb-") {
		t.Errorf("stderr = %s", r.stderr)
	}
	f.locked(func() {
		if len(f.live) != 0 || len(f.cmds) != 0 {
			t.Errorf("sandboxes left: %v", f.live)
		}
	})

	f.locked(func() { f.snapshot = sandboxv1.SnapshotState_SNAPSHOT_STATE_FAILED })
	r = runOn(t, addr, "--scenarios", "memory", "-n", "1", "--json", jsonPath)
	wantFailed(t, r)
	if !strings.Contains(r.stderr, "memory-restore: run 1 failed: the sandbox was not restored but started boot: the daemon has no usable snapshot") {
		t.Errorf("stderr = %s", r.stderr)
	}
	if res := readBenchJSON(t, jsonPath).Results; res[0].Successes != 0 || res[1].Successes != 1 {
		t.Errorf("results = %+v, want memory-restore failed and memory-boot measured", res)
	}
}

// TestBenchWaitsForPool guarantees that each warm run measures a pool hit
// even when refills are slower than a run: bench waits for ListPools to
// show the pool refilled.
func TestBenchWaitsForPool(t *testing.T) {
	f := newBenchFake(1)
	f.refill = 300 * time.Millisecond
	addr := startBenchFake(t, f)
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	r := runOn(t, addr, "--scenarios", "warm", "-n", "3", "--warmup", "0", "--json", jsonPath)
	wantOK(t, r)
	res := readBenchJSON(t, jsonPath).Results[0]
	if res.Successes != 3 || *res.ColdStarts != 0 {
		t.Errorf("warm: %d successes, %d cold starts; want 3 hits", res.Successes, *res.ColdStarts)
	}
}

// TestBenchWithoutPools guarantees graceful handling of a daemon that does
// not implement pools yet (ListPools Unimplemented, cold_start never set):
// bench says so, runs burst with K = 2, warns that cold runs may have been
// pool hits, reports pools as null, and succeeds; resume, refill and memory,
// which need PauseSandbox, pools and start kinds, fail with the reason.
func TestBenchWithoutPools(t *testing.T) {
	f := newLegacyFake()
	addr := startBenchFake(t, f)
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	r := runOn(t, addr, "--scenarios", "warm,cold,boot,exec,burst", "-n", "2", "--warmup", "0", "--json", jsonPath)
	wantOK(t, r)
	for _, s := range []string{
		"sandboxctl: bench: this daemon does not implement ListPools",
		"burst: 2 concurrent creates per round, 1 rounds",
		"sandboxctl: bench: cold: 2 of 2 sandboxes came with cold_start false",
		"sandboxctl: bench: boot: the daemon does not say how its sandboxes start (Sandbox.start)",
	} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
	rep := readBenchJSON(t, jsonPath)
	if rep.Pools != nil {
		t.Errorf("pools = %v, want null", rep.Pools)
	}
	for _, res := range rep.Results {
		if res.Successes != res.Runs || res.Runs == 0 {
			t.Errorf("%s: %d of %d runs succeeded (%q)", res.Name, res.Successes, res.Runs, res.Errors)
		}
	}
	f.locked(func() {
		if len(f.live) != 0 {
			t.Errorf("sandboxes left: %v", f.live)
		}
	})
	if !strings.Contains(r.stdout, "cold starts 0/2") {
		t.Errorf("table lacks the cold starts of a daemon without start kinds:\n%s", r.stdout)
	}

	r = runOn(t, addr, "--scenarios", "resume,refill,memory", "-n", "1", "--warmup", "0")
	wantFailed(t, r)
	for _, s := range []string{
		"resume: setup failed: pause: this daemon does not implement PauseSandbox (it predates pause)",
		"refill: setup failed: the daemon reports no warm pool to refill",
		"memory-restore: run 1 failed: the daemon does not say how the sandbox started (Sandbox.start)",
	} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
}

// TestBenchFailuresCounted guarantees that failed runs are counted, not
// fatal: the row keeps its successful runs, the failure is noted once with
// its message, the JSON lists it, and bench exits 0; a row without any
// successful run makes bench exit 1 after writing the report.
func TestBenchFailuresCounted(t *testing.T) {
	f := newBenchFake(1)
	f.execHook = func(n int, _ *sandboxv1.ExecRequest) error {
		if n%2 == 0 {
			return status.Error(codes.Internal, "agent crashed")
		}
		return nil
	}
	addr := startBenchFake(t, f)
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	r := runOn(t, addr, "--scenarios", "cold", "-n", "4", "--warmup", "0", "--json", jsonPath)
	wantOK(t, r)
	res := readBenchJSON(t, jsonPath).Results[0]
	if res.Runs != 4 || res.Successes != 2 || len(res.Errors) != 1 || !strings.Contains(res.Errors[0], "agent crashed (internal)") {
		t.Errorf("cold = %d runs, %d successes, errors %q", res.Runs, res.Successes, res.Errors)
	}
	if strings.Count(r.stderr, "agent crashed") != 1 || !strings.Contains(r.stdout, "2 failed") {
		t.Errorf("want the failure noted once and counted in the table:\nstdout %s\nstderr %s", r.stdout, r.stderr)
	}
	f.locked(func() {
		if len(f.live) != 0 {
			t.Errorf("sandboxes of failed runs left: %v", f.live)
		}
	})

	f.locked(func() {
		f.execHook = func(int, *sandboxv1.ExecRequest) error { return status.Error(codes.Internal, "always") }
	})
	r = runOn(t, addr, "--scenarios", "warm,exec", "-n", "2", "--warmup", "0", "--json", jsonPath)
	wantFailed(t, r)
	if want := "no successful run of warm, exec-python, exec-bash, exec-bash-session (see the errors above)"; r.err.Error() != want {
		t.Errorf("err = %q, want %q", r.err, want)
	}
	if len(readBenchJSON(t, jsonPath).Results) != 4 || !strings.Contains(r.stdout, "SCENARIO") {
		t.Errorf("no report written for a failed benchmark:\n%s", r.stdout)
	}
}

// TestBenchInterrupted guarantees Ctrl-C: bench stops, destroys the
// sandboxes it holds (exec's and the one being measured), writes no
// report, and returns the context's error.
func TestBenchInterrupted(t *testing.T) {
	f := newBenchFake(1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.execHook = func(n int, _ *sandboxv1.ExecRequest) error {
		if n == 4 {
			cancel()
		}
		return nil
	}
	addr := startBenchFake(t, f)
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	r := runBench(ctx, t, addr, "--scenarios", "cold,exec", "-n", "5", "--json", jsonPath)
	if !errors.Is(r.err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled\nstderr: %s", r.err, r.stderr)
	}
	if _, err := os.Stat(jsonPath); err == nil || r.stdout != "" {
		t.Errorf("a report was written after Ctrl-C: %s", r.stdout)
	}
	f.locked(func() {
		if len(f.live) != 0 {
			t.Errorf("sandboxes left after Ctrl-C: %v", f.live)
		}
	})
}

// TestBenchUsageErrors guarantees that bad flags are usage errors found
// before any daemon is contacted, and that unwritable output paths fail at
// once too.
func TestBenchUsageErrors(t *testing.T) {
	const addr = "127.0.0.1:1" // never reached
	for _, args := range [][]string{
		{"--scenarios", "warm,hot"},
		{"--scenarios", "none"},
		{"-n", "0"},
		{"--warmup", "-1"},
		{"--concurrency", "-2"},
		{"--file-mib", "0"},
		{"--pool-wait", "-1s"},
		{"--plot", "cdf.gif"},
		{"--baselines", "--runsc", "", "--rootfs", "/r"},
		{"--baselines", "--runsc", "/r", "--rootfs", ""},
	} {
		r := runOn(t, addr, args...)
		var ue *UsageError
		if !errors.As(r.err, &ue) || r.stdout != "" || r.stderr != "" {
			t.Errorf("%q: err %v, stdout %q, stderr %q; want a usage error alone", args, r.err, r.stdout, r.stderr)
		}
	}
	r := runOn(t, addr, "--json", "/nonexistent/dir/r.json")
	wantFailed(t, r)
	if !strings.Contains(r.err.Error(), "/nonexistent/dir is not a directory") {
		t.Errorf("err = %q", r.err)
	}
	r = runOn(t, addr, "--baselines", "--runsc", "", "--rootfs", "/r")
	if r.err == nil || !strings.Contains(r.err.Error(), "pass --runsc PATH") {
		t.Errorf("missing runsc: err = %v, want it to say to pass --runsc", r.err)
	}
}

// TestBenchTemplateWithoutPool guarantees that warm runs of a template that
// has no pool are announced as cold starts, and that --template reaches
// every CreateSandbox.
func TestBenchTemplateWithoutPool(t *testing.T) {
	f := newBenchFake(1)
	addr := startBenchFake(t, f)
	r := runOn(t, addr, "--scenarios", "warm", "--template", "big", "-n", "1", "--warmup", "0")
	wantOK(t, r)
	if !strings.Contains(r.stderr, `sandboxctl: bench: template "big" has no warm pool: warm runs will be cold starts`) {
		t.Errorf("stderr = %s", r.stderr)
	}
	f.locked(func() {
		for _, c := range f.creates {
			if c.GetTemplate() != "big" {
				t.Errorf("create of template %q, want big", c.GetTemplate())
			}
		}
	})
}
