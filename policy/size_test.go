package policy

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestParseSize guarantees the size syntax: plain bytes, binary suffixes
// Ki..Ti, decimal suffixes k..T, fractions that come out to whole bytes,
// and helpful errors for negative sizes, fractional bytes, unknown
// suffixes (with the likely intended spelling) and overflow.
func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
		err  string // fragment of the error; "" means valid
	}{
		{"0", 0, ""},
		{"1", 1, ""},
		{"1048576", 1 << 20, ""},
		{"1Ki", 1 << 10, ""},
		{"512Mi", 512 << 20, ""},
		{"1Gi", 1 << 30, ""},
		{"2Ti", 2 << 40, ""},
		{"1k", 1000, ""},
		{"5M", 5e6, ""},
		{"3G", 3e9, ""},
		{"1T", 1e12, ""},
		{"1.5Gi", 3 << 29, ""},
		{"0.5k", 500, ""},
		{"0.25Ki", 256, ""},
		{"8388607Ti", 8388607 << 40, ""},
		{"9223372036854775807", 1<<63 - 1, ""},

		{"", 0, "empty size"},
		{"-1", 0, "negative"},
		{"-512Mi", 0, "negative"},
		{"1.5", 0, "not a whole number of bytes"},
		{"0.0001k", 0, "not a whole number of bytes"},
		{"512MB", 0, `unknown suffix "MB"; write 512Mi (mebibytes, 2^20 bytes) or 512M (megabytes, 10^6 bytes)`},
		{"512mb", 0, "write 512Mi"},
		{"1GB", 0, "write 1Gi (gibibytes, 2^30 bytes) or 1G"},
		{"1GiB", 0, "write 1Gi"},
		{"4K", 0, "write 4Ki (kibibytes, 2^10 bytes) or 4k"},
		{"2TB", 0, "write 2Ti"},
		{"100B", 0, "a plain number is already bytes: write 100"},
		{"1Pi", 0, "the largest suffixes are Ti"},
		{"512 Mi", 0, "remove the space: write 512Mi"},
		{"1e9", 0, "unknown suffix"},
		{"Gi", 0, "invalid size"},
		{"1.Gi", 0, "invalid size"},
		{"0x10", 0, "unknown suffix"},
		{"9223372036854775808", 0, "too large"},
		{"8388608Ti", 0, "too large"},
		{"99999999999999999999999T", 0, "too large"},
	} {
		got, err := ParseSize(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("ParseSize(%q): %v", tc.in, err)
		case tc.err == "" && got != tc.want:
			t.Errorf("ParseSize(%q) = %d, want %d", tc.in, got, tc.want)
		case tc.err != "" && err == nil:
			t.Errorf("ParseSize(%q) = %d, want an error containing %q", tc.in, got, tc.err)
		case tc.err != "" && !strings.Contains(err.Error(), tc.err):
			t.Errorf("ParseSize(%q) error %q, want it to contain %q", tc.in, err, tc.err)
		}
	}
}

// TestSizeString guarantees that String picks the most readable exact
// suffix and that ParseSize reads back what String writes.
func TestSizeString(t *testing.T) {
	for _, tc := range []struct {
		in   Size
		want string
	}{
		{0, "0"}, {1, "1"}, {1023, "1023"}, {1024, "1Ki"}, {128 << 20, "128Mi"}, {1 << 30, "1Gi"},
		{3 << 29, "1536Mi"}, {4 << 40, "4Ti"}, {1000, "1k"}, {5e6, "5M"}, {1e9, "1G"}, {1500, "1500"}, {-5, "-5"},
	} {
		if got := tc.in.String(); got != tc.want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(tc.in), got, tc.want)
		}
		if tc.in < 0 {
			continue
		}
		if back, err := ParseSize(tc.in.String()); err != nil || back != tc.in {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in.String(), back, err, int64(tc.in))
		}
	}
}

// TestSizeAndDurationYAML guarantees that Size and Duration work as YAML
// field types on their own: a YAML integer or a quantity string for Size,
// a Go duration string for Duration, and that they marshal back to the
// same text.
func TestSizeAndDurationYAML(t *testing.T) {
	var v struct {
		A, B, C Size
		D       Duration
	}
	if err := yaml.Unmarshal([]byte("a: 1048576\nb: 512Mi\nc: \"2G\"\nd: 1h30m\n"), &v); err != nil {
		t.Fatal(err)
	}
	if v.A != 1<<20 || v.B != 512<<20 || v.C != 2e9 || time.Duration(v.D) != 90*time.Minute {
		t.Errorf("got %+v", v)
	}
	out, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if want := "a: 1Mi\nb: 512Mi\nc: 2G\nd: 1h30m\n"; string(out) != want {
		t.Errorf("Marshal = %q, want %q", out, want)
	}
	for _, bad := range []string{"a: 512MB\n", "a: [1]\n", "a: -1\n", "d: 10 minutes\n", "d: 0s\n", "d: {x: 1}\n"} {
		if err := yaml.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("Unmarshal(%q) accepted it", bad)
		}
	}
}

// TestParseDuration guarantees the duration syntax: Go durations greater
// than zero, with errors that show the syntax and, for a bare number, the
// units the user probably meant.
func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"60s", time.Minute, ""},
		{"10m", 10 * time.Minute, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"250ms", 250 * time.Millisecond, ""},
		{"10 minutes", 0, "use Go duration syntax"},
		{"10min", 0, "use Go duration syntax"},
		{"60", 0, "has no unit: write 60s for seconds, 60m for minutes or 60h for hours"},
		{"0", 0, "must be greater than 0"},
		{"0s", 0, "must be greater than 0"},
		{"-1m", 0, "must be greater than 0, got -1m"},
		{"", 0, "invalid duration"},
	} {
		got, err := ParseDuration(tc.in)
		switch {
		case tc.err == "" && (err != nil || time.Duration(got) != tc.want):
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseDuration(%q) error %v, want one containing %q", tc.in, err, tc.err)
		}
	}
	for d, want := range map[time.Duration]string{time.Hour: "1h", 10 * time.Minute: "10m", 90 * time.Minute: "1h30m", time.Minute: "1m", 90 * time.Second: "1m30s", 2*time.Hour + time.Second: "2h0m1s", 250 * time.Millisecond: "250ms"} {
		if got := Duration(d).String(); got != want {
			t.Errorf("Duration(%v).String() = %q, want %q", d, got, want)
		}
	}
}
