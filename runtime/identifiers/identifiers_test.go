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

// TestNodeIDRoundTrip guarantees that a node ID is a valid sandbox ID that
// names its node, for the longest addresses allowed, and that IDs without
// a node name none.
func TestNodeIDRoundTrip(t *testing.T) {
	for _, node := range []string{"10.0.0.1:7443", "255.255.255.255:65535", "[fd00::1]:7443", "node-1.local:7443", "127.0.0.1:1"} {
		id := NewNodeID(node)
		if err := ValidateID(id); err != nil {
			t.Errorf("NewNodeID(%q) = %q: %v", node, id, err)
		}
		if got, ok := NodeOf(id); !ok || got != node {
			t.Errorf("NodeOf(NewNodeID(%q)) = %q, %v", node, got, ok)
		}
		if NewNodeID(node) == id {
			t.Errorf("NewNodeID(%q) repeated an ID", node)
		}
	}
	if id := NewNodeID(""); strings.Count(id, "-") != 1 {
		t.Errorf("NewNodeID(\"\") = %q, want a plain ID", id)
	}
	if node, ok := NodeOf(NewID()); ok {
		t.Errorf("NodeOf(NewID()) = %q, want no node", node)
	}
}

// TestNodeOfRefusesForgedAddresses guarantees that an ID whose address
// part does not decode to a valid node address names no node, so a forged
// ID cannot make a client dial an arbitrary string.
func TestNodeOfRefusesForgedAddresses(t *testing.T) {
	rnd := strings.Repeat("a", randomChars)
	for _, id := range []string{
		"sb-" + idEncoding.EncodeToString([]byte("evil/path:80")) + "-" + rnd,
		"sb-" + idEncoding.EncodeToString([]byte("host:0")) + "-" + rnd,
		"sb-" + idEncoding.EncodeToString([]byte("host")) + "-" + rnd,
		"sb-" + idEncoding.EncodeToString([]byte("a:1")) + "-" + rnd[1:],
		"sb-" + idEncoding.EncodeToString([]byte("a:1")) + "-" + rnd + "-x",
		"sb-!!-" + rnd,
		"xx-" + idEncoding.EncodeToString([]byte("a:1")) + "-" + rnd,
	} {
		if node, ok := NodeOf(id); ok {
			t.Errorf("NodeOf(%q) = %q, want no node", id, node)
		}
	}
}

// TestValidateNodeAddress checks the addresses that may name a node.
func TestValidateNodeAddress(t *testing.T) {
	for addr, ok := range map[string]bool{
		"10.0.0.1:7443": true, "[::1]:7443": true, "node-1:80": true, "a.b.c:65535": true,
		"": false, "host": false, "host:0": false, "host:65536": false, "host:07": false, "::1:80": false,
		"-host:80": false, "ho_st:80": false, "host:http": false, "[zz::]:80": false,
		"255.255.255.255:65535": true, "a-very-long-hostname:7443": false,
	} {
		if err := ValidateNodeAddress(addr); (err == nil) != ok {
			t.Errorf("ValidateNodeAddress(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
}
