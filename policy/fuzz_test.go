package policy

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse guarantees that Parse never panics, and that it returns either
// a policy or a *ValidationError with at least one problem, whatever the
// input. The seeds are the default, the examples and every rule case.
func FuzzParse(f *testing.F) {
	f.Add(defaultYAML)
	files, _ := filepath.Glob("examples/*.yaml")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	for _, tc := range ruleCases {
		f.Add([]byte(tc.src))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, "fuzz.yaml")
		if err == nil {
			if p == nil || len(p.Templates) == 0 {
				t.Fatalf("valid policy without templates: %+v", p)
			}
			if _, err := p.Template(""); err != nil {
				t.Fatalf("valid policy without a usable default template: %v", err)
			}
			return
		}
		var ve *ValidationError
		if !errors.As(err, &ve) || len(ve.Errors) == 0 {
			t.Fatalf("error %T %v, want a non-empty *ValidationError", err, err)
		}
	})
}
