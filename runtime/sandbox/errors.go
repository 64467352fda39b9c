package sandbox

import "strings"

// ignoreUnknown treats "no such sandbox" from runsc delete as success, so
// teardown is idempotent.
func ignoreUnknown(err error) error {
	if err != nil && (strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), "not found")) {
		return nil
	}
	return err
}
