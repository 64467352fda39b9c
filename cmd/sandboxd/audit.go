package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"github.com/sandboxd/sandboxd/runtime/audit"
	"github.com/sandboxd/sandboxd/runtime/manager"
	"github.com/sandboxd/sandboxd/runtime/metrics"
	"github.com/sandboxd/sandboxd/runtime/tenant"
)

// apiPrefix starts the full method name of every call of the sandbox API.
var apiPrefix = "/" + sandboxv1.SandboxService_ServiceDesc.ServiceName + "/"

// Auditor records each call of the sandbox API: a line in the audit log,
// when there is one, and the sandboxd_rpc_total counter; and each egress
// connection of a sandbox, as a line (Egress). Health and
// reflection calls are neither logged nor counted: they carry no tenant,
// touch no sandbox, and health checkers make them by the thousand.
type Auditor struct {
	log *audit.Log // nil: no audit log, only the counter
	rpc *metrics.RPC
}

// newAuditor opens the audit log at cfg.Path; with no path it only counts.
func newAuditor(cfg audit.Config, rpc *metrics.RPC, log *slog.Logger) (*Auditor, error) {
	a := &Auditor{rpc: rpc}
	if cfg.Path == "" {
		return a, nil
	}
	var err error
	a.log, err = audit.Open(cfg, rpc, log)
	return a, err
}

// Close writes the lines still queued and closes the audit log.
func (a *Auditor) Close() error {
	if a.log == nil {
		return nil
	}
	return a.log.Close()
}

// Egress writes the audit line of an egress connection of a sandbox; it
// is not an API call, so it is not counted in sandboxd_rpc_total (the
// manager counts it in sandboxd_egress_connections_total).
func (a *Auditor) Egress(ev manager.EgressEvent) {
	if a.log == nil {
		return
	}
	r := audit.Record{
		Time: ev.Time, Tenant: ev.Tenant, Method: audit.MethodEgress, Sandbox: ev.Sandbox, Template: ev.Template,
		Error: ev.Err, DurationMS: ms(ev.Duration),
		Egress: &audit.Egress{Host: ev.Host, Port: ev.Port, Addr: ev.Addr, Allowed: ev.Allowed, Reason: ev.Reason, BytesUp: ev.Up, BytesDown: ev.Down},
	}
	a.log.Append(r)
}

// Denied records a call that authentication refused before it reached the
// API: it has no tenant (or the one it claimed), no sandbox, and err's code.
func (a *Auditor) Denied(ctx context.Context, method string, err error) {
	a.finish(a.start(ctx, method), err)
}

// unary is the unary server interceptor: it describes the call from its
// request and answer.
func (a *Auditor) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !audited(info.FullMethod) {
		return handler(ctx, req)
	}
	r := a.start(ctx, info.FullMethod)
	resp, err := handler(ctx, req)
	describeUnary(r, req, resp)
	a.finish(r, err)
	return resp, err
}

// stream is the stream server interceptor: it describes the call from the
// messages that pass (see auditStream). Without an audit log the stream is
// not wrapped, so no file is hashed for nothing.
func (a *Auditor) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !audited(info.FullMethod) {
		return handler(srv, ss)
	}
	r := a.start(ss.Context(), info.FullMethod)
	if a.log == nil {
		err := handler(srv, ss)
		a.finish(r, err)
		return err
	}
	w := &auditStream{ServerStream: ss, r: r}
	err := handler(srv, w)
	if w.content != nil && r.File != nil {
		withContent(r.File, w.n, w.content.Sum(nil))
	}
	a.finish(r, err)
	return err
}

// audited tells the sandbox API's methods from health and reflection.
func audited(method string) bool {
	return strings.HasPrefix(method, apiPrefix)
}

// start begins the record of a call arriving now. Its Time keeps the
// monotonic clock reading that finish measures the duration with.
func (a *Auditor) start(ctx context.Context, method string) *audit.Record {
	return &audit.Record{Time: time.Now(), Tenant: tenant.FromContext(ctx), Peer: peerOf(ctx), Method: method}
}

// finish completes r with how the call ended, counts it and logs it.
func (a *Auditor) finish(r *audit.Record, err error) {
	r.DurationMS = ms(time.Since(r.Time))
	st := status.Convert(err)
	r.Code = st.Code().String()
	if err != nil {
		r.Error = st.Message()
	}
	a.rpc.Called(r.Tenant, r.Method, r.Code)
	if a.log != nil {
		a.log.Append(*r)
	}
}

// peerOf names the caller: "unix" on the unix socket (whose peers have no
// address), IP:port on TCP.
func peerOf(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	if p.Addr.Network() == "unix" {
		return "unix"
	}
	return p.Addr.String()
}

// describeUnary fills r from a unary call's request and answer (nil or a
// typed nil when the call failed).
func describeUnary(r *audit.Record, req, resp any) {
	if q, ok := req.(interface{ GetSandboxId() string }); ok {
		r.Sandbox = q.GetSandboxId()
	}
	switch q := req.(type) {
	case *sandboxv1.CreateSandboxRequest:
		r.Template = q.GetTemplate()
	case *sandboxv1.EditFileRequest:
		r.File = &audit.File{Command: q.GetCommand().String(), Path: q.GetPath()}
		if text, writes := editText(q); writes {
			sum := sha256.Sum256([]byte(text))
			withContent(r.File, int64(len(text)), sum[:])
		}
	case *sandboxv1.ListFilesRequest:
		r.File = &audit.File{Path: q.GetPath()}
	}
	switch p := resp.(type) {
	case *sandboxv1.Sandbox:
		if p != nil {
			r.Sandbox, r.Template = p.GetSandboxId(), p.GetTemplate()
		}
	case *sandboxv1.EditFileResponse:
		if p != nil && r.File != nil {
			r.File.AbsPath = p.GetPath()
		}
	}
}

// editText returns the text an EditFile command writes: the whole file for
// CREATE, new_str for STR_REPLACE and INSERT; VIEW writes nothing.
func editText(q *sandboxv1.EditFileRequest) (string, bool) {
	switch q.GetCommand() {
	case sandboxv1.EditCommand_EDIT_COMMAND_CREATE:
		return q.GetFileText(), true
	case sandboxv1.EditCommand_EDIT_COMMAND_STR_REPLACE, sandboxv1.EditCommand_EDIT_COMMAND_INSERT:
		return q.GetNewStr(), true
	}
	return "", false
}

// auditStream watches the messages of a streaming call for its record:
// Exec's request (the code is hashed, never kept), output sizes and
// result; Upload's header and Download's request, and the file's bytes as
// they pass, counted and hashed.
type auditStream struct {
	grpc.ServerStream
	r *audit.Record
	// content hashes the file's bytes, from Upload's header or Download's
	// request on; n counts them.
	content hash.Hash
	n       int64
}

// RecvMsg describes the requests the handler reads.
func (s *auditStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	switch q := m.(type) {
	case *sandboxv1.ExecRequest:
		s.r.Sandbox = q.GetSandboxId()
		sum := sha256.Sum256([]byte(q.GetCode()))
		s.r.Exec = &audit.Exec{Language: q.GetLanguage().String(), CodeBytes: len(q.GetCode()), CodeSHA256: hex.EncodeToString(sum[:]),
			TimeoutMS: ms(q.GetTimeout().AsDuration())}
	case *sandboxv1.DownloadRequest:
		s.r.Sandbox = q.GetSandboxId()
		s.r.File = &audit.File{Path: q.GetPath()}
		s.content = sha256.New()
	case *sandboxv1.UploadRequest:
		if h := q.GetHeader(); h != nil && s.r.File == nil {
			s.r.Sandbox = h.GetSandboxId()
			s.r.File = &audit.File{Path: h.GetPath()}
			s.content = sha256.New()
		}
		s.hash(q.GetChunk())
	}
	return nil
}

// SendMsg describes the answers the handler sends, delivered or not: they
// say what the daemon did.
func (s *auditStream) SendMsg(m any) error {
	switch p := m.(type) {
	case *sandboxv1.ExecEvent:
		s.execEvent(p)
	case *sandboxv1.DownloadResponse:
		if info := p.GetInfo(); info != nil && s.r.File != nil {
			s.r.File.AbsPath = info.GetPath()
		}
		s.hash(p.GetChunk())
	case *sandboxv1.UploadResponse:
		if s.r.File != nil {
			s.r.File.AbsPath = p.GetPath()
		}
	}
	return s.ServerStream.SendMsg(m)
}

// execEvent counts an Exec's output and takes its result.
func (s *auditStream) execEvent(ev *sandboxv1.ExecEvent) {
	x := s.r.Exec
	if x == nil {
		return
	}
	x.OutputBytes += int64(len(ev.GetStdout()) + len(ev.GetStderr()))
	if res := ev.GetResult(); res != nil {
		exit, d := res.GetExitCode(), ms(res.GetDuration().AsDuration())
		x.Status, x.ExitCode, x.DurationMS = res.GetStatus().String(), &exit, &d
	}
}

// hash adds a chunk of the file to its digest, once the file is named.
func (s *auditStream) hash(chunk []byte) {
	if s.content == nil {
		return
	}
	s.content.Write(chunk)
	s.n += int64(len(chunk))
}

// withContent sets the size and digest of the bytes a call moved.
func withContent(f *audit.File, size int64, sum []byte) {
	f.Size, f.SHA256 = &size, hex.EncodeToString(sum)
}

// ms converts d to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
