// Package identifiers validates every name a client sends (sandbox IDs,
// labels, sandbox file paths) before it touches a host path, an argv or a
// map, and generates sandbox IDs.
package identifiers

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"regexp"

	"github.com/sandboxd/sandboxd/runtime/errdefs"
)

// MaxIDLength bounds sandbox IDs: long enough for our generated IDs and for
// IDs of other runsc users, short enough for unix socket paths under a
// state directory.
const MaxIDLength = 64

// idPrefix marks IDs made by sandboxd, so an operator can tell them apart in
// `runsc list` output.
const idPrefix = "sb-"

var idPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// ValidateID returns an ErrInvalidArgument error unless id can be used as a
// sandbox ID: 1-64 characters of a-z, 0-9 and '-', not starting or ending
// with '-'. Such an ID is safe as a path element and as an argv word.
func ValidateID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("sandbox ID is empty: %w", errdefs.ErrInvalidArgument)
	case len(id) > MaxIDLength:
		return fmt.Errorf("sandbox ID is %d characters, more than %d: %w", len(id), MaxIDLength, errdefs.ErrInvalidArgument)
	case !idPattern.MatchString(id):
		return fmt.Errorf("invalid sandbox ID %q: use a-z, 0-9 and '-': %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

// idEncoding is lowercase base32 without padding: IDs match idPattern.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID returns a fresh random sandbox ID ("sb-" and 24 base32 characters:
// 120 random bits, so IDs cannot be guessed to reach another client's
// sandbox).
func NewID() string {
	b := make([]byte, 15)
	rand.Read(b) // never fails (crypto/rand panics instead)
	return idPrefix + idEncoding.EncodeToString(b)
}
