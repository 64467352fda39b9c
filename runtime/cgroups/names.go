package cgroups

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/sandboxd/sandboxd/runtime/errdefs"
	"github.com/sandboxd/sandboxd/runtime/identifiers"
)

// maxParentElemLen bounds each element of a parent name, the same bound as
// sandbox IDs: readable paths, far below NAME_MAX (255).
const maxParentElemLen = identifiers.MaxIDLength

// parentElemPattern admits letters, digits, '_' and '-' only. No '.', so
// an element can be neither "." nor ".." nor a cgroup interface file name
// such as "memory.max".
var parentElemPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// validateParent accepts a relative cgroup path such as "sandboxd" or
// "sandboxd/var-lib-sandboxd": elements of parentElemPattern joined by '/'.
func validateParent(parent string) error {
	if parent == "" {
		return fmt.Errorf("cgroup parent is empty: %w", errdefs.ErrInvalidArgument)
	}
	for _, elem := range strings.Split(parent, "/") {
		if len(elem) > maxParentElemLen || !parentElemPattern.MatchString(elem) {
			return fmt.Errorf("invalid cgroup parent %q: use relative elements of A-Z, a-z, 0-9, '_' and '-', each at most %d characters: %w",
				parent, maxParentElemLen, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}
