package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/csv"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// Soak settings.
const (
	// soakDefault is how long the churn runs without SANDBOXD_SOAK: in
	// `make test` two minutes give every fault several rounds; `make soak`
	// runs 30.
	soakDefault = 2 * time.Minute
	// soakPoolIdle is the pool's idle target in testdata/soak.yaml, which
	// the daemon is back at when it has settled.
	soakPoolIdle = 2
	// soakClients churn at once: with the pool's 2 idle sandboxes and one
	// refilling that is 7 of the policy's 8, so the host is nearly full
	// and a create is now and then refused, while the 2 cores keep up.
	soakClients = 4
	// execsPerSandbox is how many Execs a client runs in each sandbox
	// before its transfer and destroy: enough to follow a timeout or a
	// killed worker with another Exec, few enough that sandboxes churn.
	execsPerSandbox = 4
	// faultEvery is the fault injector's period. It cycles kill, cancel,
	// reload, cancel, so a runsc process dies and the policy flips every
	// 20 s and an Exec is cancelled every 10 s.
	faultEvery = 5 * time.Second
	// minSampleEvery and soakSamples set the sampling interval: every 10 s,
	// or 30 samples in all for runs longer than 5 minutes.
	minSampleEvery = 10 * time.Second
	soakSamples    = 30
	// shortTimeout is the Exec timeout of the scenarios meant to time out.
	shortTimeout = time.Second
	// execGrace is added to an Exec's timeout for the call's deadline: the
	// daemon's own margin (5 s) and ample time for a loaded host to bring
	// the result, so an Exec reaching its deadline means a hang.
	execGrace = time.Minute
	// createTimeout is the deadline of CreateSandbox: a minute past the
	// daemon's own boot timeout (manager.BootTimeout, 2 minutes), so the
	// daemon always answers first.
	createTimeout = 3 * time.Minute
	// rpcTimeout is the deadline of every other call, which takes
	// milliseconds.
	rpcTimeout = time.Minute
	// callGrace is how long after its deadline a call may return before it
	// counts as hung past it.
	callGrace = 5 * time.Second
	// transferBytes is the size of each upload and download round trip.
	transferBytes = 64 << 10
	// settleTimeout bounds the wait, after the churn, for the pool to be
	// full and idle again and for destroyed sandboxes to leave nothing.
	settleTimeout = 3 * time.Minute
	// settleQuiet is how long the daemon is left alone, once settled,
	// before the final measurement: timers of destroyed sandboxes and idle
	// gRPC streams run out.
	settleQuiet = 15 * time.Second
)

// Leak bounds, comparing the settled daemon after the churn with the
// settled daemon before it (the same policy, a full pool, no client
// sandbox). The counts move by themselves a little: the retired pools'
// last sandboxes and the metrics connection come and go.
const (
	soakFDSlack        = 16
	soakGoroutineSlack = 32
	// soakRSSGrowth bounds the growth of the daemon's resident memory: the
	// race detector's shadow memory and the Go heap grow with the peak
	// load and are not returned at once, a leak keeps growing with time.
	soakRSSGrowth = 192 << 20
	// monotonicBound is the growth of a count that rose at every sample
	// that is called a leak.
	monotonicBound = 32
)

// soakScenario is one kind of Exec the clients run.
type soakScenario struct {
	name    string
	lang    sandboxv1.Language
	code    string
	timeout time.Duration
	// ok says whether r is a right result on a sandbox no fault touched,
	// whose output cap is outputCap.
	ok func(r execResult, outputCap int64) bool
	// harms: the scenario may kill its own sandbox (out of memory).
	harms bool
}

func hasStatus(r execResult, st sandboxv1.ExecStatus) bool { return r.result.GetStatus() == st }

// soakScenarios mix normal Execs with each way code can end badly.
var soakScenarios = []soakScenario{
	{name: "python", lang: sandboxv1.Language_LANGUAGE_PYTHON, code: "print(sum(range(1000)))", timeout: time.Minute,
		ok: func(r execResult, _ int64) bool {
			return hasStatus(r, sandboxv1.ExecStatus_EXEC_STATUS_OK) && r.stdout == "499500\n"
		}},
	{name: "bash", lang: sandboxv1.Language_LANGUAGE_BASH, code: "echo ok; ls /workspace >/dev/null", timeout: time.Minute,
		ok: func(r execResult, _ int64) bool {
			return hasStatus(r, sandboxv1.ExecStatus_EXEC_STATUS_OK) && r.stdout == "ok\n"
		}},
	{name: "python timeout", lang: sandboxv1.Language_LANGUAGE_PYTHON, code: "while True:\n    pass", timeout: shortTimeout,
		ok: func(r execResult, _ int64) bool { return hasStatus(r, sandboxv1.ExecStatus_EXEC_STATUS_TIMEOUT) }},
	{name: "bash timeout", lang: sandboxv1.Language_LANGUAGE_BASH, code: "sleep 60", timeout: shortTimeout,
		ok: func(r execResult, _ int64) bool { return hasStatus(r, sandboxv1.ExecStatus_EXEC_STATUS_TIMEOUT) }},
	{name: "bash flood", lang: sandboxv1.Language_LANGUAGE_BASH, code: "yes", timeout: time.Minute,
		ok: func(r execResult, outputCap int64) bool {
			return hasStatus(r, sandboxv1.ExecStatus_EXEC_STATUS_OUTPUT_TRUNCATED) && int64(len(r.stdout)+len(r.stderr)) == outputCap
		}},
	{name: "python flood", lang: sandboxv1.Language_LANGUAGE_PYTHON, code: "import sys\nwhile True:\n    sys.stdout.write('x' * 4096)", timeout: time.Minute,
		ok: func(r execResult, outputCap int64) bool {
			return hasStatus(r, sandboxv1.ExecStatus_EXEC_STATUS_OUTPUT_TRUNCATED) && int64(len(r.stdout)+len(r.stderr)) == outputCap
		}},
	{name: "python OOM", lang: sandboxv1.Language_LANGUAGE_PYTHON, code: "b = bytearray(1 << 30)\nb[::4096] = b'x' * len(b[::4096])", timeout: time.Minute, harms: true,
		ok: func(r execResult, _ int64) bool {
			return hasStatus(r, sandboxv1.ExecStatus_EXEC_STATUS_OOM_KILLED) ||
				hasStatus(r, sandboxv1.ExecStatus_EXEC_STATUS_ERROR) && r.result.GetErrorName() == "MemoryError"
		}},
	{name: "python kills its worker", lang: sandboxv1.Language_LANGUAGE_PYTHON, code: "import os\nos.kill(os.getpid(), 9)", timeout: time.Minute,
		ok: func(r execResult, _ int64) bool {
			return hasStatus(r, sandboxv1.ExecStatus_EXEC_STATUS_KILLED) && r.result.GetStateLost()
		}},
}

// soak is one churn run against a daemon.
type soak struct {
	d           *daemon
	metricsAddr string
	policyPath  string
	policies    [2][]byte // testdata/soak.yaml and its variant
	stop        atomic.Bool
	start       time.Time // of the churn

	mu         sync.Mutex
	counts     map[string]int
	violations []string
	// faulted holds the sandboxes the fault injector killed a process of
	// and those whose own Exec may have killed them (out of memory): only
	// these may die, fail calls or give wrong results.
	faulted map[string]bool
	// faults lists the kills and reloads, with when, for the report.
	faults []string
	// execs are the Execs in flight, for the injector to cancel.
	execs    map[int]*inflightExec
	nextExec int
	policy   int // index in policies of the policy in force
}

// inflightExec is an Exec the injector may cancel.
type inflightExec struct {
	cancel    context.CancelFunc
	cancelled atomic.Bool
}

// TestSoakChurn guarantees that under SANDBOXD_SOAK (default 2m) of churn
// by concurrent clients (create, Execs that succeed, time out, flood the
// output cap, run out of memory or kill their own interpreter, upload,
// download, destroy) while runsc sandbox and gofer processes are killed,
// Exec streams cancelled and the policy reloaded with SIGHUP, every RPC
// ends with a gRPC code that makes sense for it (never Unknown or
// Internal) before its deadline, every result is right for its scenario
// unless a fault hit its sandbox, and that once the churn ends and
// everything is destroyed the daemon holds no more file descriptors,
// goroutines or memory than before it (within slack, and not growing at
// every sample), and no runsc process, runsc state, bundle, holder,
// record, cgroup or mount is left without a live sandbox, nor anything at
// all once the daemon stops. Samples of the daemon's RSS, FDs, goroutines
// and threads go to SANDBOXD_SOAK_CSV if set.
func TestSoakChurn(t *testing.T) {
	duration := soakDefault
	if v := os.Getenv("SANDBOXD_SOAK"); v != "" {
		var err error
		if duration, err = time.ParseDuration(v); err != nil || duration <= 0 {
			t.Fatalf("SANDBOXD_SOAK=%q: want a positive Go duration such as 30m (%v)", v, err)
		}
	}
	sampleEvery := max(minSampleEvery, duration/soakSamples)
	s := newSoak(t)
	live := s.settle(t, "before the churn")
	parent := hostCgroupParent(t, live[0])
	before := s.measure(t, 0)
	t.Logf("before the churn: %+v, %d pool sandboxes %v, cgroup parent %s", before, len(live), live, parent)

	start := time.Now()
	s.start = start
	var wg sync.WaitGroup
	for n := range soakClients {
		wg.Add(1)
		go func() { defer wg.Done(); s.client(n) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); s.injectFaults() }()
	samples := []soakSample{before}
	for time.Since(start) < duration {
		time.Sleep(min(sampleEvery, duration-time.Since(start)))
		samples = append(samples, s.measure(t, time.Since(start)))
	}
	s.stop.Store(true)
	wg.Wait()
	churn := time.Since(start)

	s.setPolicy(0) // the policy of the baseline
	s.destroyAll(t)
	s.settle(t, "after the churn")
	time.Sleep(settleQuiet)
	live = s.settle(t, "after the quiet period")
	after := s.measure(t, time.Since(start))
	samples = append(samples, after)
	s.report(t, churn, samples)
	s.writeCSV(t, samples)

	if after.fds > before.fds+soakFDSlack || after.goroutines > before.goroutines+soakGoroutineSlack || after.rss > before.rss+soakRSSGrowth {
		t.Errorf("the settled daemon holds more after %v of churn: %+v, before: %+v (slack %d FDs, %d goroutines, %d MiB)",
			churn, after, before, soakFDSlack, soakGoroutineSlack, soakRSSGrowth>>20)
	}
	for name, get := range map[string]func(soakSample) int{
		"FDs": func(x soakSample) int { return x.fds }, "goroutines": func(x soakSample) int { return x.goroutines },
	} {
		if vals := sampleValues(samples[1:len(samples)-1], get); growsMonotonically(vals, monotonicBound) {
			t.Errorf("the daemon's %s grew at every sample, by %d in all: %v", name, vals[len(vals)-1]-vals[0], vals)
		}
	}
	s.wantNothingStray(t, live, parent)
	for _, v := range s.violations {
		t.Error(v)
	}

	s.d.stop()
	s.wantNothingLeft(t, parent)
}

// newSoak starts the daemon on a copy of testdata/soak.yaml with a metrics
// listener, and prepares the policy variant the reloads swap in.
func newSoak(t *testing.T) *soak {
	path := copyPolicy(t, "soak.yaml")
	a, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	output, idle := []byte("output: 64Ki"), []byte("idle: 2")
	if bytes.Count(a, output) != 1 || bytes.Count(a, idle) != 1 {
		t.Fatal("testdata/soak.yaml has no `output: 64Ki` or `idle: 2` to swap on reloads")
	}
	b := bytes.Replace(bytes.Replace(a, output, []byte("output: 48Ki"), 1), idle, []byte("idle: 1"), 1)
	metricsAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	d := startDaemon(t, daemonOpts{policy: path, args: []string{"--metrics-listen", metricsAddr}})
	return &soak{
		d: d, policyPath: path, policies: [2][]byte{a, b}, metricsAddr: metricsAddr,
		counts: map[string]int{}, faulted: map[string]bool{}, execs: map[int]*inflightExec{},
	}
}

// client churns until the soak stops: create, Execs of random scenarios,
// an upload and download, destroy.
func (s *soak) client(n int) {
	rng := mrand.New(mrand.NewPCG(uint64(n), uint64(time.Now().UnixNano())))
	for !s.stop.Load() {
		sb := s.create()
		if sb == nil {
			time.Sleep(time.Second) // the host is full or a boot failed: let the pool refill
			continue
		}
		alive := true
		for i := 0; i < execsPerSandbox && alive && !s.stop.Load(); i++ {
			alive = s.exec(sb, soakScenarios[rng.IntN(len(soakScenarios))])
		}
		if alive {
			s.transfer(sb.SandboxId)
		}
		s.call("DestroySandbox", rpcTimeout, "", func(c context.Context) error {
			_, err := s.d.client.DestroySandbox(c, &sandboxv1.DestroySandboxRequest{SandboxId: sb.SandboxId})
			return err
		})
	}
}

// create makes a sandbox, or returns nil when the daemon refused.
func (s *soak) create() *sandboxv1.Sandbox {
	var sb *sandboxv1.Sandbox
	err := s.call("CreateSandbox", createTimeout, "", func(c context.Context) error {
		var err error
		sb, err = s.d.client.CreateSandbox(c, &sandboxv1.CreateSandboxRequest{Labels: map[string]string{"soak": "churn"}})
		return err
	}, codes.ResourceExhausted, codes.Unavailable) // host full; a boot a kill or a reload cut short
	if err != nil {
		return nil
	}
	return sb
}

// exec runs one scenario in sandbox sb and checks its result; it returns
// whether the sandbox may still be used.
func (s *soak) exec(sb *sandboxv1.Sandbox, sc soakScenario) bool {
	id := sb.SandboxId
	deadline := sc.timeout + execGrace
	c, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	in := &inflightExec{cancel: cancel}
	key := s.startExec(in)
	defer s.endExec(key)
	if sc.harms {
		s.markFaulted(id)
	}
	start := time.Now()
	r, err := s.d.tryRun(c, id, &sandboxv1.ExecRequest{Language: sc.lang, Code: sc.code, Timeout: durationpb.New(sc.timeout)})
	what := "Exec " + sc.name
	if status.Code(err) == codes.Canceled && in.cancelled.Load() {
		s.count(what + ": cancelled by the client")
		return true
	}
	s.done(what, start, deadline, id, err)
	if err != nil {
		return false
	}
	s.count(what + ": result " + strings.TrimPrefix(r.result.GetStatus().String(), "EXEC_STATUS_"))
	if !sc.ok(r, sb.GetLimits().GetOutputBytes()) && !s.isFaulted(id) {
		s.violate("%s in %s: %v (%q), stdout %d bytes %.80q, stderr %.200q", what, id, r.result.GetStatus(), r.result.GetMessage(), len(r.stdout), r.stdout, r.stderr)
	}
	switch r.result.GetStatus() {
	case sandboxv1.ExecStatus_EXEC_STATUS_SANDBOX_DIED, sandboxv1.ExecStatus_EXEC_STATUS_OOM_KILLED:
		return false
	}
	return true
}

// transfer uploads random bytes into sandbox id and downloads them back.
func (s *soak) transfer(id string) {
	data := make([]byte, transferBytes)
	rand.Read(data)
	const path = "soak/data.bin"
	err := s.call("Upload", rpcTimeout, id, func(c context.Context) error {
		stream, err := s.d.client.Upload(c)
		if err != nil {
			return err
		}
		hdr := &sandboxv1.FileHeader{SandboxId: id, Path: path, MakeParents: true}
		if err := stream.Send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Header{Header: hdr}}); err == nil {
			stream.Send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Chunk{Chunk: data}})
		}
		_, err = stream.CloseAndRecv()
		return err
	})
	if err != nil {
		return
	}
	var got bytes.Buffer
	err = s.call("Download", rpcTimeout, id, func(c context.Context) error {
		stream, err := s.d.client.Download(c, &sandboxv1.DownloadRequest{SandboxId: id, Path: path})
		if err != nil {
			return err
		}
		for {
			msg, err := stream.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			got.Write(msg.GetChunk())
		}
	})
	if err == nil && !bytes.Equal(got.Bytes(), data) && !s.isFaulted(id) {
		s.violate("Download of %s from %s: %d bytes that differ from the %d uploaded", path, id, got.Len(), len(data))
	}
}

// call runs one RPC under a deadline of timeout and checks how it ended
// (see done). id names the sandbox the call is about, if any.
func (s *soak) call(what string, timeout time.Duration, id string, fn func(context.Context) error, allowed ...codes.Code) error {
	c, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	err := fn(c)
	s.done(what, start, timeout, id, err, allowed...)
	return err
}

// done counts how a call ended and records a violation if it returned
// past its deadline, reached it (the daemon did not answer in ample
// time), or ended with a code other than OK and allowed. A sandbox a fault
// hit may also be FAILED_PRECONDITION (dead) or UNAVAILABLE (its agent
// went away mid-call).
func (s *soak) done(what string, start time.Time, timeout time.Duration, id string, err error, allowed ...codes.Code) {
	took := time.Since(start)
	code := status.Code(err)
	s.count(what + ": code " + code.String())
	allowed = append(allowed, codes.OK)
	if id != "" && s.isFaulted(id) {
		allowed = append(allowed, codes.FailedPrecondition, codes.Unavailable)
	}
	switch {
	case took > timeout+callGrace:
		s.violate("%s returned after %v, past its %v deadline: %v", what, took.Round(time.Millisecond), timeout, err)
	case code == codes.DeadlineExceeded:
		s.violate("%s hung until its %v deadline", what, timeout)
	case !slices.Contains(allowed, code):
		s.violate("%s (sandbox %q): %v", what, id, err)
	}
}

// injectFaults runs until the soak stops, cycling: kill a runsc process,
// cancel an Exec, reload the other policy, cancel an Exec.
func (s *soak) injectFaults() {
	rng := mrand.New(mrand.NewPCG(uint64(soakClients), uint64(time.Now().UnixNano())))
	for n := 0; !s.stop.Load(); n++ {
		time.Sleep(faultEvery)
		switch n % 4 {
		case 0:
			s.killRunsc(rng)
		case 1, 3:
			s.cancelExec(rng)
		case 2:
			s.setPolicy(1 - s.policyInForce())
		}
	}
}

// soakIDPattern matches the sandbox IDs sandboxd makes (identifiers.NewID).
var soakIDPattern = regexp.MustCompile(`sb-[a-z2-7]{24}`)

// runscProc is a process of one of the daemon's sandboxes.
type runscProc struct {
	pid  int
	kind string // argv[0]: runsc-sandbox or runsc-gofer
	id   string
}

// runscProcs lists the sandbox and gofer processes under the runsc root.
func runscProcs(root string) []runscProc {
	var out []runscProc
	for _, line := range strayProcesses(root) {
		pid, cmdline, _ := strings.Cut(line, ": ")
		kind, _, _ := strings.Cut(cmdline, " ")
		n, err := strconv.Atoi(pid)
		if err != nil || kind != "runsc-sandbox" && kind != "runsc-gofer" {
			continue
		}
		out = append(out, runscProc{pid: n, kind: kind, id: soakIDPattern.FindString(cmdline)})
	}
	return out
}

// killRunsc SIGKILLs a random sandbox or gofer process of the daemon's:
// a client's sandbox, an idle pool member or a snapshot build.
func (s *soak) killRunsc(rng *mrand.Rand) {
	procs := runscProcs(s.d.runscRoot())
	if len(procs) == 0 {
		s.count("fault: no runsc process to kill")
		return
	}
	p := procs[rng.IntN(len(procs))]
	s.markFaulted(p.id) // before the kill: the calls it fails check after
	if err := syscall.Kill(p.pid, syscall.SIGKILL); err != nil {
		s.count("fault: kill " + p.kind + " missed (" + err.Error() + ")")
		return
	}
	s.count("fault: kill " + p.kind)
	s.fault("killed %s %d of %s", p.kind, p.pid, p.id)
}

// cancelExec cancels a random Exec in flight, as a client giving up.
func (s *soak) cancelExec(rng *mrand.Rand) {
	s.mu.Lock()
	keys := make([]int, 0, len(s.execs))
	for k := range s.execs {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var in *inflightExec
	if len(keys) > 0 {
		in = s.execs[keys[rng.IntN(len(keys))]]
	}
	s.mu.Unlock()
	if in == nil {
		s.count("fault: no Exec to cancel")
		return
	}
	in.cancelled.Store(true)
	in.cancel()
	s.count("fault: cancel an Exec")
}

func (s *soak) policyInForce() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policy
}

// setPolicy writes policy i (atomically, as a config manager would) and
// sends SIGHUP.
func (s *soak) setPolicy(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.policy == i {
		return
	}
	tmp := s.policyPath + ".new"
	if err := os.WriteFile(tmp, s.policies[i], 0o644); err != nil {
		s.violations = append(s.violations, "writing the policy: "+err.Error())
		return
	}
	if err := os.Rename(tmp, s.policyPath); err != nil {
		s.violations = append(s.violations, "writing the policy: "+err.Error())
		return
	}
	s.policy = i
	s.d.cmd.Process.Signal(syscall.SIGHUP)
	s.counts["fault: reload with SIGHUP"]++
	s.faults = append(s.faults, fmt.Sprintf("%6.1fs reloaded policy %d", time.Since(s.start).Seconds(), i))
}

func (s *soak) startExec(in *inflightExec) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextExec++
	s.execs[s.nextExec] = in
	return s.nextExec
}

func (s *soak) endExec(key int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.execs, key)
}

func (s *soak) markFaulted(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faulted[id] = true
}

func (s *soak) isFaulted(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faulted[id]
}

func (s *soak) count(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[what]++
}

// fault records a fault for the report.
func (s *soak) fault(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, fmt.Sprintf("%6.1fs ", time.Since(s.start).Seconds())+fmt.Sprintf(format, args...))
}

func (s *soak) violate(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violations = append(s.violations, fmt.Sprintf(format, args...))
}

// soakSample is the daemon's footprint at one time.
type soakSample struct {
	at                    time.Duration // since the churn started
	rss                   int64
	fds, goroutines       int
	threads, runscProcess int
}

// measure samples the daemon: resident memory, open file descriptors,
// goroutines (from its metrics), threads, and its sandboxes' runsc
// processes.
func (s *soak) measure(t *testing.T, at time.Duration) soakSample {
	t.Helper()
	pid := s.d.cmd.Process.Pid
	x := soakSample{at: at, rss: vmRSS(t, pid), runscProcess: len(runscProcs(s.d.runscRoot()))}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	x.fds = len(fds)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := lineWith(string(status), "Threads:"); ok {
		x.threads, _ = strconv.Atoi(strings.TrimSpace(v))
	}
	c := &http.Client{Timeout: rpcTimeout}
	resp, err := c.Get("http://" + s.metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("daemon metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("daemon metrics: %v", err)
	}
	if v, ok := lineWith(string(body), "go_goroutines "); ok {
		x.goroutines, _ = strconv.Atoi(strings.TrimSpace(v))
	}
	if x.goroutines == 0 || x.threads == 0 {
		t.Fatalf("no go_goroutines in the daemon's metrics or no Threads in /proc/%d/status", pid)
	}
	return x
}

// destroyAll destroys every sandbox the daemon lists (the clients'
// dead ones included) and waits until it lists none.
func (s *soak) destroyAll(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for {
		list, err := s.d.client.ListSandboxes(ctx(t), &sandboxv1.ListSandboxesRequest{})
		if err != nil {
			t.Fatalf("ListSandboxes: %v", err)
		}
		if len(list.Sandboxes) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon still lists %d sandboxes after destroying them all for %v: %v", len(list.Sandboxes), settleTimeout, list.Sandboxes)
		}
		for _, sb := range list.Sandboxes {
			s.call("DestroySandbox", rpcTimeout, "", func(c context.Context) error {
				_, err := s.d.client.DestroySandbox(c, &sandboxv1.DestroySandboxRequest{SandboxId: sb.SandboxId})
				return err
			})
		}
	}
}

// settle waits until the pool runs testdata/soak.yaml's target and is full
// with nothing booting and nothing in use, its snapshot is ready, and the
// runsc processes are exactly the pool's sandboxes, and returns the IDs of
// those.
func (s *soak) settle(t *testing.T, when string) []string {
	t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for {
		p := s.d.poolOf(t, "python")
		ids := map[string]bool{}
		var sandboxes int
		procs := runscProcs(s.d.runscRoot())
		for _, pr := range procs {
			ids[pr.id] = true
			if pr.kind == "runsc-sandbox" {
				sandboxes++
			}
		}
		if p.GetTargetIdle() == soakPoolIdle && p.GetIdle() == soakPoolIdle && p.GetBooting() == 0 && p.GetInUse() == 0 &&
			p.GetSnapshot().GetState() == sandboxv1.SnapshotState_SNAPSHOT_STATE_READY &&
			sandboxes == int(p.GetIdle()) && len(ids) == sandboxes {
			live := make([]string, 0, len(ids))
			for id := range ids {
				live = append(live, id)
			}
			sort.Strings(live)
			return live
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s, not settled after %v: pool %v; runsc processes %+v", when, settleTimeout, p, procs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// strays lists what the daemon holds on the host for a sandbox not in
// live: processes naming its state directory, runsc state, bundles,
// holders, records, paused images, cgroups under parent and mounts.
func (s *soak) strays(t *testing.T, live []string, parent string) (strays []string) {
	t.Helper()
	stray := func(what, name string) {
		id := soakIDPattern.FindString(name)
		if id == "" || !slices.Contains(live, id) {
			strays = append(strays, what+": "+name)
		}
	}
	for _, line := range strayProcessesNaming(s.d.stateDir) {
		stray("process", line)
	}
	for _, id := range runscList(t, s.d.runscRoot()) {
		stray("runsc list", id)
	}
	for _, dir := range []string{"runsc", "bundles", "holders", "sandboxes", "paused"} {
		entries, _ := os.ReadDir(filepath.Join(s.d.stateDir, dir))
		for _, e := range entries {
			id := soakIDPattern.FindString(e.Name())
			switch {
			case dir == "runsc" && id == "":
				// runsc's own (null-netns), not a sandbox's
			default:
				stray(dir, e.Name())
			}
		}
	}
	for _, dir := range hostCgroupsUnder(parent) {
		stray("cgroup", dir)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		// The runsc root's shared empty network namespace is runsc's.
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], s.d.stateDir) && f[4] != filepath.Join(s.d.runscRoot(), "null-netns") {
			stray("mount", line)
		}
	}
	return strays
}

// wantNothingStray fails the test if, within a short wait for clean-ups
// still running, anything is left for a sandbox not in live.
func (s *soak) wantNothingStray(t *testing.T, live []string, parent string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		strays := s.strays(t, live, parent)
		if len(strays) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("left without a live sandbox (live: %v):\n%s", live, strings.Join(strays, "\n"))
			return
		}
		time.Sleep(time.Second)
	}
}

// wantNothingLeft fails the test if the stopped daemon left a process, a
// sandbox's file, a cgroup or a mount.
func (s *soak) wantNothingLeft(t *testing.T, parent string) {
	t.Helper()
	if strays := s.strays(t, nil, parent); len(strays) > 0 {
		t.Errorf("left after the daemon stopped:\n%s", strings.Join(strays, "\n"))
	}
}

// strayProcessesNaming lists the processes other than this test's daemon
// whose command line contains dir.
func strayProcessesNaming(dir string) []string {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var found []string
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(dir)) || bytes.Contains(b, []byte("--state-dir\x00"+dir)) {
			continue
		}
		found = append(found, filepath.Base(filepath.Dir(p))+": "+strings.ReplaceAll(string(b), "\x00", " "))
	}
	return found
}

// hostCgroupsUnder lists the cgroup directories under the daemon's parent
// cgroup, in every v1 controller or in the v2 hierarchy.
func hostCgroupsUnder(parent string) []string {
	var out []string
	for _, pattern := range []string{"/sys/fs/cgroup/*/" + parent + "/*", "/sys/fs/cgroup/" + parent + "/*"} {
		m, _ := filepath.Glob(pattern)
		for _, dir := range m {
			if st, err := os.Stat(dir); err == nil && st.IsDir() {
				out = append(out, dir)
			}
		}
	}
	return out
}

// report logs the calls, results and faults counted, and the slopes of the
// samples taken during the churn.
func (s *soak) report(t *testing.T, churn time.Duration, samples []soakSample) {
	t.Helper()
	keys := make([]string, 0, len(s.counts))
	for k := range s.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %6d  %s\n", s.counts[k], k)
	}
	t.Logf("%v of churn by %d clients, %d violations; counts:\n%s", churn.Round(time.Second), soakClients, len(s.violations), b.String())
	t.Logf("faults:\n%s", strings.Join(s.faults, "\n"))
	during := samples[1 : len(samples)-1] // the first is before the churn, the last after the settle
	for name, get := range map[string]func(soakSample) float64{
		"RSS (MiB)":  func(x soakSample) float64 { return float64(x.rss) / (1 << 20) },
		"FDs":        func(x soakSample) float64 { return float64(x.fds) },
		"goroutines": func(x soakSample) float64 { return float64(x.goroutines) },
		"threads":    func(x soakSample) float64 { return float64(x.threads) },
	} {
		var vals []string
		for _, x := range samples {
			vals = append(vals, strconv.FormatFloat(get(x), 'f', 0, 64))
		}
		t.Logf("%-10s slope %+.2f/min during the churn; samples (before, during, settled after): %s", name, slopePerMinute(during, get), strings.Join(vals, " "))
	}
}

// writeCSV writes the samples to SANDBOXD_SOAK_CSV, if set.
func (s *soak) writeCSV(t *testing.T, samples []soakSample) {
	t.Helper()
	path := os.Getenv("SANDBOXD_SOAK_CSV")
	if path == "" {
		return
	}
	rows := [][]string{{"seconds", "rss_bytes", "fds", "goroutines", "threads", "runsc_processes"}}
	for _, x := range samples {
		rows = append(rows, []string{
			strconv.FormatFloat(x.at.Seconds(), 'f', 1, 64), strconv.FormatInt(x.rss, 10),
			strconv.Itoa(x.fds), strconv.Itoa(x.goroutines), strconv.Itoa(x.threads), strconv.Itoa(x.runscProcess),
		})
	}
	var b bytes.Buffer
	if err := csv.NewWriter(&b).WriteAll(rows); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("samples written to %s", path)
}

// slopePerMinute is the least-squares slope of get over the samples' times.
func slopePerMinute(samples []soakSample, get func(soakSample) float64) float64 {
	var n, sx, sy, sxx, sxy float64
	for _, x := range samples {
		m, v := x.at.Minutes(), get(x)
		n, sx, sy, sxx, sxy = n+1, sx+m, sy+v, sxx+m*m, sxy+m*v
	}
	if d := n*sxx - sx*sx; d != 0 {
		return (n*sxy - sx*sy) / d
	}
	return 0
}

func sampleValues(samples []soakSample, get func(soakSample) int) []int {
	out := make([]int, len(samples))
	for i, x := range samples {
		out[i] = get(x)
	}
	return out
}

// growsMonotonically reports whether vals never fell and rose by more than
// bound in all: a leak, where churn alone makes a count go up and down.
func growsMonotonically(vals []int, bound int) bool {
	for i := 1; i < len(vals); i++ {
		if vals[i] < vals[i-1] {
			return false
		}
	}
	return len(vals) > 1 && vals[len(vals)-1]-vals[0] > bound
}
