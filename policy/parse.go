package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads the policy file at path and parses it with Parse, using path
// as the source in error messages. An unreadable file gives the os error;
// an invalid one gives a *ValidationError.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading policy: %w", err)
	}
	return Parse(data, path)
}

// Parse reads a policy from YAML data, applies the defaults and validates
// it strictly. source names the data in error messages and becomes
// Policy.Source. Exactly one YAML document is allowed, and unknown fields
// are errors. If anything is wrong, Parse returns a *ValidationError
// listing every problem it found.
func Parse(data []byte, source string) (*Policy, error) {
	p := newProblems(source)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.at(pos{}, "", "the file is empty: a policy needs at least one template, e.g. `templates: {python: {}}`")
		} else {
			p.syntax(err, data)
		}
		return nil, p.err()
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		p.syntax(err, data)
	default:
		p.at(posOfNode(&extra), "", "a second YAML document starts here, but a policy file holds exactly one: remove this `---` and what follows, or merge it into the first document")
	}
	pol := decodePolicy(&doc, p)
	validate(pol, p)
	if err := p.err(); err != nil {
		return nil, err
	}
	pol.Source = source
	return pol, nil
}

// yamlLine extracts the line number from a YAML syntax error.
var yamlLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// yamlParserProblems are the syntax errors that go.yaml.in/yaml/v3 reports
// from its parser rather than its scanner. For these it prints a 0-based
// line number, where scanner errors have a 1-based one.
var yamlParserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// yamlScannerPrefixes start the syntax errors of the YAML scanner.
var yamlScannerPrefixes = []string{"found ", "did not find ", "could not find ", "mapping ", "block sequence "}

// syntax records a YAML syntax error, with its line when the parser gave
// one (correcting go.yaml.in/yaml/v3's off-by-one for parser errors).
func (p *problems) syntax(err error, data []byte) {
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		p.at(pos{}, "", "invalid YAML: %v", err)
		return
	}
	msg := m[2]
	line := 0
	switch {
	case m[1] != "":
		line, _ = strconv.Atoi(m[1])
		if yamlParserProblems[msg] {
			line++
		}
	case isYAMLSyntaxProblem(msg):
		// The library leaves the line out when its 0-based mark is 0.
		line = 1
	}
	hint := ""
	if msg == "did not find expected key" {
		hint = " (the mapping starting here has a line indented wrongly: check the lines below it)"
	}
	if lines := bytes.Split(data, []byte("\n")); line >= 1 && line <= len(lines) && bytes.ContainsRune(lines[line-1], '\t') {
		hint = " (this line contains a tab: YAML must be indented with spaces)"
	}
	p.at(pos{line: line}, "", "invalid YAML: %s%s", msg, hint)
}

// isYAMLSyntaxProblem reports whether msg is a scanner or parser error of
// the YAML library, as opposed to, say, an unknown alias.
func isYAMLSyntaxProblem(msg string) bool {
	if yamlParserProblems[msg] {
		return true
	}
	for _, prefix := range yamlScannerPrefixes {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	return false
}
