package policy

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// nullTag is the resolved tag of an empty or ~ YAML value.
const nullTag = "!!null"

// resolve follows YAML aliases (*name) to the node they refer to.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is an empty value (`key:` with nothing after
// it, or ~ / null).
func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == nullTag)
}

// describe names what kind of value n is, for error messages.
func describe(n *yaml.Node) string {
	n = resolve(n)
	switch {
	case n == nil:
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.DocumentNode:
		return "a document"
	case isNull(n):
		return "an empty value"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

// joinPath appends a field name to a path.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// indexPath appends a list index to a path.
func indexPath(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}

// posOfNode returns where n starts in the file.
func posOfNode(n *yaml.Node) pos {
	if n == nil {
		return pos{}
	}
	return pos{line: n.Line, col: n.Column}
}
