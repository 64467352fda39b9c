package identifiers

import (
	"fmt"
	"regexp"

	"github.com/sandboxd/sandboxd/runtime/errdefs"
)

// Label limits keep a sandbox's metadata small: they are stored in memory
// per sandbox and returned by every List.
const (
	// MaxLabels per sandbox.
	MaxLabels = 32
	// MaxLabelKeyLength matches Kubernetes' label name part.
	MaxLabelKeyLength = 63
	// MaxLabelValueLength allows an ID or a short description.
	MaxLabelValueLength = 256
)

var labelKeyPattern = regexp.MustCompile(`^[a-zA-Z0-9._/-]+$`)

// ValidateLabels returns an ErrInvalidArgument error naming the first bad
// label, if any.
func ValidateLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return fmt.Errorf("%d labels, more than %d: %w", len(labels), MaxLabels, errdefs.ErrInvalidArgument)
	}
	for k, v := range labels {
		if len(k) == 0 || len(k) > MaxLabelKeyLength || !labelKeyPattern.MatchString(k) {
			return fmt.Errorf("invalid label key %q: use 1-%d characters of a-z, A-Z, 0-9, '.', '_', '/', '-': %w", k, MaxLabelKeyLength, errdefs.ErrInvalidArgument)
		}
		if len(v) > MaxLabelValueLength {
			return fmt.Errorf("label %q: value is %d bytes, more than %d: %w", k, len(v), MaxLabelValueLength, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}
