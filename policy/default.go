package policy

import (
	"bytes"
	_ "embed"
	"fmt"
)

// DefaultSource is the Policy.Source of the policy Default returns.
const DefaultSource = "embedded default"

// defaultYAML is default.yaml, compiled into the binary.
//
//go:embed default.yaml
var defaultYAML []byte

// Default returns the built-in policy, parsed from the embedded
// default.yaml: one template "python" with every limit at its default and
// numpy, pandas and matplotlib.pyplot imported while warming, and a pool of
// up to 8 sandboxes keeping 2 idle. Each call returns a fresh copy that the
// caller may modify. It panics if the embedded file is invalid, which a
// test rules out.
func Default() *Policy {
	p, err := Parse(defaultYAML, DefaultSource)
	if err != nil {
		panic(fmt.Sprintf("policy: embedded default.yaml is invalid: %v", err))
	}
	return p
}

// DefaultYAML returns the text of the embedded default policy, a commented
// starting point for operators writing their own.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }
