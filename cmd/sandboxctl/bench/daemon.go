package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandboxd/sandboxd/cmd/sandboxctl/internal/filestream"
	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// Bench's use of the API.
const (
	// benchLabel marks every sandbox bench creates with the run's ID, so
	// that leftovers can be found (and are swept at the end).
	benchLabel = "sandboxctl.bench"
	// benchFileChunk is the payload of each Upload message of the files
	// scenario: large enough that per-message overhead does not bound the
	// rate, well under the 8 MiB message limit of client and daemon.
	benchFileChunk = 1 << 20
	// maxCapturedOutput bounds the stdout and stderr kept from one bench
	// Exec: they are only compared and quoted in errors.
	maxCapturedOutput = 64 << 10
)

// createMode is how bench asks CreateSandbox for a sandbox.
type createMode int

const (
	// fromPool takes a warm sandbox from the pool when it has one.
	fromPool createMode = iota
	// bypassPool (cold) makes one for the request: restored from the
	// template's snapshot when it is ready, else booted.
	bypassPool
	// bypassSnapshot (boot) boots one in full. bypass_pool is set too: the
	// API says bypass_snapshot implies it, and a daemon that predates
	// snapshots then still boots one rather than handing out a pool hit.
	bypassSnapshot
)

// daemonBench runs the scenarios against sandboxd.
type daemonBench struct {
	client   sandboxv1.SandboxServiceClient
	template string            // --template; empty for the policy's default
	labels   map[string]string // put on every sandbox created
	pools    *poolWatcher
	notef    func(format string, args ...any)
	describe func(error) string

	mu sync.Mutex
	// seenTemplate is the template name in the last CreateSandbox
	// response: the policy's default when --template was not given.
	seenTemplate string
	// burstK is the burst size, once burst's setup chose it.
	burstK int
	// snapshotWaited is set once a scenario that wants restores waited
	// for the template's snapshot (awaitSnapshot).
	snapshotWaited bool
	// pssNoted is set once memory noted how it reads PSS, or why it
	// cannot.
	pssNoted bool
}

// newDaemonBench connects to the daemon and looks at its pools. An
// unreachable daemon fails here, before any run.
func newDaemonBench(ctx context.Context, env Env, o *Options, runID string, notef func(string, ...any)) (*daemonBench, error) {
	client, err := env.Client()
	if err != nil {
		return nil, err
	}
	d := &daemonBench{
		client:   client,
		template: o.template,
		labels:   map[string]string{benchLabel: runID},
		notef:    notef,
		describe: env.Describe,
		pools:    &poolWatcher{client: client, wait: o.poolWait, notef: notef},
	}
	if err := d.pools.probe(ctx); err != nil {
		return nil, err
	}
	if o.template != "" && o.has(scenarioWarm) {
		if pools, _ := d.pools.list(ctx); len(pools) > 0 && findPool(pools, o.template) == nil {
			notef("template %q has no warm pool: warm runs will be cold starts", o.template)
		}
	}
	return d, nil
}

// create creates a sandbox of the template as mode says.
func (d *daemonBench) create(ctx context.Context, mode createMode) (*sandboxv1.Sandbox, error) {
	sb, err := d.client.CreateSandbox(ctx, &sandboxv1.CreateSandboxRequest{
		Template:       d.template,
		Labels:         d.labels,
		BypassPool:     mode != fromPool,
		BypassSnapshot: mode == bypassSnapshot,
	})
	if err != nil {
		return nil, err
	}
	if t := sb.GetTemplate(); t != "" {
		d.mu.Lock()
		d.seenTemplate = t
		d.mu.Unlock()
	}
	return sb, nil
}

// destroy destroys sandbox id, untimed, noting a failure: a sandbox that
// outlives the benchmark holds the daemon's capacity.
func (d *daemonBench) destroy(ctx context.Context, id string) {
	if _, err := d.client.DestroySandbox(ctx, &sandboxv1.DestroySandboxRequest{SandboxId: id}); err != nil {
		d.notef("destroying sandbox %s: %s", id, d.describe(err))
	}
}

// destroyLeftovers destroys every sandbox that still carries this run's
// label: those of runs cut short by Ctrl-C or a timeout.
func (d *daemonBench) destroyLeftovers(ctx context.Context) {
	resp, err := d.client.ListSandboxes(ctx, &sandboxv1.ListSandboxesRequest{LabelSelector: d.labels})
	if err != nil {
		d.notef("listing leftover sandboxes: %s", d.describe(err))
		return
	}
	for _, sb := range resp.GetSandboxes() {
		d.destroy(ctx, sb.GetSandboxId())
	}
}

// execOutput is what a bench Exec produced.
type execOutput struct {
	stdout, stderr string
	result         *sandboxv1.ExecResult
}

// exec runs code in sandbox id and returns as soon as the result event
// arrives, with the output before it (each capped at maxCapturedOutput).
func (d *daemonBench) exec(ctx context.Context, id string, lang sandboxv1.Language, code string) (execOutput, error) {
	out, _, err := d.execCall(ctx, id, lang, code, false)
	return out, err
}

// execCall runs code in sandbox id and returns the output up to the result
// event (each capped at maxCapturedOutput) and when that event arrived.
// Without drain it returns at once and cancels the rest of the call. With
// drain it first reads the stream until the daemon ends the call: the
// daemon holds the sandbox until its Exec handler returns, a little after
// the result, and PauseSandbox refuses a sandbox that is still held.
func (d *daemonBench) execCall(ctx context.Context, id string, lang sandboxv1.Language, code string, drain bool) (execOutput, time.Time, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := d.client.Exec(ctx, &sandboxv1.ExecRequest{SandboxId: id, Language: lang, Code: code})
	if err != nil {
		return execOutput{}, time.Time{}, err
	}
	var stdout, stderr cappedBuffer
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return execOutput{}, time.Time{}, errors.New("the daemon ended the exec without a result")
		}
		if err != nil {
			return execOutput{}, time.Time{}, err
		}
		switch e := ev.GetEvent().(type) {
		case *sandboxv1.ExecEvent_Stdout:
			stdout.Write(e.Stdout)
		case *sandboxv1.ExecEvent_Stderr:
			stderr.Write(e.Stderr)
		case *sandboxv1.ExecEvent_Result:
			at := time.Now()
			out := execOutput{stdout.String(), stderr.String(), e.Result}
			if drain {
				err = drainExec(stream)
			}
			return out, at, err
		}
	}
}

// drainExec reads what follows an Exec's result until the daemon ends the
// call: nothing, on success.
func drainExec(stream grpc.ServerStreamingClient[sandboxv1.ExecEvent]) error {
	for {
		_, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("the daemon failed the exec after its result: %w", err)
		}
	}
}

// pause pauses sandbox id and checks that the daemon answers that it is
// paused. A daemon that predates PauseSandbox gets an error that says so.
func (d *daemonBench) pause(ctx context.Context, id string) error {
	sb, err := d.client.PauseSandbox(ctx, &sandboxv1.PauseSandboxRequest{SandboxId: id})
	if status.Code(err) == codes.Unimplemented {
		return errors.New("this daemon does not implement PauseSandbox (it predates pause)")
	}
	if err != nil {
		return err
	}
	if st := sb.GetState(); st != sandboxv1.SandboxState_SANDBOX_STATE_PAUSED {
		return fmt.Errorf("PauseSandbox answered state %s, want %s", st, sandboxv1.SandboxState_SANDBOX_STATE_PAUSED)
	}
	return nil
}

// check returns why out is not a successful run that printed want.
func (out execOutput) check(want string) error {
	r := out.result
	if st := r.GetStatus(); st != sandboxv1.ExecStatus_EXEC_STATUS_OK {
		msg := fmt.Sprintf("exec ended %s, exit code %d", st, r.GetExitCode())
		if m := r.GetMessage(); m != "" {
			msg += ": " + m
		}
		if out.stderr != "" {
			msg += fmt.Sprintf("; stderr %q", lastLine(out.stderr))
		}
		return errors.New(msg)
	}
	if out.stdout != want {
		return fmt.Errorf("stdout %q, want %q", out.stdout, want)
	}
	return nil
}

// templateName is the template bench creates from: --template, else the
// policy's default as the daemon named it in a response ("" before any).
func (d *daemonBench) templateName() string {
	if d.template != "" {
		return d.template
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seenTemplate
}

// createExec is the run of warm, cold, cold-ready, boot, boot-ready and
// burst: create a sandbox, run code in it, and time both together until
// the result arrives. It returns the sandbox's ID ("" if none) for the
// caller to destroy, untimed.
func (d *daemonBench) createExec(ctx context.Context, row string, mode createMode, code, want string) (sample, string) {
	start := time.Now()
	sb, err := d.create(ctx, mode)
	if err != nil {
		return sample{row: row, err: &stepError{"create", err}}, ""
	}
	out, err := d.exec(ctx, sb.GetSandboxId(), sandboxv1.Language_LANGUAGE_PYTHON, code)
	ms := msSince(start)
	s := createdSample(row, sb)
	s.ms = ms
	if err != nil {
		s.err = &stepError{"exec", err}
	} else {
		s.err = out.check(want)
	}
	return s, sb.GetSandboxId()
}

// createdSample is a sample of row for a run that created sb: how it
// started, nothing measured yet.
func createdSample(row string, sb *sandboxv1.Sandbox) sample {
	cold := sb.GetColdStart()
	return sample{row: row, cold: &cold, start: sb.GetStart()}
}

// upload writes data to path in sandbox id in chunks of benchFileChunk.
func (d *daemonBench) upload(ctx context.Context, id, path string, data []byte) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := d.client.Upload(ctx)
	if err != nil {
		return err
	}
	send := func(req *sandboxv1.UploadRequest) error {
		err := stream.Send(req)
		if err == io.EOF {
			_, err = stream.CloseAndRecv() // the daemon's status says why
		}
		return err
	}
	if err := send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Header{
		Header: &sandboxv1.FileHeader{SandboxId: id, Path: path},
	}}); err != nil {
		return err
	}
	// data is never modified, so its slices can be handed to gRPC as is.
	for off := 0; off < len(data); off += benchFileChunk {
		chunk := data[off:min(off+benchFileChunk, len(data))]
		if err := send(&sandboxv1.UploadRequest{Msg: &sandboxv1.UploadRequest_Chunk{Chunk: chunk}}); err != nil {
			return err
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return err
	}
	if resp.GetSize() != int64(len(data)) {
		return fmt.Errorf("the daemon wrote %d bytes of %d", resp.GetSize(), len(data))
	}
	return nil
}

// download reads path from sandbox id and returns its size and sha256.
func (d *daemonBench) download(ctx context.Context, id, path string) (int64, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := d.client.Download(ctx, &sandboxv1.DownloadRequest{SandboxId: id, Path: path})
	if err != nil {
		return 0, sum, err
	}
	first, err := stream.Recv()
	if err == io.EOF {
		return 0, sum, errors.New("the daemon sent no file")
	}
	if err != nil {
		return 0, sum, err
	}
	if first.GetInfo() == nil {
		return 0, sum, errors.New("the daemon sent file data before the file's description")
	}
	h := sha256.New()
	n, err := filestream.Receive(stream, h, first.GetInfo().GetSize())
	if err != nil {
		return n, sum, err
	}
	h.Sum(sum[:0])
	return n, sum, nil
}

// cappedBuffer keeps the first maxCapturedOutput bytes written to it.
type cappedBuffer struct{ bytes.Buffer }

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := maxCapturedOutput - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// lastLine returns the last non-empty line of s, at most 200 bytes of it,
// for error messages.
func lastLine(s string) string {
	lines := bytes.Split(bytes.TrimSpace([]byte(s)), []byte("\n"))
	l := lines[len(lines)-1]
	if len(l) > 200 {
		l = append(l[:200:200], "..."...)
	}
	return string(l)
}
