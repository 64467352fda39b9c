package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// benchFake is an in-process daemon with a warm pool, for bench: creates
// take from the pool unless bypass_pool (cold_start says which), the pool
// refills after refill, Exec understands the scenarios' code, and files are
// kept per sandbox.
type benchFake struct {
	sandboxv1.UnimplementedSandboxServiceServer

	targetIdle int32
	refill     time.Duration
	// execHook, if set, runs at the start of every Exec with its number
	// (from 1); a non-nil result is the Exec's failure.
	execHook func(n int, req *sandboxv1.ExecRequest) error

	mu        sync.Mutex
	idle      int32
	booting   int32
	seq       int
	live      map[string]map[string]string // sandbox ID -> labels
	files     map[string][]byte            // ID + "/" + path -> contents
	creates   []*sandboxv1.CreateSandboxRequest
	codes     []string
	execs     int
	maxChunk  int
	maxLive   int
	destroyed int
}

func newBenchFake(targetIdle int32) *benchFake {
	return &benchFake{
		targetIdle: targetIdle, idle: targetIdle, refill: 10 * time.Millisecond,
		live: map[string]map[string]string{}, files: map[string][]byte{},
	}
}

func (f *benchFake) CreateSandbox(_ context.Context, req *sandboxv1.CreateSandboxRequest) (*sandboxv1.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates = append(f.creates, req)
	cold := req.GetBypassPool() || f.idle == 0
	if !cold {
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
	f.maxLive = max(f.maxLive, len(f.live))
	template := req.GetTemplate()
	if template == "" {
		template = "python"
	}
	return &sandboxv1.Sandbox{SandboxId: id, Template: template, State: sandboxv1.SandboxState_SANDBOX_STATE_RUNNING, ColdStart: cold}, nil
}

func (f *benchFake) DestroySandbox(_ context.Context, req *sandboxv1.DestroySandboxRequest) (*sandboxv1.DestroySandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.live[req.GetSandboxId()]; ok {
		f.destroyed++
	}
	delete(f.live, req.GetSandboxId())
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
	return &sandboxv1.ListPoolsResponse{Pools: []*sandboxv1.Pool{{
		Template: "python", Idle: f.idle, Booting: f.booting, TargetIdle: f.targetIdle, MaxTotal: 16,
	}}}, nil
}

// locked runs fn with f.mu held, to read or change the fake's state.
func (f *benchFake) locked(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

// fakeOutputs is what the fake's Exec prints for the code bench runs.
var fakeOutputs = map[string]string{printCode: "1\n", execPythonCode: "", execBashCode: "", warmImportsCode: ""}

func (f *benchFake) Exec(req *sandboxv1.ExecRequest, stream grpc.ServerStreamingServer[sandboxv1.ExecEvent]) error {
	f.mu.Lock()
	f.execs++
	n := f.execs
	f.codes = append(f.codes, req.GetLanguage().String()+":"+req.GetCode())
	_, ok := f.live[req.GetSandboxId()]
	hook := f.execHook
	f.mu.Unlock()
	if !ok {
		return status.Errorf(codes.NotFound, "sandbox %q not found", req.GetSandboxId())
	}
	if hook != nil {
		if err := hook(n, req); err != nil {
			return err
		}
	}
	out, known := fakeOutputs[req.GetCode()]
	if !known {
		return stream.Send(resultEvent(&sandboxv1.ExecResult{Status: sandboxv1.ExecStatus_EXEC_STATUS_ERROR, ExitCode: 1, ErrorName: "NameError"}))
	}
	if out != "" {
		if err := stream.Send(stdoutEvent(out)); err != nil {
			return err
		}
	}
	return stream.Send(resultEvent(&sandboxv1.ExecResult{Status: sandboxv1.ExecStatus_EXEC_STATUS_OK}))
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

// startBenchFake serves f on a fresh unix socket and returns its path.
func startBenchFake(t *testing.T, f *benchFake) string {
	t.Helper()
	srv := grpc.NewServer()
	sandboxv1.RegisterSandboxServiceServer(srv, f)
	return serveOn(t, srv)
}

// serveOn serves srv on a fresh unix socket until the test ends.
func serveOn(t *testing.T, srv *grpc.Server) string {
	t.Helper()
	sock := filepath.Join(socketDir(t), "d.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return sock
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
		Name         string    `json:"name"`
		Kind         string    `json:"kind"`
		Runs         int       `json:"runs"`
		Successes    int       `json:"successes"`
		P50MS        *float64  `json:"p50_ms"`
		SamplesMS    []float64 `json:"samples_ms"`
		Creates      *int      `json:"creates"`
		ColdStarts   *int      `json:"cold_starts"`
		Bytes        int64     `json:"bytes"`
		MiBPerSecP50 *float64  `json:"mib_per_s_p50"`
		Errors       []string  `json:"errors"`
	} `json:"results"`
	VS []comparison `json:"vs"`
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
// daemon with a pool: every row with its runs; warm runs served warm after
// bench waited for the refill and cold runs booted; cold-ready runs the
// warm imports; exec runs Python and bash; files moves the file in 1 MiB
// chunks and checks it; burst runs K = 2 x target_idle at once for
// ceil(N/K) rounds; every sandbox carries the run's label and is destroyed;
// the table, JSON, CSV and plot are written and progress is one line per
// round.
func TestBenchAllScenarios(t *testing.T) {
	f := newBenchFake(2)
	sock := startBenchFake(t, f)
	dir := t.TempDir()
	jsonPath, csvPath, plotPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.csv"), filepath.Join(dir, "r.svg")
	r := runOn(t, sock, "", "bench", "-n", "3", "--warmup", "1", "--file-mib", "2",
		"--json", jsonPath, "--csv", csvPath, "--plot", plotPath)
	wantExit(t, r, 0)

	rep := readBenchJSON(t, jsonPath)
	want := map[string]int{ // timed runs per row
		"warm": 3, "cold": 3, "cold-ready": 3, "exec-python": 3, "exec-bash": 3,
		"files-upload": 3, "files-download": 3,
		"burst": 4, // K = 2 x target_idle = 4, ceil(3/4) = 1 round of 4
	}
	var names []string
	for _, res := range rep.Results {
		names = append(names, res.Name)
		if res.Kind != kindScenario || res.Runs != want[res.Name] || res.Successes != res.Runs || len(res.SamplesMS) != res.Runs || res.P50MS == nil {
			t.Errorf("%s: kind %s, %d runs, %d successes, %d samples; want %d successful runs (errors %q)",
				res.Name, res.Kind, res.Runs, res.Successes, len(res.SamplesMS), want[res.Name], res.Errors)
		}
		switch res.Name {
		case "warm":
			if *res.Creates != 3 || *res.ColdStarts != 0 {
				t.Errorf("warm: %d of %d cold starts, want all pool hits", *res.ColdStarts, *res.Creates)
			}
		case "cold", "cold-ready":
			if *res.Creates != 3 || *res.ColdStarts != 3 {
				t.Errorf("%s: %d of %d cold starts, want all", res.Name, *res.ColdStarts, *res.Creates)
			}
		case "burst":
			if *res.Creates != 4 || *res.ColdStarts != 2 {
				t.Errorf("burst: %d of %d cold starts, want 2 (the pool held 2)", *res.ColdStarts, *res.Creates)
			}
		case "files-upload", "files-download":
			if res.Bytes != 2<<20 || res.MiBPerSecP50 == nil {
				t.Errorf("%s: bytes %d, rate %v", res.Name, res.Bytes, res.MiBPerSecP50)
			}
		}
	}
	if got := strings.Join(names, ","); got != "warm,cold,cold-ready,exec-python,exec-bash,files-upload,files-download,burst" {
		t.Errorf("rows = %s", got)
	}
	if rep.Config.BurstConcurrency != 4 || rep.Config.FileBytes != 2<<20 || len(rep.Pools) != 1 || rep.Pools[0].TargetIdle != 2 {
		t.Errorf("config = %+v, pools = %+v", rep.Config, rep.Pools)
	}
	if len(rep.VS) != 0 {
		t.Errorf("vs = %v, want none without baselines", rep.VS)
	}

	f.locked(func() {
		if len(f.live) != 0 {
			t.Errorf("sandboxes left: %v", f.live)
		}
		for _, c := range f.creates {
			if !strings.HasPrefix(c.GetLabels()[benchLabel], "20") {
				t.Errorf("create without the run label: %v", c)
			}
		}
		if f.maxChunk != benchFileChunk {
			t.Errorf("largest upload chunk %d bytes, want %d", f.maxChunk, benchFileChunk)
		}
		for _, code := range []string{"LANGUAGE_PYTHON:" + printCode, "LANGUAGE_PYTHON:" + warmImportsCode, "LANGUAGE_PYTHON:pass", "LANGUAGE_BASH:true"} {
			if !slices.Contains(f.codes, code) {
				t.Errorf("no exec of %q", code)
			}
		}
	})

	for _, s := range []string{"SCENARIO", "warm", "pool hits 3/3", "cold starts 3/3", "MiB/s at p50", "burst"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("table lacks %q:\n%s", s, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "BASELINE") {
		t.Errorf("baseline section without --baselines:\n%s", r.stdout)
	}
	for _, s := range []string{"round 1/4 (warm-up): warm", "round 4/4: warm", "burst: 4 concurrent creates per round, 1 rounds (+1 warm-up)"} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
	csvData, _ := os.ReadFile(csvPath)
	if lines := strings.Split(strings.TrimSpace(string(csvData)), "\n"); len(lines) != 9 {
		t.Errorf("CSV has %d lines, want header + 8 rows:\n%s", len(lines), csvData)
	}
	if svg, _ := os.ReadFile(plotPath); !bytes.Contains(svg, []byte("<svg")) {
		t.Errorf("plot is not an SVG: %.100s", svg)
	}
}

// TestBenchWaitsForPool guarantees that each warm run measures a pool hit
// even when refills are slower than a run: bench waits for ListPools to
// show the pool refilled.
func TestBenchWaitsForPool(t *testing.T) {
	f := newBenchFake(1)
	f.refill = 300 * time.Millisecond
	sock := startBenchFake(t, f)
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	r := runOn(t, sock, "", "bench", "--scenarios", "warm", "-n", "3", "--warmup", "0", "--json", jsonPath)
	wantExit(t, r, 0)
	res := readBenchJSON(t, jsonPath).Results[0]
	if res.Successes != 3 || *res.ColdStarts != 0 {
		t.Errorf("warm: %d successes, %d cold starts; want 3 hits", res.Successes, *res.ColdStarts)
	}
}

// TestBenchWithoutPools guarantees graceful handling of a daemon that does
// not implement pools yet (ListPools Unimplemented, cold_start never set):
// bench says so, runs burst with K = 2, warns that cold runs may have been
// pool hits, reports pools as null, and succeeds.
func TestBenchWithoutPools(t *testing.T) {
	f := &fakeServer{exec: func(req *sandboxv1.ExecRequest, s execStream) error {
		if req.GetCode() == printCode {
			if err := s.Send(stdoutEvent("1\n")); err != nil {
				return err
			}
		}
		return s.Send(okResult)
	}}
	sock := startFake(t, f)
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	r := runOn(t, sock, "", "bench", "--scenarios", "warm,cold,exec,burst", "-n", "2", "--warmup", "0", "--json", jsonPath)
	wantExit(t, r, 0)
	for _, s := range []string{
		"sandboxctl: bench: this daemon does not implement ListPools",
		"burst: 2 concurrent creates per round, 1 rounds",
		"sandboxctl: bench: cold: 2 of 2 sandboxes came with cold_start false",
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
		if len(f.sandboxes) != 0 {
			t.Errorf("sandboxes left: %v", f.sandboxes)
		}
	})
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
	sock := startBenchFake(t, f)
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	r := runOn(t, sock, "", "bench", "--scenarios", "cold", "-n", "4", "--warmup", "0", "--json", jsonPath)
	wantExit(t, r, 0)
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
	r = runOn(t, sock, "", "bench", "--scenarios", "warm,exec", "-n", "2", "--warmup", "0", "--json", jsonPath)
	wantExit(t, r, 1)
	if !strings.HasSuffix(r.stderr, "sandboxctl: bench: no successful run of warm, exec-python, exec-bash (see the errors above)\n") {
		t.Errorf("stderr = %s", r.stderr)
	}
	if len(readBenchJSON(t, jsonPath).Results) != 3 || !strings.Contains(r.stdout, "SCENARIO") {
		t.Errorf("no report written for a failed benchmark:\n%s", r.stdout)
	}
}

// TestBenchWrongOutput guarantees that a run whose first Exec does not
// print "1\n" is a failure, even though the Exec itself succeeded.
func TestBenchWrongOutput(t *testing.T) {
	f := &fakeServer{} // Exec succeeds with no output
	sock := startFake(t, f)
	r := runOn(t, sock, "", "bench", "--scenarios", "cold", "-n", "1", "--warmup", "0")
	wantExit(t, r, 1)
	if !strings.Contains(r.stderr, `cold: run 1 failed: stdout "", want "1\n"`) {
		t.Errorf("stderr = %s", r.stderr)
	}
}

// TestBenchInterrupted guarantees Ctrl-C: bench stops, destroys the
// sandboxes it holds (exec's and the one being measured), writes no
// report, and exits 130.
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
	sock := startBenchFake(t, f)
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"--socket", sock, "bench", "--scenarios", "cold,exec", "-n", "5", "--json", jsonPath},
		strings.NewReader(""), &stdout, &stderr)
	if code != exitInterrupted {
		t.Fatalf("exit status %d, want 130\nstderr: %s", code, stderr.String())
	}
	if !strings.HasSuffix(stderr.String(), "sandboxctl: bench: interrupted\n") {
		t.Errorf("stderr = %s", stderr.String())
	}
	if _, err := os.Stat(jsonPath); err == nil || stdout.Len() > 0 {
		t.Errorf("a report was written after Ctrl-C: %s", stdout.String())
	}
	f.locked(func() {
		if len(f.live) != 0 {
			t.Errorf("sandboxes left after Ctrl-C: %v", f.live)
		}
	})
}

// TestBenchUsageErrors guarantees that bad flags are usage errors (exit 2,
// one line) found before any daemon is contacted, and that unwritable
// output paths fail at once too.
func TestBenchUsageErrors(t *testing.T) {
	sock := filepath.Join(socketDir(t), "none.sock") // never reached
	for _, args := range [][]string{
		{"bench", "--scenarios", "warm,hot"},
		{"bench", "--scenarios", "none"},
		{"bench", "-n", "0"},
		{"bench", "--warmup", "-1"},
		{"bench", "--concurrency", "-2"},
		{"bench", "--file-mib", "0"},
		{"bench", "--pool-wait", "-1s"},
		{"bench", "--plot", "cdf.gif"},
		{"bench", "--baselines", "--runsc", "", "--rootfs", "/r"},
		{"bench", "--baselines", "--runsc", "/r", "--rootfs", ""},
		{"bench", "extra"},
	} {
		r := runOn(t, sock, "", args...)
		if r.code != exitUsage || !strings.HasPrefix(r.stderr, "sandboxctl: bench: ") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want one usage line and exit 2", args, r.code, r.stderr)
		}
	}
	r := runOn(t, sock, "", "bench", "--json", "/nonexistent/dir/r.json")
	wantExit(t, r, 1)
	if !strings.Contains(r.stderr, "/nonexistent/dir is not a directory") {
		t.Errorf("stderr = %q", r.stderr)
	}
	r = runOn(t, sock, "", "bench", "--baselines", "--runsc", "", "--rootfs", "/r")
	if !strings.Contains(r.stderr, "pass --runsc PATH") {
		t.Errorf("missing runsc: stderr = %q, want it to say to pass --runsc", r.stderr)
	}
}

// TestBenchUnreachable guarantees that an absent daemon fails bench at once
// with the usual one-line hint, not with a table of failed runs.
func TestBenchUnreachable(t *testing.T) {
	sock := filepath.Join(socketDir(t), "none.sock")
	r := runOn(t, sock, "", "bench")
	wantExit(t, r, 1)
	if want := "sandboxctl: bench: cannot reach sandboxd at " + sock + ": is the daemon running? (sudo make run)\n"; r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
}

// TestBenchTemplateWithoutPool guarantees that warm runs of a template that
// has no pool are announced as cold starts, and that --template reaches
// every CreateSandbox.
func TestBenchTemplateWithoutPool(t *testing.T) {
	f := newBenchFake(1)
	sock := startBenchFake(t, f)
	r := runOn(t, sock, "", "bench", "--scenarios", "warm", "--template", "big", "-n", "1", "--warmup", "0")
	wantExit(t, r, 0)
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
