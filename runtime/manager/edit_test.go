package manager

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/policy"
	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"github.com/sandboxd/sandboxd/runtime/errdefs"
)

// TestCheckEditRefusesBadRequests guarantees that malformed EditFile
// requests are INVALID_ARGUMENT before any sandbox is touched, with a
// message naming what to fix.
func TestCheckEditRefusesBadRequests(t *testing.T) {
	view := sandboxv1.EditCommand_EDIT_COMMAND_VIEW
	for _, c := range []struct {
		name string
		req  *sandboxv1.EditFileRequest
		want string // in the error; empty: accepted
	}{
		{"view", &sandboxv1.EditFileRequest{Command: view}, ""},
		{"view range", &sandboxv1.EditFileRequest{Command: view, ViewRange: []int32{3, -1}}, ""},
		{"no command", &sandboxv1.EditFileRequest{}, "EDIT_COMMAND_VIEW, EDIT_COMMAND_CREATE"},
		{"unknown command", &sandboxv1.EditFileRequest{Command: 99}, "not supported"},
		{"one-number range", &sandboxv1.EditFileRequest{Command: view, ViewRange: []int32{3}}, "give two"},
		{"three-number range", &sandboxv1.EditFileRequest{Command: view, ViewRange: []int32{1, 2, 3}}, "give two"},
		{"negative max_characters", &sandboxv1.EditFileRequest{Command: view, MaxCharacters: -1}, "max_characters"},
		{"huge max_characters", &sandboxv1.EditFileRequest{Command: view, MaxCharacters: MaxViewCharacters + 1}, "max_characters"},
		{"negative insert_line", &sandboxv1.EditFileRequest{Command: sandboxv1.EditCommand_EDIT_COMMAND_INSERT, InsertLine: -1}, "insert_line"},
		{"text too big", &sandboxv1.EditFileRequest{Command: sandboxv1.EditCommand_EDIT_COMMAND_CREATE, FileText: strings.Repeat("x", MaxEditText+1)}, "upload the file instead"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := checkEdit(c.req)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want InvalidArgument containing %q", err, c.want)
			}
		})
	}
}

// TestSanitizeImagesKeepsOnlyPNGsWithinLimits guarantees that a hostile
// or broken agent cannot hand a client more figures or bytes than the
// sandbox's limits.images, nor something that is not a PNG, and that the
// client is told when figures were left out.
func TestSanitizeImagesKeepsOnlyPNGsWithinLimits(t *testing.T) {
	png := func(n int) *sandboxv1.Image {
		return &sandboxv1.Image{MimeType: "image/png", Data: append([]byte(pngSignature), make([]byte, n)...)}
	}
	for _, c := range []struct {
		name      string
		in        []*sandboxv1.Image
		limits    policy.ImageLimits
		want      int
		truncated bool
	}{
		{"within", []*sandboxv1.Image{png(10), png(10)}, policy.ImageLimits{Count: 8, Bytes: 1 << 20}, 2, false},
		{"over the count", []*sandboxv1.Image{png(1), png(1), png(1)}, policy.ImageLimits{Count: 2, Bytes: 1 << 20}, 2, true},
		{"over the bytes", []*sandboxv1.Image{png(100), png(100)}, policy.ImageLimits{Count: 8, Bytes: 150}, 1, true},
		{"count 0", []*sandboxv1.Image{png(1)}, policy.ImageLimits{Count: 0, Bytes: 1 << 20}, 0, true},
		{"not a PNG", []*sandboxv1.Image{{MimeType: "image/png", Data: []byte("<svg/>")}}, policy.ImageLimits{Count: 8, Bytes: 1 << 20}, 0, true},
		{"another type", []*sandboxv1.Image{{MimeType: "text/html", Data: png(1).Data}}, policy.ImageLimits{Count: 8, Bytes: 1 << 20}, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			truncated := false
			got := sanitizeImages(c.in, c.limits, &truncated)
			if len(got) != c.want || truncated != c.truncated {
				t.Fatalf("kept %d (truncated %v), want %d (%v)", len(got), truncated, c.want, c.truncated)
			}
		})
	}
}

// TestSanitizeFilesKeepsCleanWorkspacePaths guarantees that reported
// files are clean absolute paths under /workspace, at most
// MaxReportedFiles, and that dropping any is signalled.
func TestSanitizeFilesKeepsCleanWorkspacePaths(t *testing.T) {
	entry := func(p string) *sandboxv1.FileEntry { return &sandboxv1.FileEntry{Path: p, Size: 1, Mode: 0o100644} }
	truncated := false
	got := sanitizeFiles([]*sandboxv1.FileEntry{entry("/workspace/a.csv"), entry("/workspace/sub/b.png")}, &truncated)
	if len(got) != 2 || truncated || got[0].Mode != 0o644 {
		t.Fatalf("clean entries: %v truncated %v", got, truncated)
	}
	for _, bad := range []string{"/etc/passwd", "/workspace/../etc/passwd", "relative", "/workspace", "/workspace/a\x00b", "/workspacex/a"} {
		truncated := false
		if got := sanitizeFiles([]*sandboxv1.FileEntry{entry(bad)}, &truncated); len(got) != 0 || !truncated {
			t.Errorf("%q: kept %v (truncated %v)", bad, got, truncated)
		}
	}
	many := make([]*sandboxv1.FileEntry, MaxReportedFiles+5)
	for i := range many {
		many[i] = entry(fmt.Sprintf("/workspace/f%d", i))
	}
	truncated = false
	if got := sanitizeFiles(many, &truncated); len(got) != MaxReportedFiles || !truncated {
		t.Fatalf("%d entries: kept %d (truncated %v)", len(many), len(got), truncated)
	}
}

// TestTenantCapsOnlyLower guarantees how a tenant's limits apply: a cap
// below the template's lowers it, one above (or unset) leaves it, and a
// Python cap applies where the template has none; so a tenant limit never
// makes a create fail as a raise would.
func TestTenantCapsOnlyLower(t *testing.T) {
	tmpl := &policy.Template{Name: "python", Limits: policy.Limits{CPU: 1, Memory: 1 << 30, Processes: 256,
		Output: 16 << 20, Images: policy.ImageLimits{Count: 8, Bytes: 8 << 20}, EgressBytes: 1 << 30, EgressConnections: 64}}
	got := tenantCaps(tmpl, policy.Limits{CPU: 2, Memory: 512 << 20, Processes: 1024, PythonAddressSpace: 256 << 20,
		Images: policy.ImageLimits{Count: 2}, EgressBytes: 100 << 20, EgressConnections: 128})
	want := Limits{Limits: policy.Limits{Memory: 512 << 20, PythonAddressSpace: 256 << 20, Images: policy.ImageLimits{Count: 2}, EgressBytes: 100 << 20}}
	if got != want {
		t.Fatalf("tenantCaps = %+v, want %+v", got, want)
	}
	lowered, atBoot, err := lower(tmpl, got)
	if err != nil || !atBoot || lowered.Limits.Memory != 512<<20 || lowered.Limits.CPU != 1 || lowered.Limits.Processes != 256 {
		t.Fatalf("lower with the caps: %+v, atBoot %v, %v", lowered.Limits, atBoot, err)
	}
}
