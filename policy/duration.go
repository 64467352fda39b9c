package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a length of time written in a policy file in Go's
// time.ParseDuration syntax ("90s", "10m", "1h30m"). Every duration in a
// policy must be greater than zero.
type Duration time.Duration

// durationHelp says how to write a duration.
const durationHelp = "use Go duration syntax: a number with a unit ns, us, ms, s, m or h, e.g. 90s, 10m or 1h30m"

// ParseDuration parses a policy duration: Go duration syntax, greater than
// zero. Its errors say what to write instead.
func ParseDuration(s string) (Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			return 0, fmt.Errorf("duration %q has no unit: write %ss for seconds, %sm for minutes or %sh for hours", s, s, s, s)
		}
		return 0, fmt.Errorf("invalid duration %q: %s", s, durationHelp)
	}
	if d <= 0 {
		return 0, fmt.Errorf("duration must be greater than 0, got %s", s)
	}
	return Duration(d), nil
}

// String formats d like time.Duration.String but without zero trailing
// units: "1h", "10m", "1h30m", "90ms".
func (d Duration) String() string { return formatDuration(time.Duration(d)) }

// formatDuration is time.Duration.String without the zero trailing units
// that make "1h0m0s" hard to read.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// UnmarshalYAML reads a duration from a YAML string such as 10m.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() == nullTag {
		return fmt.Errorf("must be a duration such as 90s, 10m or 1h, got %s", describe(n))
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML writes d as its String form.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }
