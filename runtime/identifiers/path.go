package identifiers

import (
	"fmt"
	"path"
	"strings"

	"github.com/sandboxd/sandboxd/runtime/errdefs"
)

// Workspace is the sandbox directory that relative file paths are under.
const Workspace = "/workspace"

// MaxPathLength is Linux's PATH_MAX.
const MaxPathLength = 4096

// SandboxPath checks a file path sent by a client and returns it cleaned.
// Relative paths stay relative (the agent resolves them inside /workspace
// without following links out of it) and may not climb out with "..";
// absolute paths address the sandbox's own file system. The path is never
// used on the host.
func SandboxPath(p string) (string, error) {
	switch {
	case p == "":
		return "", fmt.Errorf("file path is empty: %w", errdefs.ErrInvalidArgument)
	case len(p) > MaxPathLength:
		return "", fmt.Errorf("file path is %d bytes, more than %d: %w", len(p), MaxPathLength, errdefs.ErrInvalidArgument)
	case strings.ContainsRune(p, 0):
		return "", fmt.Errorf("file path %q contains a NUL byte: %w", p, errdefs.ErrInvalidArgument)
	}
	clean := path.Clean(p)
	if path.IsAbs(clean) {
		if clean == "/" {
			return "", fmt.Errorf("file path %q names the root directory, not a file: %w", p, errdefs.ErrInvalidArgument)
		}
		return clean, nil
	}
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("file path %q climbs out of %s; use a path inside it or an absolute path: %w", p, Workspace, errdefs.ErrInvalidArgument)
	}
	if clean == "." {
		return "", fmt.Errorf("file path %q names %s itself, not a file: %w", p, Workspace, errdefs.ErrInvalidArgument)
	}
	return clean, nil
}
