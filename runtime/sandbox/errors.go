package sandbox

import (
	"errors"
	"strings"

	"github.com/sandboxd/sandboxd/runtime/holder"
)

// ignoreGone treats a holder that already exited (its sandbox died, or it
// was released) as released.
func ignoreGone(err error) error {
	if errors.Is(err, holder.ErrGone) {
		return nil
	}
	return err
}

// ignoreUnknown treats "no such sandbox" from runsc delete as success, so
// teardown is idempotent.
func ignoreUnknown(err error) error {
	if err != nil && (strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), "not found")) {
		return nil
	}
	return err
}
