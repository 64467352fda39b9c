package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// TestCreate guarantees that create sends the template and labels and
// prints the sandbox ID alone on a line.
func TestCreate(t *testing.T) {
	f := &fakeServer{}
	sock := startFake(t, f)
	r := runOn(t, sock, "", "create", "--template", "big", "--label", "team=ml", "--label", "run=7")
	wantExit(t, r, 0)
	if r.stdout != "sb-1\n" || r.stderr != "" {
		t.Errorf("stdout %q, stderr %q; want the ID alone", r.stdout, r.stderr)
	}
	f.locked(func() {
		if f.created.GetTemplate() != "big" || keyValues(f.created.GetLabels()).String() != "run=7,team=ml" {
			t.Errorf("request = %v", f.created)
		}
	})
}

// TestJSONOutput guarantees that create, get and list --json print JSON
// that parses back into the sandboxes (list: an array, empty when none).
func TestJSONOutput(t *testing.T) {
	sock := startFake(t, &fakeServer{})

	r := runOn(t, sock, "", "list", "--json")
	wantExit(t, r, 0)
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("empty list --json = %q, want []", r.stdout)
	}

	r = runOn(t, sock, "", "create", "--json", "--label", "a=b")
	wantExit(t, r, 0)
	var created sandboxv1.Sandbox
	if err := protojson.Unmarshal([]byte(r.stdout), &created); err != nil {
		t.Fatalf("create --json: %v\n%s", err, r.stdout)
	}
	if created.GetSandboxId() != "sb-1" || created.GetLabels()["a"] != "b" ||
		created.GetState() != sandboxv1.SandboxState_SANDBOX_STATE_RUNNING {
		t.Errorf("create --json = %v", &created)
	}
	var fields map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &fields); err != nil || fields["sandboxId"] != "sb-1" {
		t.Errorf("create --json is not a plain JSON object with sandboxId: %v %v", err, fields)
	}

	r = runOn(t, sock, "", "get", "sb-1", "--json")
	wantExit(t, r, 0)
	var got sandboxv1.Sandbox
	if err := protojson.Unmarshal([]byte(r.stdout), &got); err != nil || got.GetSandboxId() != "sb-1" {
		t.Errorf("get --json = %v (%v)\n%s", &got, err, r.stdout)
	}

	runOn(t, sock, "", "create")
	r = runOn(t, sock, "", "list", "--json")
	wantExit(t, r, 0)
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil || len(raw) != 2 {
		t.Fatalf("list --json: %d elements (%v)\n%s", len(raw), err, r.stdout)
	}
	for i, want := range []string{"sb-1", "sb-2"} {
		var sb sandboxv1.Sandbox
		if err := protojson.Unmarshal(raw[i], &sb); err != nil || sb.GetSandboxId() != want {
			t.Errorf("list --json element %d = %v (%v), want %s", i, &sb, err, want)
		}
	}
}

// TestGetAndList guarantees the text output of get and the table of list,
// with its columns, one row per sandbox, and the label selector passed on.
func TestGetAndList(t *testing.T) {
	f := &fakeServer{}
	sock := startFake(t, f)
	runOn(t, sock, "", "create", "--template", "py", "--label", "team=ml")
	runOn(t, sock, "", "create")

	r := runOn(t, sock, "", "get", "sb-1")
	wantExit(t, r, 0)
	for _, s := range []string{"ID:", "sb-1", "Template:", "py", "State:", "RUNNING", "Created:", "Expires:", "Labels:", "team=ml"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("get does not show %q:\n%s", s, r.stdout)
		}
	}

	r = runOn(t, sock, "", "list", "--label", "team=ml")
	wantExit(t, r, 0)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("list printed %d lines, want a header and 2 rows:\n%s", len(lines), r.stdout)
	}
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != "ID TEMPLATE STATE AGE EXPIRES IN LABELS" {
		t.Errorf("header = %q", lines[0])
	}
	if got := strings.Fields(lines[1]); len(got) != 6 || got[0] != "sb-1" || got[1] != "py" ||
		got[2] != "RUNNING" || got[5] != "team=ml" {
		t.Errorf("row = %q", lines[1])
	}
	if got := strings.Fields(lines[2]); len(got) != 6 || got[1] != "-" || got[5] != "-" {
		t.Errorf("row without template and labels = %q", lines[2])
	}
	f.locked(func() {
		if f.listed.GetLabelSelector()["team"] != "ml" {
			t.Errorf("label selector = %v", f.listed.GetLabelSelector())
		}
	})
}

// TestDestroy guarantees that destroy destroys every ID given, goes on past
// a failure, reports it with the ID, and then exits 1.
func TestDestroy(t *testing.T) {
	f := &fakeServer{}
	sock := startFake(t, f)
	wantExit(t, runOn(t, sock, "", "destroy", "a", "b"), 0)
	r := runOn(t, sock, "", "destroy", "c", "broken", "d")
	wantExit(t, r, 1)
	if want := "sandboxctl: destroy: broken: kill failed (internal)\n"; r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
	f.locked(func() {
		if got := strings.Join(f.destroyed, " "); got != "a b c d" {
			t.Errorf("destroyed %q, want a b c d", got)
		}
	})
}

// TestHumanDuration guarantees the compact durations of AGE and EXPIRES IN.
func TestHumanDuration(t *testing.T) {
	for _, tc := range []struct {
		secs int64
		want string
	}{{-5, "0s"}, {45, "45s"}, {200, "3m20s"}, {5*3600 + 120, "5h2m"}, {2*86400 + 3*3600, "2d3h"}} {
		if got := humanDuration(time.Duration(tc.secs) * time.Second); got != tc.want {
			t.Errorf("humanDuration(%ds) = %q, want %q", tc.secs, got, tc.want)
		}
	}
}

// TestCreateLimits guarantees that each limit flag of create reaches its
// field of the request's Limits, parsed as in the policy file, and that a
// create without them sends no Limits.
func TestCreateLimits(t *testing.T) {
	f := &fakeServer{}
	sock := startFake(t, f)
	wantExit(t, runOn(t, sock, "", "create"), 0)
	f.locked(func() {
		if f.created.GetLimits() != nil {
			t.Errorf("create without limit flags sent limits %v", f.created.GetLimits())
		}
	})

	r := runOn(t, sock, "", "create", "--cpu", "500m", "--memory", "512Mi", "--disk", "1.5Gi",
		"--processes", "64", "--open-files", "256", "--file-size", "10M", "--output", "1048576",
		"--upload-file", "64Mi", "--upload-total", "1Gi", "--download-file", "2Gi", "--download-total", "8Gi", "--python-address-space", "768Mi",
		"--exec-timeout-max", "2m", "--exec-timeout", "30s", "--lifetime", "1h30m", "--idle-timeout", "5m")
	wantExit(t, r, 0)
	want := &sandboxv1.Limits{
		Cpu:                     0.5,
		MemoryBytes:             512 << 20,
		DiskBytes:               1536 << 20,
		Processes:               64,
		OpenFiles:               256,
		FileSizeBytes:           10e6,
		OutputBytes:             1 << 20,
		UploadFileBytes:         64 << 20,
		UploadTotalBytes:        1 << 30,
		DownloadFileBytes:       2 << 30,
		DownloadTotalBytes:      8 << 30,
		PythonAddressSpaceBytes: 768 << 20,
		ExecTimeoutMax:          durationpb.New(2 * time.Minute),
		ExecTimeoutDefault:      durationpb.New(30 * time.Second),
		Lifetime:                durationpb.New(90 * time.Minute),
		IdleTimeout:             durationpb.New(5 * time.Minute),
	}
	f.locked(func() {
		if !proto.Equal(f.created.GetLimits(), want) {
			t.Errorf("limits = %v, want %v", f.created.GetLimits(), want)
		}
	})

	// One flag sets one field; the others stay zero (the template's).
	wantExit(t, runOn(t, sock, "", "create", "--cpu", "0.25"), 0)
	f.locked(func() {
		if want := (&sandboxv1.Limits{Cpu: 0.25}); !proto.Equal(f.created.GetLimits(), want) {
			t.Errorf("limits = %v, want %v", f.created.GetLimits(), want)
		}
	})
}

// TestCreateLimitErrors guarantees that a bad limit value is a usage error
// saying what is wrong, before any RPC.
func TestCreateLimitErrors(t *testing.T) {
	f := &fakeServer{}
	sock := startFake(t, f)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--memory", "1GB"}, `invalid value "1GB" for flag -memory: invalid size "1GB": unknown suffix "GB"; write 1Gi (gibibytes, 2^30 bytes) or 1G (gigabytes, 10^9 bytes)`},
		{[]string{"--disk", "-1Mi"}, `size "-1Mi" is negative`},
		{[]string{"--output", "0"}, `invalid value "0" for flag -output: must be greater than 0 (leave the flag out to keep the template's)`},
		{[]string{"--python-address-space", "0.5"}, `size "0.5" is not a whole number of bytes`},
		{[]string{"--cpu", "lots"}, `invalid value "lots" for flag -cpu: want a number of cores greater than 0, such as 1, 0.5 or 500m`},
		{[]string{"--cpu", "0m"}, "want a number of cores greater than 0"},
		{[]string{"--cpu", "NaN"}, "want a number of cores greater than 0"},
		{[]string{"--processes", "1.5"}, `invalid value "1.5" for flag -processes: want a whole number greater than 0`},
		{[]string{"--open-files", "0"}, "want a whole number greater than 0"},
		{[]string{"--lifetime", "10"}, `duration "10" has no unit: write 10s for seconds`},
		{[]string{"--exec-timeout", "0s"}, "duration must be greater than 0, got 0s"},
		{[]string{"--idle-timeout", "soon"}, `invalid duration "soon"`},
	} {
		r := runOn(t, sock, "", append([]string{"create"}, tc.args...)...)
		if r.code != exitUsage || !strings.HasPrefix(r.stderr, "sandboxctl: create: ") ||
			!strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and one line with %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	f.locked(func() {
		if f.created != nil {
			t.Errorf("a bad limit reached the daemon: %v", f.created)
		}
	})
}

// TestGetLimitsAndUsage guarantees get's Limits and Usage sections: limits
// exact as the policy file writes them, usage rounded, and neither section
// for a sandbox without them.
func TestGetLimitsAndUsage(t *testing.T) {
	f := &fakeServer{}
	sock := startFake(t, f)
	runOn(t, sock, "", "create")
	runOn(t, sock, "", "create")
	f.locked(func() {
		sb := f.sandboxes["sb-1"]
		sb.Limits = &sandboxv1.Limits{
			Cpu:                0.5,
			MemoryBytes:        1 << 30,
			DiskBytes:          512 << 20,
			Processes:          256,
			OpenFiles:          1024,
			FileSizeBytes:      1 << 30,
			OutputBytes:        16 << 20,
			UploadFileBytes:    1 << 30,
			UploadTotalBytes:   4 << 30,
			DownloadFileBytes:  1 << 30,
			DownloadTotalBytes: 16 << 30, Images: 8, ImageBytes: 8 << 20,
			ExecTimeoutMax:     durationpb.New(10 * time.Minute),
			ExecTimeoutDefault: durationpb.New(time.Minute),
			Lifetime:           durationpb.New(time.Hour),
			IdleTimeout:        durationpb.New(90 * time.Second),
		}
		sb.Usage = &sandboxv1.ResourceUsage{
			CpuTime:     durationpb.New(1234567890 * time.Nanosecond),
			MemoryBytes: 180<<20 + 12345,
		}
	})

	r := runOn(t, sock, "", "get", "sb-1")
	wantExit(t, r, 0)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "Limits:") })
	if i < 0 {
		t.Fatalf("get shows no limits:\n%s", r.stdout)
	}
	var got []string
	for _, l := range lines[i:] {
		got = append(got, strings.Join(strings.Fields(l), " "))
	}
	want := []string{
		"Limits:",
		"CPU: 0.5 cores",
		"Memory: 1Gi",
		"Disk: 512Mi",
		"Processes: 256",
		"Open files: 1024",
		"File size: 1Gi",
		"Output per exec: 16Mi",
		"Upload per file: 1Gi",
		"Uploads in total: 4Gi",
		"Download per file: 1Gi",
		"Downloads in total: 16Gi",
		"Python address space: none",
		"Figures per exec: 8 (8Mi)",
		"Exec timeout: 1m (max 10m)",
		"Lifetime: 1h",
		"Idle timeout: 1m30s",
		"Usage:",
		"CPU time: 1.235s",
		"Memory: 180Mi",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("get shows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if strings.Contains(r.stdout, " \n") {
		t.Errorf("get ends lines with spaces:\n%q", r.stdout)
	}
	// The values line up with those of the other rows.
	if col := strings.Index(lines[0], "sb-1"); col < 0 || strings.Index(lines[i+1], "0.5") != col {
		t.Errorf("limit values do not line up with the others:\n%s", r.stdout)
	}

	r = runOn(t, sock, "", "get", "sb-2")
	wantExit(t, r, 0)
	if strings.Contains(r.stdout, "Limits:") || strings.Contains(r.stdout, "Usage:") {
		t.Errorf("get of a sandbox without limits and usage shows them:\n%s", r.stdout)
	}

	// Overrides given to create show in get (the fake keeps only those).
	runOn(t, sock, "", "create", "--memory", "256Mi", "--python-address-space", "1.5Gi")
	r = runOn(t, sock, "", "get", "sb-3")
	wantExit(t, r, 0)
	for _, s := range []string{"Memory: 256Mi", "Python address space: 1536Mi", "CPU: -", "Exec timeout: -"} {
		if !strings.Contains(strings.Join(strings.Fields(r.stdout), " "), s) {
			t.Errorf("get does not show %q:\n%s", s, r.stdout)
		}
	}
}

// TestFormatters guarantees the renderings of measured sizes and
// durations and of CPU limits.
func TestFormatters(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0", 900: "900", 1023: "1023", 1024: "1Ki", 1536: "1.5Ki", 10*1024 - 1: "10Ki",
		180<<20 + 12345: "180Mi", 1<<30 - 1: "1Gi", 3 << 29: "1.5Gi", 5 << 40: "5Ti", 2000 << 40: "2000Ti",
	} {
		if got := approxSize(n); got != want {
			t.Errorf("approxSize(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		0: "0s", 412345 * time.Nanosecond: "412µs", 12345678 * time.Nanosecond: "12ms",
		1234567890 * time.Nanosecond: "1.235s", 90 * time.Second: "1m30s",
	} {
		if got := measuredDuration(d); got != want {
			t.Errorf("measuredDuration(%v) = %q, want %q", d, got, want)
		}
	}
	for c, want := range map[float64]string{0: "-", 0.5: "0.5 cores", 1: "1 core", 2: "2 cores", 0.125: "0.125 cores"} {
		if got := formatCores(c); got != want {
			t.Errorf("formatCores(%g) = %q, want %q", c, got, want)
		}
	}
}
