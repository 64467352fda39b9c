package policy

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrUnknownTemplate is wrapped by the error Policy.Template returns for a
// name the policy does not define.
var ErrUnknownTemplate = errors.New("unknown template")

// Template returns the template called name, or the default template when
// name is empty. For a name the policy does not define it returns an error
// that wraps ErrUnknownTemplate and lists the names that are defined.
func (p *Policy) Template(name string) (*Template, error) {
	if name == "" {
		name = p.DefaultTemplate
	}
	if t, ok := p.Templates[name]; ok {
		return t, nil
	}
	return nil, fmt.Errorf("%w %q: known templates are %s", ErrUnknownTemplate, name, strings.Join(p.TemplateNames(), ", "))
}

// TemplateNames returns the names of the policy's templates, sorted.
func (p *Policy) TemplateNames() []string {
	names := make([]string, 0, len(p.Templates))
	for name := range p.Templates {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
