package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
	return parse(data, path, os.ReadFile)
}

// maxTenantsFile bounds the tenants_file: thousands of tenants with a few
// token hashes each fit in a megabyte; more is a mistake, not a policy.
const maxTenantsFile = 4 << 20

// Parse reads a policy from YAML data, applies the defaults and validates
// it strictly. source names the data in error messages and becomes
// Policy.Source. Exactly one YAML document is allowed, and unknown fields
// are errors. If anything is wrong, Parse returns a *ValidationError
// listing every problem it found.
//
// A policy that names a tenants_file must be read with Load, which reads
// that file too; Parse reports it as a problem.
func Parse(data []byte, source string) (*Policy, error) {
	return parse(data, source, nil)
}

// parse is Parse with read, which reads the tenants_file (nil: none may be
// named).
func parse(data []byte, source string, read func(string) ([]byte, error)) (*Policy, error) {
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
	if pol.TenantsFile != "" {
		readTenants(pol, source, read, p)
	}
	validate(pol, p)
	if err := p.err(); err != nil {
		return nil, err
	}
	pol.Source = source
	return pol, nil
}

// readTenants reads the tenants of pol from its tenants_file, a YAML file
// with the single field tenants, as the policy file would have it.
func readTenants(pol *Policy, source string, read func(string) ([]byte, error), p *problems) {
	switch {
	case read == nil:
		p.add("tenants_file", "a policy with tenants_file must be loaded from a file (sandboxd --policy FILE), which the tenants file is read beside")
		return
	case p.set("tenants"):
		p.add("tenants_file", "the policy has tenants of its own: give them either here or in tenants_file, not both")
		return
	}
	path := pol.TenantsFile
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(source), path)
	}
	pol.TenantsFile = path
	data, err := read(path)
	switch {
	case err != nil:
		p.add("tenants_file", "reading the tenants file: %v", err)
		return
	case len(data) > maxTenantsFile:
		p.add("tenants_file", "the tenants file %s is %d bytes, more than %d", path, len(data), maxTenantsFile)
		return
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		p.syntaxIn(path, err, data)
		return
	}
	d := &decoder{p: p, file: path}
	root := doc.Content
	if len(root) == 0 || resolve(root[0]).Kind != yaml.MappingNode {
		p.at(pos{line: 1, file: path}, "", "a tenants file is a mapping with the single field tenants, like the policy's")
		return
	}
	d.mapping(resolve(root[0]), "", []field{
		{"tenants", func(v *yaml.Node, path string) { d.tenants(v, path, pol.Tenants) }},
	})
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
	p.syntaxIn("", err, data)
}

// syntaxIn is syntax for a YAML error in file ("": the policy file).
func (p *problems) syntaxIn(file string, err error, data []byte) {
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		p.at(pos{file: file}, "", "invalid YAML: %v", err)
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
	p.at(pos{line: line, file: file}, "", "invalid YAML: %s%s", msg, hint)
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
