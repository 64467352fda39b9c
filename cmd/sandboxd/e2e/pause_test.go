package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// pause pauses sandbox id and requires it to end up PAUSED.
func (d *daemon) pause(t testing.TB, id string) *sandboxv1.Sandbox {
	t.Helper()
	sb, err := d.client.PauseSandbox(ctx(t), &sandboxv1.PauseSandboxRequest{SandboxId: id})
	if err != nil {
		t.Fatalf("PauseSandbox(%s): %v", id, err)
	}
	if sb.GetState() != sandboxv1.SandboxState_SANDBOX_STATE_PAUSED || sb.GetPausedAt() == nil {
		t.Fatalf("PauseSandbox(%s) = %v, paused_at %v; want PAUSED with paused_at", id, sb.GetState(), sb.GetPausedAt())
	}
	return sb
}

// get returns GetSandbox of id.
func (d *daemon) get(t testing.TB, id string) *sandboxv1.Sandbox {
	t.Helper()
	sb, err := d.client.GetSandbox(ctx(t), &sandboxv1.GetSandboxRequest{SandboxId: id})
	if err != nil {
		t.Fatalf("GetSandbox(%s): %v", id, err)
	}
	return sb
}

// waitState waits up to wait for sandbox id to reach state.
func (d *daemon) waitState(t testing.TB, id string, state sandboxv1.SandboxState, wait time.Duration) *sandboxv1.Sandbox {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		sb := d.get(t, id)
		if sb.GetState() == state {
			return sb
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox %s is %v (%s) after %s, want %v", id, sb.GetState(), sb.GetStateReason(), wait, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// hostCgroups returns the host cgroup directories of sandbox id.
func hostCgroups(id string) []string {
	var out []string
	for _, pattern := range []string{"/sys/fs/cgroup/*/sandboxd-*/" + id, "/sys/fs/cgroup/sandboxd-*/" + id} {
		m, _ := filepath.Glob(pattern)
		out = append(out, m...)
	}
	return out
}

// setState gives sandbox id state to keep: a Python variable, files in
// /workspace and /tmp, and a background process, whose PID it returns.
func setState(t testing.TB, d *daemon, id, value string) string {
	t.Helper()
	wantOK(t, py(t, d, id, "x = "+value+"\nopen('/workspace/w.txt', 'w').write('ws-"+value+"')\nopen('/tmp/t.txt', 'w').write('tmp-"+value+"')"))
	r := sh(t, d, id, "nohup sleep 100000 >/dev/null 2>&1 &\necho $!")
	wantOK(t, r)
	return strings.TrimSpace(r.stdout)
}

// wantState checks what setState left, after a pause and resume.
func wantState(t testing.TB, d *daemon, id, value, pid string) {
	t.Helper()
	r := py(t, d, id, "print(x, open('/workspace/w.txt').read(), open('/tmp/t.txt').read())")
	wantOK(t, r)
	if want := value + " ws-" + value + " tmp-" + value + "\n"; r.stdout != want {
		t.Errorf("sandbox %s after resume: %q, want %q", id, r.stdout, want)
	}
	r = sh(t, d, id, "kill -0 "+pid+" && echo alive")
	if r.stdout != "alive\n" {
		t.Errorf("sandbox %s: the background sleep (pid %s) is gone after resume: %q %q", id, pid, r.stdout, r.stderr)
	}
}

// TestPauseResumeKeepsState guarantees that PauseSandbox frees the
// sandbox's processes and cgroup and that the next Exec resumes it with
// its interpreter state, its files in /workspace and /tmp and its
// background processes; that a busy sandbox is not paused; and that
// ResumeSandbox and pausing twice behave.
func TestPauseResumeKeepsState(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, "pause.yaml")})
	id := d.create(t)
	pid := setState(t, d, id, "42")
	if len(hostCgroups(id)) == 0 || len(strayProcesses(d.runscRoot(), id)) == 0 {
		t.Fatal("no cgroup or runsc process found for the running sandbox: the checks below are blind")
	}

	// A running Exec is not cut by a pause: the pause is refused.
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	busy := make(chan error, 1)
	go func() {
		_, err := d.tryRun(c, id, &sandboxv1.ExecRequest{SandboxId: id, Language: sandboxv1.Language_LANGUAGE_PYTHON, Code: "import time; time.sleep(3)"})
		busy <- err
	}()
	time.Sleep(time.Second)
	_, err := d.client.PauseSandbox(ctx(t), &sandboxv1.PauseSandboxRequest{SandboxId: id})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("PauseSandbox during an Exec: %v, want FAILED_PRECONDITION", err)
	}
	if err := <-busy; err != nil {
		t.Fatalf("the Exec running during the refused pause: %v", err)
	}

	d.pause(t, id)
	d.pause(t, id) // pausing a paused sandbox succeeds
	if sb := d.get(t, id); sb.GetState() != sandboxv1.SandboxState_SANDBOX_STATE_PAUSED {
		t.Fatalf("GetSandbox after pause: %v", sb.GetState())
	}
	if got := hostCgroups(id); len(got) != 0 {
		t.Errorf("the paused sandbox still has cgroups %v", got)
	}
	if got := strayProcesses(d.runscRoot(), id); len(got) != 0 {
		t.Errorf("the paused sandbox still has processes %v", got)
	}
	if _, err := os.Stat(filepath.Join(d.stateDir, "paused", id)); err != nil {
		t.Errorf("no paused image: %v", err)
	}

	// The next Exec resumes it transparently.
	wantState(t, d, id, "42", pid)
	sb := d.get(t, id)
	if sb.GetState() != sandboxv1.SandboxState_SANDBOX_STATE_RUNNING || sb.GetPausedAt() != nil {
		t.Errorf("after the resuming Exec: %v, paused_at %v", sb.GetState(), sb.GetPausedAt())
	}
	if _, err := os.Stat(filepath.Join(d.stateDir, "paused", id)); !os.IsNotExist(err) {
		t.Errorf("the paused image is still there after the resume: %v", err)
	}

	// And explicitly, twice; a file transfer also resumes.
	d.pause(t, id)
	for range 2 {
		sb, err := d.client.ResumeSandbox(ctx(t), &sandboxv1.ResumeSandboxRequest{SandboxId: id})
		if err != nil || sb.GetState() != sandboxv1.SandboxState_SANDBOX_STATE_RUNNING {
			t.Fatalf("ResumeSandbox: %v %v", sb.GetState(), err)
		}
	}
	d.pause(t, id)
	data, _, err := d.download(t, id, "/workspace/w.txt")
	if err != nil || string(data) != "ws-42" {
		t.Fatalf("download from a paused sandbox: %q %v", data, err)
	}
	wantState(t, d, id, "42", pid)

	// Unknown IDs.
	for _, call := range []func() error{
		func() error {
			_, err := d.client.PauseSandbox(ctx(t), &sandboxv1.PauseSandboxRequest{SandboxId: "0123456789abcdef0123456789abcdef"})
			return err
		},
		func() error {
			_, err := d.client.ResumeSandbox(ctx(t), &sandboxv1.ResumeSandboxRequest{SandboxId: "0123456789abcdef0123456789abcdef"})
			return err
		},
	} {
		if err := call(); status.Code(err) != codes.NotFound {
			t.Errorf("pause/resume of an unknown sandbox: %v, want NOT_FOUND", err)
		}
	}
}

// TestAutoPauseThenIdleTimeout guarantees that a sandbox idle for its
// template's pause_after is paused by itself, and that idle_timeout still
// ends it while paused and deletes its image.
func TestAutoPauseThenIdleTimeout(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, "pause.yaml")})
	sb, err := d.client.CreateSandbox(ctx(t), &sandboxv1.CreateSandboxRequest{Template: "auto"})
	if err != nil {
		t.Fatal(err)
	}
	id := sb.SandboxId
	wantOK(t, py(t, d, id, "x = 7"))
	d.waitState(t, id, sandboxv1.SandboxState_SANDBOX_STATE_PAUSED, 8*time.Second)
	if _, err := os.Stat(filepath.Join(d.stateDir, "paused", id)); err != nil {
		t.Fatalf("auto-paused without an image: %v", err)
	}
	dead := d.waitState(t, id, sandboxv1.SandboxState_SANDBOX_STATE_DEAD, 15*time.Second)
	if !strings.Contains(dead.GetStateReason(), "idle for more than 10s") {
		t.Errorf("reason %q, want the idle timeout", dead.GetStateReason())
	}
	if _, err := os.Stat(filepath.Join(d.stateDir, "paused", id)); !os.IsNotExist(err) {
		t.Errorf("the paused image outlived the sandbox: %v", err)
	}
}

// TestCorruptPausedImageIsDataLoss guarantees that a damaged paused image
// is never restored: the resuming call fails with DATA_LOSS naming the
// sandbox, the sandbox is DEAD, and the daemon keeps serving.
func TestCorruptPausedImageIsDataLoss(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, "pause.yaml")})
	id := d.create(t)
	wantOK(t, py(t, d, id, "x = 1"))
	d.pause(t, id)
	files, _ := filepath.Glob(filepath.Join(d.stateDir, "paused", id, "*"))
	var victim string
	var size int64
	for _, f := range files {
		if st, err := os.Stat(f); err == nil && st.Size() > size && filepath.Base(f) != "manifest.json" {
			victim, size = f, st.Size()
		}
	}
	if victim == "" {
		t.Fatalf("no image file to corrupt in %v", files)
	}
	f, err := os.OpenFile(victim, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("garbage!"), size/2); err != nil {
		t.Fatal(err)
	}
	f.Close()

	_, err = d.tryRun(ctx(t), id, &sandboxv1.ExecRequest{SandboxId: id, Language: sandboxv1.Language_LANGUAGE_PYTHON, Code: "print(x)"})
	if status.Code(err) != codes.DataLoss || !strings.Contains(err.Error(), id) {
		t.Fatalf("Exec on a sandbox with a corrupt image: %v, want DATA_LOSS naming %s", err, id)
	}
	if sb := d.get(t, id); sb.GetState() != sandboxv1.SandboxState_SANDBOX_STATE_DEAD {
		t.Errorf("sandbox is %v after its image was found corrupt, want DEAD", sb.GetState())
	}
	wantOK(t, py(t, d, d.create(t), "print(1)"))
}

// TestRestartAdoptsPausedSandboxes guarantees that SIGTERM pauses every
// live sandbox and that the restarted daemon lists them PAUSED and resumes
// each with its state; a sandbox destroyed before the stop stays gone.
func TestRestartAdoptsPausedSandboxes(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, "pause.yaml"), pauseOnExit: true})
	s := startSessions(t, d, "9")
	d.stop()
	d2 := startDaemon(t, daemonOpts{policy: copyPolicy(t, "pause.yaml"), stateDir: d.stateDir})
	s.wantAdopted(t, d2, sandboxv1.SandboxState_SANDBOX_STATE_PAUSED)
}

// sessions are 3 sandboxes holding state (setState with digit repeated 1,
// 2 and 3 times) and one destroyed just before the daemon goes away.
type sessions struct {
	digit     string
	ids, pids []string
	gone      string
}

func startSessions(t *testing.T, d *daemon, digit string) *sessions {
	t.Helper()
	s := &sessions{digit: digit}
	for i := range 3 {
		id := d.create(t)
		s.ids = append(s.ids, id)
		s.pids = append(s.pids, setState(t, d, id, strings.Repeat(digit, i+1)))
	}
	s.gone = d.create(t)
	if _, err := d.client.DestroySandbox(ctx(t), &sandboxv1.DestroySandboxRequest{SandboxId: s.gone}); err != nil {
		t.Fatal(err)
	}
	return s
}

// wantAdopted checks that the restarted daemon d lists exactly the 3
// sessions, in state, each answering with its state, and not the
// destroyed one.
func (s *sessions) wantAdopted(t *testing.T, d *daemon, state sandboxv1.SandboxState) {
	t.Helper()
	list, err := d.client.ListSandboxes(ctx(t), &sandboxv1.ListSandboxesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Sandboxes) != len(s.ids) {
		t.Fatalf("restarted daemon lists %d sandboxes, want %d: %v", len(list.Sandboxes), len(s.ids), list.Sandboxes)
	}
	for _, sb := range list.Sandboxes {
		if sb.GetState() != state {
			t.Errorf("sandbox %s is %v after the restart, want %v", sb.SandboxId, sb.GetState(), state)
		}
	}
	for i, id := range s.ids {
		wantState(t, d, id, strings.Repeat(s.digit, i+1), s.pids[i])
	}
	if _, err := d.client.GetSandbox(ctx(t), &sandboxv1.GetSandboxRequest{SandboxId: s.gone}); status.Code(err) != codes.NotFound {
		t.Errorf("the sandbox destroyed before the restart: %v, want NOT_FOUND", err)
	}
}

// TestCrashKeepsSandboxesRunning guarantees that when the daemon is killed
// with SIGKILL its clients' sandboxes keep running (their holders keep the
// pipes open), and that the restarted daemon adopts them running, with
// their state and a working connection; a sandbox destroyed just before
// the crash stays destroyed.
func TestCrashKeepsSandboxesRunning(t *testing.T) {
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, "pause.yaml")})
	s := startSessions(t, d, "5")
	d.kill()
	time.Sleep(500 * time.Millisecond)
	for _, id := range s.ids {
		if len(strayProcesses(d.runscRoot(), id)) == 0 {
			t.Fatalf("sandbox %s stopped running when the daemon was killed", id)
		}
	}
	d2 := startDaemon(t, daemonOpts{policy: copyPolicy(t, "pause.yaml"), stateDir: d.stateDir})
	s.wantAdopted(t, d2, sandboxv1.SandboxState_SANDBOX_STATE_RUNNING)
	// The adopted sandboxes still pause and resume.
	d2.pause(t, s.ids[0])
	wantState(t, d2, s.ids[0], "5", s.pids[0])
}

// footprint is what a daemon holds on the host, to compare before and after
// a loop.
type footprint struct {
	files, mounts, cgroups, fds, goroutines int
}

func (d *daemon) footprint(t testing.TB, metricsAddr string) footprint {
	t.Helper()
	var f footprint
	filepath.WalkDir(d.stateDir, func(string, os.DirEntry, error) error { f.files++; return nil })
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		f.mounts = strings.Count(string(b), "\n")
	}
	for _, p := range []string{"/sys/fs/cgroup/*/sandboxd-*/*", "/sys/fs/cgroup/sandboxd-*/*"} {
		m, _ := filepath.Glob(p)
		for _, dir := range m {
			if st, err := os.Stat(dir); err == nil && st.IsDir() {
				f.cgroups++
			}
		}
	}
	fds, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(d.cmd.Process.Pid), "fd"))
	f.fds = len(fds)
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			f.goroutines, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if f.goroutines == 0 {
		t.Fatal("no go_goroutines in the daemon's metrics")
	}
	return f
}

// Slack allowed in the leak loop for counts that move on their own: gRPC
// and HTTP keep a few goroutines and fds per connection, which come and go
// with the test's own requests.
const (
	goroutineSlack = 5
	fdSlack        = 3
)

// loopSandboxes is how many sandboxes the leak loop pauses and resumes.
const loopSandboxes = 20

// TestPauseResumeLoopLeaksNothing guarantees that pausing and resuming 20
// sandboxes in a loop leaves the daemon with no more files in its state
// directory, mounts, cgroups, file descriptors or goroutines after the
// third round than after the first.
func TestPauseResumeLoopLeaksNothing(t *testing.T) {
	metricsAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	d := startDaemon(t, daemonOpts{policy: copyPolicy(t, "pause.yaml"), args: []string{"--metrics-listen", metricsAddr}})
	// Paused sandboxes hold no host slot: 20 fit under max_sandboxes 8.
	ids := make([]string, loopSandboxes)
	for i := range ids {
		ids[i] = d.create(t)
		wantOK(t, py(t, d, ids[i], "x = 0"))
		d.pause(t, ids[i])
	}
	round := func(n int) {
		for _, id := range ids {
			r := py(t, d, id, "x += 1\nprint(x)")
			wantOK(t, r)
			if want := strconv.Itoa(n) + "\n"; r.stdout != want {
				t.Fatalf("round %d, sandbox %s: x = %q, want %q", n, id, r.stdout, want)
			}
			d.pause(t, id)
		}
	}
	round(1)
	before := d.footprint(t, metricsAddr)
	round(2)
	round(3)
	after := d.footprint(t, metricsAddr)
	if after.files != before.files || after.mounts != before.mounts || after.cgroups != before.cgroups ||
		after.fds > before.fds+fdSlack || after.goroutines > before.goroutines+goroutineSlack {
		t.Errorf("after 3 rounds of %d pauses and resumes: %+v, after the first: %+v", loopSandboxes, after, before)
	}
}

// dirBytes is the size of the files under dir.
func dirBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if info, err := de.Info(); err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestMaxPausedBytesDestroysOldestPaused guarantees that when paused images
// would take more than host.max_paused_bytes, the oldest paused sandbox is
// destroyed (DEAD, saying why, its image deleted) and the newer one stays
// paused and resumes.
func TestMaxPausedBytesDestroysOldestPaused(t *testing.T) {
	path := copyPolicy(t, "pause.yaml")
	d := startDaemon(t, daemonOpts{policy: path})
	older, newer := d.create(t), d.create(t)
	wantOK(t, py(t, d, older, "x = 1"))
	wantOK(t, py(t, d, newer, "x = 2"))
	d.pause(t, older)
	size := dirBytes(t, filepath.Join(d.stateDir, "paused", older))
	if size < 1<<20 {
		t.Fatalf("paused image of %d bytes: the check is blind", size)
	}
	// Room for one image and a half: the second pause goes over.
	data, _ := os.ReadFile(path)
	capped := strings.Replace(string(data), "max_sandboxes: 8", "max_sandboxes: 8\n  max_paused_bytes: "+strconv.FormatInt(size*3/2, 10), 1)
	if capped == string(data) {
		t.Fatal("could not set max_paused_bytes in the policy")
	}
	if err := os.WriteFile(path, []byte(capped), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.log.String(), "policy applied") {
		if time.Now().After(deadline) {
			t.Fatalf("the capped policy was not reloaded:\n%s", d.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.pause(t, newer)
	dead := d.get(t, older)
	if dead.GetState() != sandboxv1.SandboxState_SANDBOX_STATE_DEAD || !strings.Contains(dead.GetStateReason(), "max_paused_bytes") {
		t.Fatalf("the oldest paused sandbox is %v (%q), want DEAD for max_paused_bytes", dead.GetState(), dead.GetStateReason())
	}
	if _, err := os.Stat(filepath.Join(d.stateDir, "paused", older)); !os.IsNotExist(err) {
		t.Errorf("the destroyed sandbox's image is still there: %v", err)
	}
	if sb := d.get(t, newer); sb.GetState() != sandboxv1.SandboxState_SANDBOX_STATE_PAUSED {
		t.Fatalf("the newer sandbox is %v, want PAUSED", sb.GetState())
	}
	r := py(t, d, newer, "print(x)")
	wantOK(t, r)
	if r.stdout != "2\n" {
		t.Errorf("the newer sandbox resumed with x = %q", r.stdout)
	}
}
