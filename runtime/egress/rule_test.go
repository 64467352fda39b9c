package egress

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/runtime/errdefs"
)

// mustList parses entries or fails the test.
func mustList(t testing.TB, entries ...string) List {
	t.Helper()
	l, err := ParseList(entries)
	if err != nil {
		t.Fatalf("ParseList(%q): %v", entries, err)
	}
	return l
}

// TestParseRuleCanonical guarantees every accepted spelling of an entry
// and its canonical form: lowercase names without trailing dot, sorted
// ports, default ports 80 and 443 left out, masked CIDRs, IPv6 CIDRs with
// ports in brackets.
func TestParseRuleCanonical(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"example.com", "example.com"},
		{"Example.COM.", "example.com"},
		{"example.com:443", "example.com:443"},
		{"example.com:8443,443", "example.com:443,8443"},
		{"example.com:443,80", "example.com"},
		{"example.com:0443", "example.com:443"},
		{"localhost", "localhost"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"a-b.c0.example", "a-b.c0.example"},
		{"*.example.com", "*.example.com"},
		{"*.Example.com.:443", "*.example.com:443"},
		{"*", "*"},
		{"*:8080", "*:8080"},
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"127.0.0.2/32:443", "127.0.0.2/32:443"},
		{"0.0.0.0/0:1,65535", "0.0.0.0/0:1,65535"},
		{"fd00::/8", "fd00::/8"},
		{"[fd00::/8]", "fd00::/8"},
		{"[fd00::/8]:443", "[fd00::/8]:443"},
		{"[FD00::/8]:443,80", "fd00::/8"},
		{"[::1/128]:22", "[::1/128]:22"},
	} {
		r, err := ParseRule(tc.in)
		if err != nil {
			t.Errorf("ParseRule(%q): %v", tc.in, err)
			continue
		}
		if got := r.String(); got != tc.want {
			t.Errorf("ParseRule(%q).String() = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestParseRuleRefusesJunk guarantees that malformed entries are refused
// as InvalidArgument *EntryErrors that name the entry and say what is
// wrong, so a typo never turns into a wider or different rule.
func TestParseRuleRefusesJunk(t *testing.T) {
	for _, tc := range []struct{ in, frag string }{
		{"", "is empty"},
		{strings.Repeat("a", 600), "bytes long"},
		{"example.com ", "space"},
		{"exa mple.com", "space"},
		{"example.com\n", "control"},
		{"example.com:", "no ports"},
		{"example.com:0", `port "0"`},
		{"example.com:65536", `port "65536"`},
		{"example.com:-1", `port "-1"`},
		{"example.com:+443", `port "+443"`},
		{"example.com:http", `port "http"`},
		{"example.com:443,", `port ""`},
		{"example.com:443,443", "port 443 twice"},
		{"example.com:" + strings.Repeat("1,", 33) + "2", "more than 32"},
		{"*.*.example.com", "whole first label"},
		{"a*.example.com", "whole first label"},
		{"*example.com", "whole first label"},
		{"*.", "empty host name"},
		{"example..com", "empty label"},
		{".example.com", "empty label"},
		{"-example.com", "starts or ends with '-'"},
		{"example-.com", "starts or ends with '-'"},
		{"ex_ample.com", `"_"`},
		{"bücher.example", "punycode"},
		{strings.Repeat("a", 64) + ".com", "label of 64 bytes"},
		{strings.Repeat("a.", 127) + "com", "longer than a DNS name"},
		{"127.1", `ends in the number "1"`},
		{"2130706433", "ends in the number"},
		{"example.0x7f", "ends in the number"},
		{"10.0.0.1", "write 10.0.0.1/32"},
		{"::1", "write ::1/128"},
		{"10.0.0.1/8", "write 10.0.0.0/8"},
		{"10.0.0.0/33", "not a CIDR"},
		{"10.0.0.0/8/8", "not a CIDR"},
		{"::ffff:10.0.0.0/104", "write 10.0.0.0/8"},
		{"::ffff:0:0/80", "IPv4-mapped"},
		{"fd00::/8:443", "not a CIDR"},
		{"fd00::1:443", "is an address, not a CIDR"},
		{"[fd00::/8", "without ']'"},
		{"[fd00::/8]443", "after ']'"},
		{"[10.0.0.0/8]:443", "only for an IPv6 CIDR"},
		{"[example.com]:443", "only for an IPv6 CIDR"},
		{"a:b:c", "neither a host name nor a CIDR"},
	} {
		_, err := ParseRule(tc.in)
		var ee *EntryError
		if !errors.As(err, &ee) || !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParseRule(%q) = %v, want an InvalidArgument *EntryError", tc.in, err)
			continue
		}
		if !strings.Contains(ee.Problem, tc.frag) || !strings.Contains(err.Error(), fmt.Sprintf("%q", clip(tc.in))) {
			t.Errorf("ParseRule(%q) error %q should quote the entry and contain %q", tc.in, err, tc.frag)
		}
	}
}

// TestParseListBounds guarantees that a list is bounded at MaxRules
// entries and refuses an entry that repeats another in any spelling.
func TestParseListBounds(t *testing.T) {
	entries := make([]string, MaxRules+1)
	for i := range entries {
		entries[i] = fmt.Sprintf("h%d.example.com", i)
	}
	if _, err := ParseList(entries[:MaxRules]); err != nil {
		t.Fatalf("%d entries refused: %v", MaxRules, err)
	}
	if _, err := ParseList(entries); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("%d entries: got %v, want InvalidArgument", len(entries), err)
	}
	_, err := ParseList([]string{"example.com", "EXAMPLE.com.:80,443"})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), `repeats the entry "example.com"`) {
		t.Errorf("duplicate: got %v", err)
	}
	if l, err := ParseList(nil); err != nil || len(l) != 0 {
		t.Errorf("ParseList(nil) = %v, %v; want an empty list", l, err)
	}
	want := []string{"example.com:443", "10.0.0.0/8"}
	if got := mustList(t, "Example.com:443", "10.0.0.0/8:80,443").Strings(); !reflect.DeepEqual(got, want) {
		t.Errorf("Strings() = %q, want %q", got, want)
	}
}

// TestWithin guarantees the subset rule: a sandbox's list may name the
// same or fewer destinations and ports than its template's, never more,
// and the error names the first entry that widens.
func TestWithin(t *testing.T) {
	template := []string{"api.example.com", "*.pypi.org:443", "*:8080", "10.0.0.0/8:5432", "127.0.0.0/8:443", "203.0.113.7/32", "0.0.0.0/0:9000"}
	for _, tc := range []struct {
		name    string
		list    []string
		widens  string // "" when within
		because string
	}{
		{"empty", nil, "", ""},
		{"same list", template, "", ""},
		{"same host fewer ports", []string{"api.example.com:443"}, "", ""},
		{"host under wildcard", []string{"files.pypi.org:443"}, "", ""},
		{"deeper wildcard under wildcard", []string{"*.cdn.pypi.org:443"}, "", ""},
		{"same wildcard", []string{"*.pypi.org:443"}, "", ""},
		{"host under *", []string{"anything.example:8080"}, "", ""},
		{"wildcard under *", []string{"*.example:8080"}, "", ""},
		{"* under *", []string{"*:8080"}, "", ""},
		{"narrower private CIDR", []string{"10.1.0.0/16:5432"}, "", ""},
		{"single private address", []string{"10.0.0.5/32:5432"}, "", ""},
		{"single loopback address", []string{"127.0.0.2/32:443"}, "", ""},
		{"same single public address", []string{"203.0.113.7/32:443"}, "", ""},
		{"public CIDR under catch-all", []string{"198.51.100.0/24:9000"}, "", ""},
		{"ports split over two entries", []string{"x.pypi.org:443,8080"}, "", ""},

		{"host under * on another port", []string{"evil.example.com"}, "evil.example.com", "no port 80"},
		{"extra port", []string{"api.example.com:22"}, "api.example.com:22", "no port 22"},
		{"apex under its wildcard", []string{"pypi.org:443"}, "pypi.org:443", ""},
		{"wildcard wider than host", []string{"*.api.example.com"}, "*.api.example.com", ""},
		{"* under wildcard", []string{"*:443"}, "*:443", ""},
		{"suffix is not a label boundary", []string{"evilpypi.org:443"}, "evilpypi.org:443", ""},
		{"CIDR under *", []string{"10.0.0.0/8:8080"}, "10.0.0.0/8:8080", ""},
		{"wider CIDR", []string{"10.0.0.0/7:5432"}, "10.0.0.0/7:5432", ""},
		{"IPv6 under IPv4", []string{"[::/0]:9000"}, "[::/0]:9000", "no entry of the template's covers ::/0"},
		{"private CIDR under catch-all unlocks private", []string{"10.0.0.0/8:9000"}, "10.0.0.0/8:9000", "no port 9000"},
		{"CGNAT address under catch-all unlocks CGNAT", []string{"100.64.0.1/32:9000"}, "100.64.0.1/32:9000", "it lies in 100.64.0.0/10, which is carrier-grade NAT space"},
		{"loopback under catch-all unlocks loopback", []string{"127.0.0.1/32:9000"}, "127.0.0.1/32:9000", "no port 9000"},
		{"single public address under catch-all may be the daemon's", []string{"198.51.100.1/32:9000"}, "198.51.100.1/32:9000", "the daemon's own"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := mustList(t, tc.list...).Within(mustList(t, template...))
			switch {
			case tc.widens == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.widens == "":
			case !errors.Is(err, errdefs.ErrInvalidArgument):
				t.Fatalf("got %v, want InvalidArgument", err)
			case !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.widens)) || !strings.Contains(err.Error(), tc.because):
				t.Fatalf("error %q should name %q and say %q", err, tc.widens, tc.because)
			}
		})
	}
}

// TestWideningByCatchAllTemplateRefused guarantees that a template CIDR
// that unlocks no refused address (0.0.0.0/0, ::/0) cannot be narrowed
// into one that does: a request could otherwise open the metadata
// service, private networks or loopback the operator never opened.
func TestWideningByCatchAllTemplateRefused(t *testing.T) {
	template := mustList(t, "0.0.0.0/0", "::/0")
	for _, e := range []string{"169.254.169.254/32", "10.0.0.0/8", "127.0.0.0/8", "[::1/128]:443", "fd00::/8", "100.64.0.0/10"} {
		if err := mustList(t, e).Within(template); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s within 0.0.0.0/0, ::/0: got %v, want InvalidArgument", e, err)
		}
	}
}

// TestListJSONRoundTrip guarantees that a list stored as JSON (a
// template in a sandbox's state record) is its canonical entries and
// reads back equal, and that an entry edited into something invalid is
// refused rather than read as a rule that matches nothing or everything.
func TestListJSONRoundTrip(t *testing.T) {
	l := mustList(t, "API.example.com", "*.pypi.org:443", "127.0.0.2/32:443", "[fd00::/8]:443,8443", "*")
	data, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	if want := `["api.example.com","*.pypi.org:443","127.0.0.2/32:443","[fd00::/8]:443,8443","*"]`; string(data) != want {
		t.Fatalf("JSON %s, want %s", data, want)
	}
	var back List
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, l) {
		t.Errorf("read back %v, want %v", back.Strings(), l.Strings())
	}
	if err := json.Unmarshal([]byte(`["127.0.0.2"]`), &back); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a bare address read back: %v, want InvalidArgument", err)
	}
}
