package audit

import (
	"strings"
	"time"
)

// maxField bounds each string of a line (IDs, paths, error messages):
// PATH_MAX, longer than any valid path or sandbox ID, so clipping loses
// nothing real, while a client cannot bloat the log, or the queue's
// memory, with a path of several MiB.
const maxField = 4096

// MethodEgress is the Method of a line that records an egress connection
// of a sandbox rather than a call.
const MethodEgress = "egress"

// Record is one line of the audit log: one call of the sandbox API, or one
// egress connection of a sandbox (Method MethodEgress). It never holds
// code, file contents or relayed bytes, only their sizes and SHA-256
// digests.
type Record struct {
	// Time is when the call arrived; written in RFC 3339 with nanoseconds,
	// UTC.
	Time time.Time `json:"time"`
	// Tenant is who the call acted for; "" when none was authenticated
	// (a call refused before authentication named one).
	Tenant string `json:"tenant"`
	// Peer is the caller's address: "unix" on the unix socket, IP:port on
	// TCP; empty for an egress line.
	Peer string `json:"peer"`
	// Method is the full gRPC method, e.g.
	// "/sandbox.v1.SandboxService/Exec", or MethodEgress.
	Method string `json:"method"`
	// Sandbox is the sandbox ID the call named (or, for CreateSandbox, the
	// one it created).
	Sandbox string `json:"sandbox,omitempty"`
	// Template is the template the request or the answer named.
	Template string `json:"template,omitempty"`
	// Code is the gRPC status code the call ended with, e.g. "OK",
	// "NotFound"; absent for an egress line, which is no call.
	Code string `json:"grpc_code,omitempty"`
	// Error is the status message of a failed call, or why an allowed
	// egress connection ended abnormally.
	Error string `json:"error,omitempty"`
	// DurationMS is the call's wall time in milliseconds, or how long an
	// egress connection lasted.
	DurationMS float64 `json:"duration_ms"`
	// Exec describes an Exec call.
	Exec *Exec `json:"exec,omitempty"`
	// File describes a call on a file: Upload, Download, EditFile,
	// ListFiles.
	File *File `json:"file,omitempty"`
	// Egress describes an egress connection.
	Egress *Egress `json:"egress,omitempty"`
}

// Egress describes one egress connection of a sandbox: where it went, what
// the daemon decided and the bytes relayed.
type Egress struct {
	// Host is the destination the sandbox's client named, normalized.
	Host string `json:"host"`
	// Port is the destination port.
	Port uint32 `json:"port"`
	// Addr is the address dialed, or the one refused; absent when none
	// was reached.
	Addr string `json:"addr,omitempty"`
	// Allowed says whether the connection was relayed.
	Allowed bool `json:"allowed"`
	// Reason says why it was allowed (the entry) or refused.
	Reason string `json:"reason"`
	// BytesUp and BytesDown are the bytes relayed from and to the sandbox.
	BytesUp   int64 `json:"bytes_up"`
	BytesDown int64 `json:"bytes_down"`
}

// Exec describes the code an Exec ran and how it ended.
type Exec struct {
	// Language is the request's language, e.g. "LANGUAGE_PYTHON".
	Language string `json:"language"`
	// CodeBytes is the code's length in bytes.
	CodeBytes int `json:"code_bytes"`
	// CodeSHA256 is the hex SHA-256 of the code.
	CodeSHA256 string `json:"code_sha256"`
	// TimeoutMS is the timeout the request asked for; absent: the
	// template's default.
	TimeoutMS float64 `json:"timeout_ms,omitempty"`
	// OutputBytes counts the stdout and stderr bytes sent to the client.
	OutputBytes int64 `json:"output_bytes"`
	// Status is the result's status, e.g. "EXEC_STATUS_OK"; absent when
	// the call failed before a result (then see Record.Code).
	Status string `json:"status,omitempty"`
	// ExitCode is the result's exit code; absent without a result.
	ExitCode *int32 `json:"exit_code,omitempty"`
	// DurationMS is the run time the result reports, in milliseconds;
	// absent without a result.
	DurationMS *float64 `json:"duration_ms,omitempty"`
}

// File describes the file a call read, wrote or listed.
type File struct {
	// Command is EditFile's command, e.g. "EDIT_COMMAND_CREATE".
	Command string `json:"command,omitempty"`
	// Path is the path as the client wrote it.
	Path string `json:"path"`
	// AbsPath is the absolute sandbox path the answer named.
	AbsPath string `json:"abs_path,omitempty"`
	// Size is the bytes written or read (Upload: received; Download: sent;
	// EditFile: the text written); absent when no content moved.
	Size *int64 `json:"size,omitempty"`
	// SHA256 is the hex SHA-256 of those bytes.
	SHA256 string `json:"sha256,omitempty"`
}

// clipped returns r with every string bounded by maxField.
func (r Record) clipped() Record {
	for _, s := range []*string{&r.Tenant, &r.Peer, &r.Method, &r.Sandbox, &r.Template, &r.Error} {
		*s = clip(*s)
	}
	if r.File != nil {
		f := *r.File
		f.Path, f.AbsPath = clip(f.Path), clip(f.AbsPath)
		r.File = &f
	}
	if r.Egress != nil {
		e := *r.Egress
		e.Host, e.Reason = clip(e.Host), clip(e.Reason)
		r.Egress = &e
	}
	return r
}

// clip cuts s at maxField bytes, copying the cut so that the queue does
// not keep the whole original alive.
func clip(s string) string {
	if len(s) <= maxField {
		return s
	}
	return strings.Clone(s[:maxField]) + "…"
}
