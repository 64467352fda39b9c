package identifiers

import (
	"errors"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/runtime/errdefs"
)

// FuzzSandboxPath guarantees that whatever a client sends as a file path,
// SandboxPath either refuses it with InvalidArgument or returns a clean
// path of at most MaxPathLength bytes, without NUL, that is absolute and
// not the root, or relative and inside /workspace: it never starts with
// "..", so joined to the workspace it stays under it. The result is a
// fixed point: checking it again returns it unchanged.
func FuzzSandboxPath(f *testing.F) {
	for _, p := range []string{
		"data.csv", "./a/../b.txt", "a/b/../../c", "/etc/hostname", "/tmp/../etc/x",
		"../x", "a/../../x", "..", ".", "", "/", "a\x00b", "//", "...", "..a", "a/..", "a/...",
		"/../../etc/passwd", "./../x", "x/./../../y", ".../x", "a//b///c/", "\\..\\x", "..\x00",
		strings.Repeat("a/", MaxPathLength/2), strings.Repeat("../", 10) + "x",
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, err := SandboxPath(p)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("SandboxPath(%q): %v, want InvalidArgument", p, err)
			}
			if got != "" {
				t.Fatalf("SandboxPath(%q) refused with %v but returned %q", p, err, got)
			}
			return
		}
		switch {
		case got == "" || len(got) > MaxPathLength:
			t.Fatalf("SandboxPath(%q) = %q: %d bytes, want 1 to %d", p, got, len(got), MaxPathLength)
		case strings.ContainsRune(got, 0):
			t.Fatalf("SandboxPath(%q) = %q contains a NUL byte", p, got)
		case path.Clean(got) != got:
			t.Fatalf("SandboxPath(%q) = %q is not clean", p, got)
		case got == "/" || got == ".":
			t.Fatalf("SandboxPath(%q) = %q names a directory, not a file", p, got)
		case !path.IsAbs(got) && (got == ".." || strings.HasPrefix(got, "../")):
			t.Fatalf("SandboxPath(%q) = %q climbs out of %s", p, got, Workspace)
		case !path.IsAbs(got) && !strings.HasPrefix(path.Join(Workspace, got), Workspace+"/"):
			t.Fatalf("SandboxPath(%q) = %q is outside %s once joined", p, got, Workspace)
		}
		if again, err := SandboxPath(got); err != nil || again != got {
			t.Fatalf("SandboxPath(%q) = %q, but SandboxPath(%q) = %q, %v", p, got, got, again, err)
		}
	})
}

// FuzzValidateID guarantees that ValidateID accepts exactly the IDs of 1
// to MaxIDLength bytes of a-z, 0-9 and '-' that neither start nor end with
// '-', so an accepted ID is one path element (never "." or "..") and never
// taken for a flag; everything else is InvalidArgument.
func FuzzValidateID(f *testing.F) {
	for _, id := range []string{
		"", "a", "sb-abc", "0", "..", "../x", "a/b", "-rf", "--root=/", "a-", "A", "a b", "a\x00b", "a.b",
		"sb-", "-", "a--b", "ä", "a\n", strings.Repeat("a", MaxIDLength), strings.Repeat("a", MaxIDLength+1), "sb-abcdefghijklmnopqrstuvwx",
	} {
		f.Add(id)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := ValidateID(id)
		want := plainID(id)
		switch {
		case err != nil && !errors.Is(err, errdefs.ErrInvalidArgument):
			t.Fatalf("ValidateID(%q): %v, want InvalidArgument", id, err)
		case want && err != nil:
			t.Fatalf("ValidateID(%q) refused a well-formed ID: %v", id, err)
		case !want && err == nil:
			t.Fatalf("ValidateID(%q) accepted a malformed ID", id)
		case err == nil && (filepath.Base(id) != id || id == "." || id == ".." || strings.HasPrefix(id, "-")):
			t.Fatalf("ValidateID(%q) accepted an ID that is not one path element or argv word", id)
		}
	})
}

// plainID is ValidateID's rule written out byte by byte, as the fuzzer's
// oracle.
func plainID(id string) bool {
	if len(id) == 0 || len(id) > MaxIDLength || id[0] == '-' || id[len(id)-1] == '-' {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// FuzzValidateLabels guarantees that ValidateLabels accepts a label set
// only within the limits (at most MaxLabels labels, keys of 1 to
// MaxLabelKeyLength bytes of a-z, A-Z, 0-9, '.', '_', '/', '-', values of at
// most MaxLabelValueLength bytes) and refuses any other with
// InvalidArgument. The labels are the input's lines as key=value, plus
// extra generated ones to cross the count limit.
func FuzzValidateLabels(f *testing.F) {
	f.Add("team=ml\napp.io/run=42", uint8(0))
	f.Add("=x", uint8(0))
	f.Add("a b=x", uint8(0))
	f.Add("k="+strings.Repeat("v", MaxLabelValueLength+1), uint8(0))
	f.Add(strings.Repeat("k", MaxLabelKeyLength+1)+"=", uint8(0))
	f.Add("x=1", uint8(MaxLabels-1))
	f.Add("x=1", uint8(MaxLabels))
	f.Add("ключ=1", uint8(0))
	f.Fuzz(func(t *testing.T, data string, extra uint8) {
		labels := map[string]string{}
		for _, line := range strings.Split(data, "\n") {
			k, v, _ := strings.Cut(line, "=")
			labels[k] = v
		}
		for i := range int(extra) {
			labels["extra-"+string(rune('a'+i%26))+strings.Repeat("x", i/26)] = ""
		}
		err := ValidateLabels(labels)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("ValidateLabels: %v, want InvalidArgument", err)
			}
			if withinLabelLimits(labels) {
				t.Fatalf("ValidateLabels refused labels within the limits: %v", err)
			}
			return
		}
		if !withinLabelLimits(labels) {
			t.Fatalf("ValidateLabels accepted %d labels beyond the limits: %q", len(labels), labels)
		}
	})
}

// withinLabelLimits is ValidateLabels' rule written out, as the fuzzer's
// oracle.
func withinLabelLimits(labels map[string]string) bool {
	if len(labels) > MaxLabels {
		return false
	}
	for k, v := range labels {
		if len(k) == 0 || len(k) > MaxLabelKeyLength || len(v) > MaxLabelValueLength {
			return false
		}
		for _, c := range []byte(k) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._/-", c) >= 0) {
				return false
			}
		}
	}
	return true
}
