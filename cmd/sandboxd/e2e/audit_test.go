package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"github.com/sandboxd/sandboxd/runtime/audit"
	"github.com/sandboxd/sandboxd/runtime/tenant"
)

// sha256Hex is the hex SHA-256 of data.
func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// TestAuditLogRecordsEveryCallWithoutContent guarantees that each call of
// a walk-through (create, Python and bash Execs, upload, download,
// EditFile, ListFiles, destroy, an Exec on an unknown sandbox) writes one
// line to --audit-log with its tenant, peer, sandbox, code and the
// correct SHA-256 of the code and file bytes, that no code or file text
// reaches the file, that the file is 0600, and that sandboxd_rpc_total
// counts the calls by tenant, method and code.
func TestAuditLogRecordsEveryCallWithoutContent(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "audit", "sandboxd.jsonl")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := startDaemon(t, daemonOpts{args: []string{"--audit-log", logPath, "--metrics-listen", metricsAddr}})

	pyMarker, shMarker, fileMarker, editMarker := "py-"+randomHex(t, 8), "sh-"+randomHex(t, 8), "file-"+randomHex(t, 8), "edit-"+randomHex(t, 8)
	pyCode := fmt.Sprintf("marker = %q\nprint(len(marker))", pyMarker)
	shCode := fmt.Sprintf("m=%s; echo ${#m} >&2", shMarker)
	fileBytes := bytes.Repeat([]byte(fileMarker+"\n"), 2000)
	editText := editMarker + "\n"

	sb, err := d.client.CreateSandbox(ctx(t), &sandboxv1.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	id := sb.SandboxId
	pyRun := py(t, d, id, pyCode)
	wantOK(t, pyRun)
	shRun := sh(t, d, id, shCode)
	wantOK(t, shRun)
	if _, err := d.upload(t, id, "audit.bin", fileBytes); err != nil {
		t.Fatal(err)
	}
	if got, _, err := d.download(t, id, "audit.bin"); err != nil || !bytes.Equal(got, fileBytes) {
		t.Fatalf("download: %d bytes, %v", len(got), err)
	}
	if _, err := d.client.EditFile(ctx(t), &sandboxv1.EditFileRequest{SandboxId: id, Command: sandboxv1.EditCommand_EDIT_COMMAND_CREATE, Path: "notes.txt", FileText: editText}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.client.ListFiles(ctx(t), &sandboxv1.ListFilesRequest{SandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.client.DestroySandbox(ctx(t), &sandboxv1.DestroySandboxRequest{SandboxId: id}); err != nil {
		t.Fatal(err)
	}
	const unknown = "sb-does-not-exist"
	if _, err := d.tryRun(ctx(t), unknown, &sandboxv1.ExecRequest{Language: sandboxv1.Language_LANGUAGE_PYTHON, Code: pyCode}); status.Code(err) != codes.NotFound {
		t.Fatalf("Exec on an unknown sandbox: %v, want NotFound", err)
	}

	wantMetrics(t, metricsAddr,
		`sandboxd_rpc_total{code="OK",method="/sandbox.v1.SandboxService/Exec",tenant="local"} 2`,
		`sandboxd_rpc_total{code="NotFound",method="/sandbox.v1.SandboxService/Exec",tenant="local"} 1`,
		`sandboxd_rpc_total{code="OK",method="/sandbox.v1.SandboxService/Upload",tenant="local"} 1`,
		`sandboxd_audit_dropped_total 0`)

	d.stop() // closing the audit log writes every queued line
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(logPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("audit log mode: %v %v, want 0600", st, err)
	}
	for what, secret := range map[string]string{"python code": pyCode, "python marker": pyMarker, "bash code": shCode,
		"bash marker": shMarker, "file bytes": fileMarker, "edit text": editMarker} {
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("the audit log holds the %s %q:\n%s", what, secret, data)
		}
	}

	records := map[string][]audit.Record{} // by method name
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	for _, line := range lines {
		var r audit.Record
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if r.Tenant != tenant.Local || r.Peer != "unix" || r.Time.Location() != time.UTC || time.Since(r.Time) > 10*time.Minute || r.DurationMS < 0 {
			t.Errorf("line %q: want tenant local, peer unix, a recent UTC time, a duration", line)
		}
		name := strings.TrimPrefix(r.Method, "/sandbox.v1.SandboxService/")
		records[name] = append(records[name], r)
	}
	want := map[string]int{"CreateSandbox": 1, "Exec": 3, "Upload": 1, "Download": 1, "EditFile": 1, "ListFiles": 1, "DestroySandbox": 1}
	total := 0
	for name, n := range want {
		if len(records[name]) != n {
			t.Fatalf("%d %s lines, want %d:\n%s", len(records[name]), name, n, data)
		}
		total += n
	}
	if len(lines) != total {
		t.Fatalf("%d lines, want one per call (%d):\n%s", len(lines), total, data)
	}

	if r := records["CreateSandbox"][0]; r.Sandbox != id || r.Template != sb.Template || r.Code != "OK" {
		t.Errorf("CreateSandbox line %+v, want sandbox %s template %s OK", r, id, sb.Template)
	}
	if r := records["DestroySandbox"][0]; r.Sandbox != id || r.Code != "OK" {
		t.Errorf("DestroySandbox line %+v", r)
	}
	execs := map[string]audit.Record{}
	for _, r := range records["Exec"] {
		execs[r.Exec.Language+" "+r.Code] = r
	}
	for key, run := range map[string]struct {
		code string
		res  execResult
	}{"LANGUAGE_PYTHON OK": {pyCode, pyRun}, "LANGUAGE_BASH OK": {shCode, shRun}} {
		r, ok := execs[key]
		if !ok {
			t.Fatalf("no Exec line for %s:\n%s", key, data)
		}
		x := r.Exec
		if r.Sandbox != id || x.CodeBytes != len(run.code) || x.CodeSHA256 != sha256Hex([]byte(run.code)) || x.TimeoutMS != 60000 ||
			x.Status != "EXEC_STATUS_OK" || x.ExitCode == nil || *x.ExitCode != 0 || x.DurationMS == nil ||
			x.OutputBytes != int64(len(run.res.stdout)+len(run.res.stderr)) || x.OutputBytes == 0 {
			t.Errorf("%s line %+v %+v: want the code's size and SHA-256, timeout 60 s, its result, %d output bytes", key, r, *x, len(run.res.stdout)+len(run.res.stderr))
		}
	}
	if r, ok := execs["LANGUAGE_PYTHON NotFound"]; !ok || r.Sandbox != unknown || r.Error == "" || r.Exec.Status != "" || r.Exec.ExitCode != nil ||
		r.Exec.CodeSHA256 != sha256Hex([]byte(pyCode)) {
		t.Errorf("failed Exec line %+v: want NotFound, the sandbox named, the message, no result", r)
	}

	size := int64(len(fileBytes))
	for _, name := range []string{"Upload", "Download"} {
		f := records[name][0].File
		if records[name][0].Sandbox != id || f == nil || f.Path != "audit.bin" || f.AbsPath != "/workspace/audit.bin" ||
			f.Size == nil || *f.Size != size || f.SHA256 != sha256Hex(fileBytes) {
			t.Errorf("%s line %+v file %+v: want audit.bin, /workspace/audit.bin, %d bytes and their SHA-256", name, records[name][0], f, size)
		}
	}
	if f := records["EditFile"][0].File; f == nil || f.Command != "EDIT_COMMAND_CREATE" || f.Path != "notes.txt" || f.AbsPath != "/workspace/notes.txt" ||
		f.Size == nil || *f.Size != int64(len(editText)) || f.SHA256 != sha256Hex([]byte(editText)) {
		t.Errorf("EditFile line file %+v: want the command, the paths, the text's size and SHA-256", f)
	}
	if r := records["ListFiles"][0]; r.Sandbox != id || r.File == nil || r.File.Path != "" || r.File.Size != nil {
		t.Errorf("ListFiles line %+v", r)
	}
}

// wantMetrics waits up to 10 s for the daemon's /metrics to show every
// line of want (a call is counted as its handler returns, which may be
// just after the client has its answer).
func wantMetrics(t *testing.T, addr string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		var missing []string
		for _, w := range want {
			if !strings.Contains(string(body), w+"\n") {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack %q:\n%s", missing, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
