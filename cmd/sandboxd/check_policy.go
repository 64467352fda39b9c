package main

import (
	"fmt"
	"io"

	"github.com/sandboxd/sandboxd/policy"
)

// checkPolicy validates policy files: exit 0 if all are valid, 1 with every
// problem listed if not, 2 on usage errors.
func checkPolicy(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: sandboxd check-policy FILE...")
		return 2
	}
	code := 0
	for _, path := range args {
		p, err := policy.Load(path)
		if err != nil {
			fmt.Fprintln(stderr, err)
			code = 1
			continue
		}
		fmt.Fprintf(stdout, "%s: valid (%d templates, %d pools)\n", path, len(p.Templates), len(p.Pools))
	}
	return code
}
