package cgroups

import (
	"errors"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/runtime/errdefs"
)

// TestPathTraversalNamesAreRejected guarantees that no parent or sandbox
// ID can name a cgroup outside the parent: absolute paths, "..", ".",
// empty elements and characters other than the safe set are refused
// before any file is touched.
func TestPathTraversalNamesAreRejected(t *testing.T) {
	parents := []struct {
		parent string
		ok     bool
	}{
		{"sandboxd", true},
		{"sandboxd/var-lib_sandboxd", true},
		{"Sandboxd-2", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{"/sandboxd", false},
		{"sandboxd/", false},
		{"a//b", false},
		{"..", false},
		{"sandboxd/../etc", false},
		{".", false},
		{"memory.max", false},
		{"sand boxd", false},
		{"sandboxd\n", false},
		{"sandboxd:x", false},
		{strings.Repeat("a", 65), false},
	}
	for _, tc := range parents {
		err := validateParent(tc.parent)
		if (err == nil) != tc.ok {
			t.Errorf("validateParent(%q) = %v, want ok=%v", tc.parent, err, tc.ok)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("validateParent(%q) = %v, want ErrInvalidArgument", tc.parent, err)
		}
	}

	// IDs are refused by Create and Load before the Manager is used, so a
	// zero Manager suffices.
	var m Manager
	for _, id := range []string{"", "..", "../x", "a/b", "A", "sb_1", "-sb", "sb.1", strings.Repeat("a", 65)} {
		if _, err := m.Create(id, Resources{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Create(%q) = %v, want ErrInvalidArgument", id, err)
		}
		if _, err := m.Load(id); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Load(%q) = %v, want ErrInvalidArgument", id, err)
		}
	}
}
