// Package identifiers validates every name a client sends (sandbox IDs,
// labels, sandbox file paths) before it touches a host path, an argv or a
// map, and generates sandbox IDs.
package identifiers

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"

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

// randomBytes is the random part of an ID: 120 bits, so IDs cannot be
// guessed to reach another client's sandbox. It is 24 base32 characters.
const randomBytes = 15

// randomChars is the length of randomBytes in base32.
const randomChars = randomBytes * 8 / 5

// MaxNodeAddressLength bounds a node address (HOST:PORT) so that a node
// ID, "sb-" + base32(address) + "-" + the random part, fits MaxIDLength:
// (64 - 3 - 1 - 24) base32 characters carry 22 bytes. Every IPv4 address
// with a port fits ("255.255.255.255:65535" is 21 bytes), as do short
// IPv6 addresses and host names.
const MaxNodeAddressLength = (MaxIDLength - len(idPrefix) - 1 - randomChars) * 5 / 8

// NewID returns a fresh random sandbox ID: "sb-" and 24 base32 characters.
func NewID() string {
	return idPrefix + random()
}

// NewNodeID returns a fresh random sandbox ID that names the node that
// owns it, "sb-" + base32(node) + "-" + 24 random base32 characters, so
// that a client or a proxy can send every call for it to that node
// without a catalog. node must have passed ValidateNodeAddress; without a
// node (""), it is NewID.
func NewNodeID(node string) string {
	if node == "" {
		return NewID()
	}
	return idPrefix + idEncoding.EncodeToString([]byte(node)) + "-" + random()
}

// random returns randomBytes fresh random bytes in base32.
func random() string {
	b := make([]byte, randomBytes)
	rand.Read(b) // never fails (crypto/rand panics instead)
	return idEncoding.EncodeToString(b)
}

// NodeOf returns the node address a node ID names, and false for an ID
// that names none (one of NewID's, or another runsc user's). It checks
// that the address is one ValidateNodeAddress accepts, so that a forged
// ID cannot name something else.
func NodeOf(id string) (string, bool) {
	rest, ok := strings.CutPrefix(id, idPrefix)
	if !ok {
		return "", false
	}
	enc, rnd, ok := strings.Cut(rest, "-")
	if !ok || len(rnd) != randomChars || strings.Contains(rnd, "-") {
		return "", false
	}
	node, err := idEncoding.DecodeString(enc)
	if err != nil || ValidateNodeAddress(string(node)) != nil {
		return "", false
	}
	return string(node), true
}

// ValidateNodeAddress returns an ErrInvalidArgument error unless addr can
// name a node in sandbox IDs: HOST:PORT with a numeric port from 1 to
// 65535, a host of letters, digits, '.', '-', or an IPv6 literal in
// brackets, and at most MaxNodeAddressLength bytes in all.
func ValidateNodeAddress(addr string) error {
	if len(addr) > MaxNodeAddressLength {
		return fmt.Errorf("node address %q is %d bytes, more than %d (an ID must carry it): use the node's IP address: %w",
			addr, len(addr), MaxNodeAddressLength, errdefs.ErrInvalidArgument)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("node address %q: want HOST:PORT: %w", addr, errdefs.ErrInvalidArgument)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 || port != strconv.FormatUint(p, 10) {
		return fmt.Errorf("node address %q: port %q is not a number from 1 to 65535: %w", addr, port, errdefs.ErrInvalidArgument)
	}
	if strings.Contains(host, ":") {
		if ip := net.ParseIP(host); ip == nil || !strings.HasPrefix(addr, "[") {
			return fmt.Errorf("node address %q: bad IPv6 address: %w", addr, errdefs.ErrInvalidArgument)
		}
		return nil
	}
	if !hostPattern.MatchString(host) {
		return fmt.Errorf("node address %q: host %q is not a host name or IP address: %w", addr, host, errdefs.ErrInvalidArgument)
	}
	return nil
}

// hostPattern matches host names and IPv4 addresses: dot-separated labels
// of letters, digits and '-', not starting or ending with '-'.
var hostPattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)
