package identifiers

import (
	"errors"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/runtime/errdefs"
)

// TestValidateIDRejectsPathAndArgvTricks guarantees that no ID that could
// escape the state directory or be taken as a runsc flag is accepted.
func TestValidateIDRejectsPathAndArgvTricks(t *testing.T) {
	bad := []string{"", "..", "../x", "a/b", "-rf", "--root=/", "a-", "A", "a b", "a\x00b", "a.b", strings.Repeat("a", MaxIDLength+1)}
	for _, id := range bad {
		if err := ValidateID(id); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ValidateID(%q) = %v, want InvalidArgument", id, err)
		}
	}
	good := []string{"a", "sb-abc", "0", strings.Repeat("a", MaxIDLength)}
	for _, id := range good {
		if err := ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q) = %v", id, err)
		}
	}
}

// TestNewIDIsValidAndUnique guarantees that generated IDs pass validation,
// carry the sb- prefix and do not repeat.
func TestNewIDIsValidAndUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewID()
		if ValidateID(id) != nil || !strings.HasPrefix(id, idPrefix) {
			t.Fatalf("NewID() = %q is not a valid sandboxd ID", id)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
	}
}

// TestValidateLabels guarantees the label limits.
func TestValidateLabels(t *testing.T) {
	if err := ValidateLabels(map[string]string{"team": "ml", "app.io/run": "42"}); err != nil {
		t.Fatal(err)
	}
	many := map[string]string{}
	for i := range MaxLabels + 1 {
		many[strings.Repeat("k", i+1)] = ""
	}
	for _, l := range []map[string]string{
		{"": "x"}, {"a b": "x"}, {strings.Repeat("k", 64): ""}, {"k": strings.Repeat("v", 257)}, many,
	} {
		if err := ValidateLabels(l); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ValidateLabels(%.40v) = %v, want InvalidArgument", l, err)
		}
	}
}

// TestSandboxPathConfinesRelativePaths guarantees that relative paths cannot
// climb out of /workspace and that absolute paths are cleaned.
func TestSandboxPathConfinesRelativePaths(t *testing.T) {
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"data.csv", "data.csv", true},
		{"./a/../b.txt", "b.txt", true},
		{"a/b/../../c", "c", true},
		{"/etc/hostname", "/etc/hostname", true},
		{"/tmp/../etc/x", "/etc/x", true},
		{"../x", "", false},
		{"a/../../x", "", false},
		{"..", "", false},
		{".", "", false},
		{"", "", false},
		{"/", "", false},
		{"a\x00b", "", false},
		{strings.Repeat("a", MaxPathLength+1), "", false},
	}
	for _, c := range cases {
		got, err := SandboxPath(c.in)
		if c.ok && (err != nil || got != c.want) {
			t.Errorf("SandboxPath(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
		if !c.ok && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("SandboxPath(%q) = %q, %v; want InvalidArgument", c.in, got, err)
		}
	}
}
