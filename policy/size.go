package policy

import (
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Size is a number of bytes written in a policy file as a Kubernetes-style
// quantity: a plain integer number of bytes (1048576), or a number with one
// of the binary suffixes Ki, Mi, Gi, Ti (powers of 1024) or the decimal
// suffixes k, M, G, T (powers of 1000). The number may have a fraction as
// long as the result is a whole number of bytes (1.5Gi, 0.5k). Negative
// sizes, unknown suffixes and sizes past the int64 range are errors.
type Size int64

// sizeUnits lists the suffixes ParseSize accepts.
var sizeUnits = map[string]int64{
	"":   1,
	"Ki": 1 << 10,
	"Mi": 1 << 20,
	"Gi": 1 << 30,
	"Ti": 1 << 40,
	"k":  1e3,
	"M":  1e6,
	"G":  1e9,
	"T":  1e12,
}

// sizeNumber is the number part of a size: digits, optionally a fraction.
var sizeNumber = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)

// sizeSuffixHelp says which suffixes are allowed.
const sizeSuffixHelp = "write a whole number of bytes or a number followed by one of Ki, Mi, Gi, Ti (powers of 1024) or k, M, G, T (powers of 1000), e.g. 512Mi"

// ParseSize parses a quantity such as "512Mi", "1G", "1.5Gi" or "1048576"
// into bytes. Its errors say what to write instead.
func ParseSize(s string) (Size, error) {
	if s == "" {
		return 0, errors.New("empty size: " + sizeSuffixHelp)
	}
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("size %q is negative: sizes must be 0 or more", s)
	}
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(s)
	}
	num, suffix := s[:i], s[i:]
	if !sizeNumber.MatchString(num) {
		return 0, fmt.Errorf("invalid size %q: %s", s, sizeSuffixHelp)
	}
	mult, ok := sizeUnits[suffix]
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown suffix %q; %s", s, suffix, suggestSuffix(num, suffix))
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("invalid size %q: %s", s, sizeSuffixHelp)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("size %q is not a whole number of bytes: use a smaller unit or drop the fraction", s)
	}
	if !r.Num().IsInt64() {
		return 0, fmt.Errorf("size %q is too large: the most is %d bytes (about 8388607Ti)", s, int64(^uint64(0)>>1))
	}
	return Size(r.Num().Int64()), nil
}

// suggestSuffix tells a user who wrote num+suffix with an unknown suffix
// what they probably meant.
func suggestSuffix(num, suffix string) string {
	if trimmed := strings.TrimSpace(suffix); trimmed != suffix {
		if _, ok := sizeUnits[trimmed]; ok {
			return fmt.Sprintf("remove the space: write %s%s", num, trimmed)
		}
	}
	trimmed := strings.TrimSpace(suffix)
	if trimmed == "" {
		return sizeSuffixHelp
	}
	switch strings.ToUpper(trimmed[:1]) {
	case "K":
		return fmt.Sprintf("write %sKi (kibibytes, 2^10 bytes) or %sk (kilobytes, 10^3 bytes)", num, num)
	case "M":
		return fmt.Sprintf("write %sMi (mebibytes, 2^20 bytes) or %sM (megabytes, 10^6 bytes)", num, num)
	case "G":
		return fmt.Sprintf("write %sGi (gibibytes, 2^30 bytes) or %sG (gigabytes, 10^9 bytes)", num, num)
	case "T":
		return fmt.Sprintf("write %sTi (tebibytes, 2^40 bytes) or %sT (terabytes, 10^12 bytes)", num, num)
	case "B":
		return fmt.Sprintf("a plain number is already bytes: write %s", num)
	case "P", "E":
		return "the largest suffixes are Ti (2^40) and T (10^12)"
	}
	return sizeSuffixHelp
}

// String formats s the way a policy file would: the shortest exact form
// among plain bytes and each suffix, binary suffixes winning ties (1Gi,
// 2G, 1536Mi, 1500). ParseSize(s.String()) == s for every s >= 0.
func (s Size) String() string {
	best := strconv.FormatInt(int64(s), 10)
	if s <= 0 {
		return best
	}
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}, {"T", 1e12}, {"G", 1e9}, {"M", 1e6}, {"k", 1e3}} {
		if int64(s)%u.mult == 0 {
			if f := strconv.FormatInt(int64(s)/u.mult, 10) + u.suffix; len(f) < len(best) {
				best = f
			}
		}
	}
	return best
}

// UnmarshalYAML reads a size from a YAML integer (bytes) or string
// ("512Mi"), so both `memory: 536870912` and `memory: 512Mi` work.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() == nullTag {
		return fmt.Errorf("must be a size such as 512Mi or a number of bytes, got %s", describe(n))
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalYAML writes s as its String form.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }
