package manager

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sandboxd/sandboxd/policy"
	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"github.com/sandboxd/sandboxd/runtime/errdefs"
	"github.com/sandboxd/sandboxd/runtime/identifiers"
	"github.com/sandboxd/sandboxd/runtime/sandbox"
)

// Exec request limits.
const (
	// MaxCodeBytes bounds the code of one Exec: far above any real cell or
	// script, small enough to keep requests cheap.
	MaxCodeBytes = 1 << 20
	// MaxStdinBytes bounds the stdin of one Exec; bigger inputs go through
	// Upload.
	MaxStdinBytes = 1 << 20
	// MaxEnvEntries and MaxEnvBytes bound per-Exec environment variables.
	MaxEnvEntries = 256
	MaxEnvBytes   = 64 << 10
	// agentMargin is how long past the Exec timeout the daemon waits for the
	// agent's own TIMEOUT result (it interrupts, then kills) before it gives
	// up on the agent.
	agentMargin = 5 * time.Second
	// deathWait is how long a broken agent stream waits for the sandbox's
	// exit to be noticed, to tell "sandbox died" from other failures.
	deathWait = 500 * time.Millisecond
)

// Exec runs code in a sandbox, passing its output and then exactly one
// result event to send. It returns an error only when no result could be
// produced (bad request, unknown sandbox, cancelled client).
func (m *Manager) Exec(ctx context.Context, req *sandboxv1.ExecRequest, send func(*sandboxv1.ExecEvent) error) error {
	if err := m.checkID(req.GetSandboxId()); err != nil {
		return err
	}
	e, err := m.lookup(ctx, req.GetSandboxId())
	if err != nil {
		return err
	}
	timeout, err := checkExec(req, e)
	if err != nil {
		return err
	}
	paused, _ := e.status()
	asked := now()
	sb, done, err := m.use(ctx, e)
	if err != nil {
		return err
	}
	defer done()
	received := now()
	var resumed time.Duration // what resuming a paused sandbox took
	if paused == StatePaused {
		resumed = received.Sub(asked)
	}
	usage := m.measure(e, sb)
	defer usage.end()
	send = usage.wrap(send)

	areq := &sandboxv1.ExecRequest{
		Language: req.GetLanguage(), Code: req.GetCode(), Timeout: durationpb.New(timeout),
		Env: req.GetEnv(), Workdir: req.GetWorkdir(), Stdin: req.GetStdin(), Trace: req.GetTrace(),
		RestartSession: req.GetRestartSession(), ReportFiles: req.GetReportFiles(),
	}
	actx, cancel := context.WithTimeout(ctx, timeout+agentMargin)
	defer cancel()
	start := now()
	stream, err := sb.Agent().Exec(actx, areq)
	if err != nil {
		return m.execFailed(ctx, actx, e, sb, start, err, send)
	}
	budget := e.tmpl.Limits.Output // stdout+stderr bytes the client may still get
	for {
		ev, err := stream.Recv()
		if err != nil {
			if err == io.EOF {
				err = errors.New("agent ended the Exec without a result")
			}
			return m.execFailed(ctx, actx, e, sb, start, err, send)
		}
		switch ev.GetEvent().(type) {
		case *sandboxv1.ExecEvent_Stdout, *sandboxv1.ExecEvent_Stderr:
			if ev, budget = clipOutput(ev, budget); ev != nil {
				if err := send(ev); err != nil {
					return err
				}
			}
			if budget < 0 {
				// Cancelling the agent's stream stops the code (bash is
				// killed, a Python cell interrupted).
				cancel()
				return send(&sandboxv1.ExecEvent{Event: &sandboxv1.ExecEvent_Result{Result: &sandboxv1.ExecResult{
					ExitCode: -1, Status: sandboxv1.ExecStatus_EXEC_STATUS_OUTPUT_TRUNCATED, Duration: durationpb.New(now().Sub(start)),
					Message: fmt.Sprintf("output exceeded %d bytes (policy limits.output): the rest was dropped and the code stopped", e.tmpl.Limits.Output),
				}}})
			}
		case *sandboxv1.ExecEvent_Result:
			res := sanitize(ev.GetResult(), e.tmpl.Limits.Images)
			if req.GetTrace() {
				res.Trace = traceStages(resumed, received, start, res.Trace, usage)
			}
			return send(&sandboxv1.ExecEvent{Event: &sandboxv1.ExecEvent_Result{Result: res}})
		default:
			return m.execFailed(ctx, actx, e, sb, start, errors.New("agent sent an empty Exec event"), send)
		}
	}
}

// checkExec validates an Exec request against the sandbox's template and
// returns the timeout to apply.
func checkExec(req *sandboxv1.ExecRequest, e *entry) (time.Duration, error) {
	switch req.GetLanguage() {
	case sandboxv1.Language_LANGUAGE_PYTHON, sandboxv1.Language_LANGUAGE_BASH, sandboxv1.Language_LANGUAGE_BASH_SESSION:
	default:
		return 0, fmt.Errorf("language %v is not supported: use LANGUAGE_PYTHON, LANGUAGE_BASH or LANGUAGE_BASH_SESSION: %w", req.GetLanguage(), errdefs.ErrInvalidArgument)
	}
	if len(req.GetCode()) > MaxCodeBytes {
		return 0, fmt.Errorf("code is %d bytes, more than %d: upload a file and run it instead: %w", len(req.GetCode()), MaxCodeBytes, errdefs.ErrInvalidArgument)
	}
	if len(req.GetStdin()) > MaxStdinBytes {
		return 0, fmt.Errorf("stdin is %d bytes, more than %d: upload it as a file instead: %w", len(req.GetStdin()), MaxStdinBytes, errdefs.ErrInvalidArgument)
	}
	if err := checkEnv(req.GetEnv()); err != nil {
		return 0, err
	}
	if w := req.GetWorkdir(); w != "" {
		if _, err := identifiers.SandboxPath(w); err != nil {
			return 0, fmt.Errorf("workdir: %w", err)
		}
	}
	limits := e.tmpl.ExecTimeout
	if req.GetTimeout() == nil {
		return limits.Default, nil
	}
	if err := req.GetTimeout().CheckValid(); err != nil {
		return 0, fmt.Errorf("timeout: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	t := req.GetTimeout().AsDuration()
	if t <= 0 {
		return 0, fmt.Errorf("timeout must be positive, got %s: %w", t, errdefs.ErrInvalidArgument)
	}
	if t > limits.Max {
		return 0, fmt.Errorf("timeout %s exceeds the maximum %s of template %q (policy exec_timeout.max): %w", t, limits.Max, e.tmpl.Name, errdefs.ErrInvalidArgument)
	}
	return t, nil
}

func checkEnv(env map[string]string) error {
	if len(env) > MaxEnvEntries {
		return fmt.Errorf("%d environment variables, more than %d: %w", len(env), MaxEnvEntries, errdefs.ErrInvalidArgument)
	}
	size := 0
	for k, v := range env {
		if !validEnvKey(k) {
			return fmt.Errorf("invalid environment variable name %q: use letters, digits and '_', not starting with a digit: %w", k, errdefs.ErrInvalidArgument)
		}
		for _, c := range []byte(v) {
			if c == 0 {
				return fmt.Errorf("environment variable %q contains a NUL byte: %w", k, errdefs.ErrInvalidArgument)
			}
		}
		size += len(k) + len(v)
	}
	if size > MaxEnvBytes {
		return fmt.Errorf("environment is %d bytes, more than %d: %w", size, MaxEnvBytes, errdefs.ErrInvalidArgument)
	}
	return nil
}

func validEnvKey(k string) bool {
	if k == "" {
		return false
	}
	for i, c := range []byte(k) {
		letter := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// sanitize keeps only what the agent may legitimately report: the agent is
// inside the sandbox and untrusted. Figures over the sandbox's images limits
// are dropped (images_truncated), as are files beyond MaxReportedFiles or
// with a path that is not a clean one under the workspace.
func sanitize(r *sandboxv1.ExecResult, images policy.ImageLimits) *sandboxv1.ExecResult {
	const maxText = 64 << 10
	clip := func(s string) string {
		if len(s) > maxText {
			return s[:maxText]
		}
		return s
	}
	filesCut, imagesCut := r.GetFilesTruncated(), r.GetImagesTruncated()
	files := sanitizeFiles(r.GetFiles(), &filesCut)
	imgs := sanitizeImages(r.GetImages(), images, &imagesCut)
	status := r.GetStatus()
	if _, known := sandboxv1.ExecStatus_name[int32(status)]; !known || status == sandboxv1.ExecStatus_EXEC_STATUS_UNSPECIFIED {
		status = sandboxv1.ExecStatus_EXEC_STATUS_ERROR
	}
	return &sandboxv1.ExecResult{
		ExitCode: r.GetExitCode(), Status: status, Duration: r.GetDuration(),
		Value: clip(r.GetValue()), ErrorName: clip(r.GetErrorName()),
		StateLost: r.GetStateLost(), Message: clip(r.GetMessage()),
		Trace: sanitizeTrace(r.GetTrace()),
		Files: files, FilesTruncated: filesCut, Images: imgs, ImagesTruncated: imagesCut,
	}
}

// MaxReportedFiles is the most files ExecResult.files lists (the issue
// fixes 1,000: enough for any cell a model reads the result of).
const MaxReportedFiles = 1000

// sanitizeFiles keeps the agent's reported files that are clean paths
// under the workspace, at most MaxReportedFiles; it sets *truncated when it
// dropped any.
func sanitizeFiles(files []*sandboxv1.FileEntry, truncated *bool) []*sandboxv1.FileEntry {
	var out []*sandboxv1.FileEntry
	for _, f := range files {
		fe, ok := cleanEntry(f)
		if !ok || !strings.HasPrefix(fe.Path, identifiers.Workspace+"/") || len(out) == MaxReportedFiles {
			*truncated = true
			continue
		}
		out = append(out, fe)
	}
	return out
}

// pngSignature starts every PNG file.
const pngSignature = "\x89PNG\r\n\x1a\n"

// sanitizeImages keeps the agent's figures that are PNGs, within limits;
// it sets *truncated when it dropped any.
func sanitizeImages(imgs []*sandboxv1.Image, limits policy.ImageLimits, truncated *bool) []*sandboxv1.Image {
	var out []*sandboxv1.Image
	var size int64
	for _, img := range imgs {
		data := img.GetData()
		if img.GetMimeType() != "image/png" || !bytes.HasPrefix(data, []byte(pngSignature)) ||
			len(out) >= limits.Count || size+int64(len(data)) > limits.Bytes {
			*truncated = true
			continue
		}
		size += int64(len(data))
		out = append(out, &sandboxv1.Image{MimeType: "image/png", Data: data})
	}
	return out
}

// execFailed turns a broken agent stream into a result for the client when
// one can be given: the sandbox died, was destroyed, or its agent did not
// answer in time.
func (m *Manager) execFailed(ctx, actx context.Context, e *entry, sb *sandbox.Sandbox, start time.Time, err error, send func(*sandboxv1.ExecEvent) error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("exec cancelled by the client: %w", ctx.Err())
	}
	result := &sandboxv1.ExecResult{ExitCode: -1, Duration: durationpb.New(now().Sub(start))}
	select {
	case <-sb.Exited():
	case <-time.After(deathWait):
	}
	switch {
	case isClosed(sb.Exited()) && sb.OOMKilled():
		result.Status = sandboxv1.ExecStatus_EXEC_STATUS_OOM_KILLED
		result.Message = fmt.Sprintf("the sandbox went over its memory limit of %d bytes (policy limits.memory) and was killed; destroy it and create a new one", e.tmpl.Limits.Memory)
	case isClosed(sb.Exited()) && sb.Died():
		result.Status = sandboxv1.ExecStatus_EXEC_STATUS_SANDBOX_DIED
		result.Message = "the sandbox died during the Exec: " + sb.ExitReason()
	case sb.Destroyed():
		result.Status = sandboxv1.ExecStatus_EXEC_STATUS_KILLED
		result.Message = "the sandbox was destroyed during the Exec"
	case actx.Err() != nil:
		result.Status = sandboxv1.ExecStatus_EXEC_STATUS_TIMEOUT
		result.Message = "the sandbox did not answer within the timeout"
		m.log.Warn("agent missed an Exec deadline", "sandbox", e.id, "err", err)
	default:
		return fmt.Errorf("running code in sandbox %q: %w", e.id, errdefs.FromGRPC(err))
	}
	return send(&sandboxv1.ExecEvent{Event: &sandboxv1.ExecEvent_Result{Result: result}})
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// clipOutput charges an output event against budget. It returns the event,
// cut to what is left of the budget (nil if nothing is), and the remaining
// budget, negative once the output went over.
func clipOutput(ev *sandboxv1.ExecEvent, budget int64) (*sandboxv1.ExecEvent, int64) {
	var data []byte
	var wrap func([]byte) *sandboxv1.ExecEvent
	switch e := ev.GetEvent().(type) {
	case *sandboxv1.ExecEvent_Stdout:
		data, wrap = e.Stdout, func(b []byte) *sandboxv1.ExecEvent {
			return &sandboxv1.ExecEvent{Event: &sandboxv1.ExecEvent_Stdout{Stdout: b}}
		}
	case *sandboxv1.ExecEvent_Stderr:
		data, wrap = e.Stderr, func(b []byte) *sandboxv1.ExecEvent {
			return &sandboxv1.ExecEvent{Event: &sandboxv1.ExecEvent_Stderr{Stderr: b}}
		}
	}
	if int64(len(data)) <= budget {
		return ev, budget - int64(len(data))
	}
	if budget <= 0 {
		return nil, -1
	}
	return wrap(data[:budget]), -1
}
