package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// drops counts AuditDropped calls.
type drops struct{ n atomic.Int64 }

func (d *drops) AuditDropped() { d.n.Add(1) }

// syncBuffer is a log destination safe for the writer and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// open opens a log with cfg and a logger into the returned buffer.
func open(t *testing.T, cfg Config) (*Log, *drops, *syncBuffer) {
	t.Helper()
	d, buf := &drops{}, &syncBuffer{}
	l, err := Open(cfg, d, slog.New(slog.NewTextHandler(buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return l, d, buf
}

// record is the i-th test record: all the same length for i < 1000.
func record(i int) Record {
	return Record{Time: time.Unix(1700000000, 0), Tenant: "team-a", Peer: "unix", Method: "/sandbox.v1.SandboxService/GetSandbox",
		Sandbox: fmt.Sprintf("sb-%03d", i), Code: "OK", DurationMS: 1.5}
}

// readLines returns the records of a log file.
func readLines(t *testing.T, path string) []Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: line %q: %v", path, sc.Text(), err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCloseWritesEveryQueuedLineToAPrivateFile guarantees that Close
// flushes what Append queued, in order, and that the file is 0600.
func TestCloseWritesEveryQueuedLineToAPrivateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "audit.log")
	l, d, _ := open(t, Config{Path: path, MaxBytes: 1 << 20})
	const n = 500
	for i := range n {
		l.Append(record(i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := readLines(t, path)
	if len(got) != n || d.n.Load() != 0 {
		t.Fatalf("%d lines and %d drops, want %d and 0", len(got), d.n.Load(), n)
	}
	for i, r := range got {
		if r.Sandbox != record(i).Sandbox {
			t.Fatalf("line %d is %s, want %s", i, r.Sandbox, record(i).Sandbox)
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	l.Append(record(n)) // after Close: dropped, no panic
}

// TestRotationKeepsNFilesUnderTheBound guarantees that no file grows past
// MaxBytes, that a file is rotated only when the next line would not fit,
// that Keep rotated files remain, and that together they hold the newest
// lines in order.
func TestRotationKeepsNFilesUnderTheBound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	line, err := json.Marshal(record(0))
	if err != nil {
		t.Fatal(err)
	}
	lineLen := int64(len(line) + 1)
	const perFile, keep, n = 3, 2, 20
	maxBytes := perFile*lineLen + lineLen/2
	l, _, _ := open(t, Config{Path: path, MaxBytes: maxBytes, Keep: keep})
	for i := range n {
		l.Append(record(i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var all []Record
	for _, p := range []string{path + ".2", path + ".1", path} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > maxBytes || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %d bytes, mode %v; want at most %d, 0600", p, st.Size(), st.Mode().Perm(), maxBytes)
		}
		if p != path && st.Size() != perFile*lineLen {
			t.Errorf("%s rotated at %d bytes, want %d (%d lines)", p, st.Size(), perFile*lineLen, perFile)
		}
		all = append(all, readLines(t, p)...)
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Errorf("%s.3 kept with keep 2: %v", path, err)
	}
	first := n - len(all)
	for i, r := range all {
		if want := record(first + i).Sandbox; r.Sandbox != want {
			t.Fatalf("line %d of the kept files is %s, want %s", i, r.Sandbox, want)
		}
	}
	if len(all) != 2*perFile+n%perFile {
		t.Fatalf("kept %d lines, want %d", len(all), 2*perFile+n%perFile)
	}
}

// TestKeepZeroRotatesIntoNothing guarantees that with Keep 0 the file
// starts afresh at the bound and no rotated file appears.
func TestKeepZeroRotatesIntoNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, _, _ := open(t, Config{Path: path, MaxBytes: 300, Keep: 0})
	for i := range 10 {
		l.Append(record(i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("files %v, want only audit.log", entries)
	}
	if got := readLines(t, path); len(got) == 0 || got[len(got)-1].Sandbox != record(9).Sandbox {
		t.Fatalf("file holds %v, want the newest lines", got)
	}
}

// TestAppendNeverBlocksOnAStalledWriter guarantees that when the disk
// stalls (here: a FIFO nobody reads) Append still returns at once,
// dropping and counting what the queue cannot hold, warning once per
// interval, and that Close then writes everything that was queued.
func TestAppendNeverBlocksOnAStalledWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	// A reader that reads nothing yet: the writer fills the pipe and blocks.
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	l, d, logBuf := open(t, Config{Path: path, MaxBytes: 1 << 30, QueueLen: 16})
	const n = 20000
	start := time.Now()
	for i := range n {
		l.Append(record(i % 1000))
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("%d Appends took %v with the writer stalled", n, took)
	}
	dropped := d.n.Load()
	if dropped == 0 {
		t.Fatal("nothing dropped: the writer did not stall, the test proves nothing")
	}
	if warns := strings.Count(logBuf.String(), "audit log lines lost"); warns != 1 {
		t.Fatalf("%d warnings, want 1 per interval:\n%s", warns, logBuf.String())
	}

	read := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		read <- b
	}()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := bytes.Count(<-read, []byte("\n"))
	if int64(lines)+dropped != n {
		t.Fatalf("%d lines written + %d dropped != %d appended", lines, dropped, n)
	}
}

// TestLineCarriesTheSchema guarantees the field names of a line (of a call
// and of an egress connection, which has no code), the time in RFC 3339
// UTC with nanoseconds, and that absent parts are left out while a zero
// exit code, a zero size and zero bytes are not.
func TestLineCarriesTheSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, _, _ := open(t, Config{Path: path, MaxBytes: 1 << 20})
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.FixedZone("CET", 3600))
	exit, dur, size := int32(0), 12.5, int64(0)
	l.Append(Record{Time: at, Tenant: "team-a", Peer: "unix", Method: "/sandbox.v1.SandboxService/Exec", Sandbox: "sb-1", Template: "python",
		Code: "OK", DurationMS: 20, Exec: &Exec{Language: "LANGUAGE_PYTHON", CodeBytes: 5, CodeSHA256: "ab", TimeoutMS: 1000,
			OutputBytes: 3, Status: "EXEC_STATUS_OK", ExitCode: &exit, DurationMS: &dur}})
	l.Append(Record{Time: at, Method: "/sandbox.v1.SandboxService/Upload", Code: "ResourceExhausted", Error: "too big",
		File: &File{Path: "a", AbsPath: "/workspace/a", Size: &size, SHA256: "e3"}})
	l.Append(Record{Time: at, Method: "/sandbox.v1.SandboxService/ListFiles", Code: "OK", File: &File{Path: ""}})
	l.Append(Record{Time: at, Tenant: "team-a", Method: MethodEgress, Sandbox: "sb-1", Template: "web", DurationMS: 3,
		Egress: &Egress{Host: "example.com", Port: 443, Addr: "192.0.2.1:443", Allowed: true, Reason: `allowed by "example.com"`}})
	l.Append(Record{Time: at, Tenant: "team-a", Method: MethodEgress, Sandbox: "sb-1", Template: "web",
		Egress: &Egress{Host: "10.0.0.1", Port: 80, Reason: "no CIDR entry holds 10.0.0.1"}})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string][]string{
		{"": {"time", "tenant", "peer", "method", "sandbox", "template", "grpc_code", "duration_ms", "exec"},
			"exec": {"language", "code_bytes", "code_sha256", "timeout_ms", "output_bytes", "status", "exit_code", "duration_ms"}},
		{"": {"time", "tenant", "peer", "method", "grpc_code", "error", "duration_ms", "file"},
			"file": {"path", "abs_path", "size", "sha256"}},
		{"": {"time", "tenant", "peer", "method", "grpc_code", "duration_ms", "file"},
			"file": {"path"}},
		{"": {"time", "tenant", "peer", "method", "sandbox", "template", "duration_ms", "egress"},
			"egress": {"host", "port", "addr", "allowed", "reason", "bytes_up", "bytes_down"}},
		{"": {"time", "tenant", "peer", "method", "sandbox", "template", "duration_ms", "egress"},
			"egress": {"host", "port", "allowed", "reason", "bytes_up", "bytes_down"}},
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), data)
	}
	for i, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		for part, fields := range want[i] {
			obj := m
			if part != "" {
				obj = m[part].(map[string]any)
			}
			got := make([]string, 0, len(obj))
			for k := range obj {
				got = append(got, k)
			}
			slices.Sort(got)
			slices.Sort(fields)
			if !reflect.DeepEqual(got, fields) {
				t.Errorf("line %d %q fields %v, want %v", i, part, got, fields)
			}
		}
		if m["time"] != "2030-01-02T02:04:05.000000006Z" {
			t.Errorf("line %d time %v, want RFC 3339 UTC with nanoseconds", i, m["time"])
		}
	}
}

// TestLongFieldsAreClipped guarantees that a client cannot make a line
// (or the queue) as big as the path it sends.
func TestLongFieldsAreClipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, _, _ := open(t, Config{Path: path, MaxBytes: 1 << 30})
	long := strings.Repeat("x", 4<<20)
	l.Append(Record{Time: time.Now(), Sandbox: long, Error: long, File: &File{Path: long, AbsPath: long}, Egress: &Egress{Host: long, Reason: long}})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 7*maxField+1024 {
		t.Fatalf("line of %d bytes for six clipped fields", st.Size())
	}
}
