package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

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
