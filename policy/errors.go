package policy

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// FieldError is one problem found in a policy file.
type FieldError struct {
	// Source is the file path (or the source given to Parse).
	Source string
	// Line is the 1-based line of the offending field, or 0 if unknown.
	Line int
	// Path is the dotted path of the field, such as
	// templates.python.limits.memory or pools[0].idle; empty for problems
	// with the file as a whole.
	Path string
	// Msg says what is wrong and what to change.
	Msg string
}

// Error formats e as "FILE:LINE: PATH: MSG", leaving out the parts that are
// unknown.
func (e FieldError) Error() string {
	var b strings.Builder
	switch {
	case e.Source != "" && e.Line > 0:
		b.WriteString(e.Source + ":" + strconv.Itoa(e.Line) + ": ")
	case e.Source != "":
		b.WriteString(e.Source + ": ")
	case e.Line > 0:
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ValidationError is returned by Parse and Load for a policy that is not
// valid. It lists every problem found, in file order.
type ValidationError struct {
	// Errors holds one entry per problem; never empty.
	Errors []FieldError
}

// Error prints one problem per line, each as "FILE:LINE: PATH: MSG".
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		lines[i] = fe.Error()
	}
	return strings.Join(lines, "\n")
}

// problems collects the FieldErrors found while decoding and validating one
// file, and remembers the line of every field seen so that later checks can
// point at it.
type problems struct {
	source string
	errs   []FieldError
	// cols holds the column of each entry of errs, to order problems on
	// the same line.
	cols []int
	// lines maps a field path to the position of its key (or list item).
	lines map[string]pos
	// bad holds the paths whose value could not be decoded; checks that
	// depend on them are skipped, since their value is only the default.
	bad map[string]bool
}

// pos is a position in a file; 0 means unknown. file is empty for the
// policy file itself and names the tenants_file for positions in it.
type pos struct {
	line, col int
	file      string
}

func newProblems(source string) *problems {
	return &problems{source: source, lines: map[string]pos{}, bad: map[string]bool{}}
}

// at records a problem at an explicit position.
func (p *problems) at(at pos, path, format string, args ...any) {
	source := p.source
	if at.file != "" {
		source = at.file
	}
	p.errs = append(p.errs, FieldError{Source: source, Line: at.line, Path: path, Msg: fmt.Sprintf(format, args...)})
	p.cols = append(p.cols, at.col)
}

// add records a problem with the field at path, on the line of that field
// or, if the file left it out, of its nearest parent.
func (p *problems) add(path, format string, args ...any) {
	p.at(p.posOf(path), path, format, args...)
}

// fail records that the value at path could not be decoded. The problem
// is placed on the line of the field's key when known (a block value
// starts on the next line, an alias elsewhere), else at, the value's
// position.
func (p *problems) fail(at pos, path string, err error) {
	p.bad[path] = true
	if key, ok := p.lines[path]; ok {
		at = key
	}
	p.at(at, path, "%s", err.Error())
}

// set reports whether the file gave the field at path a value.
func (p *problems) set(path string) bool {
	_, ok := p.lines[path]
	return ok
}

// ok reports whether all the given fields decoded (or were left out).
func (p *problems) ok(paths ...string) bool {
	for _, path := range paths {
		if p.bad[path] {
			return false
		}
	}
	return true
}

// posOf returns the position of path or of its nearest parent in the
// file.
func (p *problems) posOf(path string) pos {
	for path != "" {
		if at, ok := p.lines[path]; ok {
			return at
		}
		path = parentPath(path)
	}
	return pos{}
}

// parentPath strips the last element of a field path: "a.b[2]" -> "a.b",
// "a.b" -> "a", "a" -> "".
func parentPath(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

// err returns the collected problems as a *ValidationError in file order,
// or nil if there are none.
func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	order := make([]int, len(p.errs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if p.errs[a].Line != p.errs[b].Line {
			return p.errs[a].Line < p.errs[b].Line
		}
		return p.cols[a] < p.cols[b]
	})
	errs := make([]FieldError, len(order))
	for i, k := range order {
		errs[i] = p.errs[k]
	}
	return &ValidationError{Errors: errs}
}
