package policy

import "testing"

// TestSyntaxErrorLines guarantees that YAML syntax errors are reported on
// the line where the problem is, correcting the YAML library's 0-based
// line numbers for parser errors and its missing line for errors on the
// first line.
func TestSyntaxErrorLines(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		line      int
		frag      string
	}{
		{"unclosed flow list", "templates:\n  python:\n    limits: [1\n", 3, "did not find expected ',' or ']'"},
		{"unclosed flow mapping", "templates:\n  python: {a: 1\n", 2, "did not find expected ',' or '}'"},
		{"bad indentation", "templates:\n  python:\n    lifetime: 1h\n   idle_timeout: 5m\n", 2, "check the lines below it"},
		{"mapping value on first line", "templates: python: {}\n", 1, "mapping values are not allowed"},
		{"tab", "templates:\n\tpython: {}\n", 2, "indented with spaces"},
		{"unterminated quote", "templates:\n  python:\n    rootfs: \"/x\n", 3, "found unexpected end of stream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := parseErrors(t, tc.src)
			if len(errs) != 1 {
				t.Fatalf("got %d problems, want 1:\n%s", len(errs), dump(errs))
			}
			if e := errs[0]; e.Line != tc.line || !contains(e.Msg, tc.frag) || !contains(e.Msg, "invalid YAML") {
				t.Errorf("got %q, want line %d and a message containing %q", e.Error(), tc.line, tc.frag)
			}
		})
	}
}

// TestUnknownAlias guarantees that a reference to an undefined YAML anchor
// is reported as invalid YAML rather than crashing or being ignored.
func TestUnknownAlias(t *testing.T) {
	errs := parseErrors(t, "templates:\n  python: *nope\n")
	if !contains(errs[0].Msg, "nope") {
		t.Errorf("got %s, want a message naming the anchor", dump(errs))
	}
}
