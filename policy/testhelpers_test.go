package policy

import (
	"errors"
	"strings"
	"testing"
)

// parseErrors parses src as "test.yaml" and returns the problems reported,
// failing the test if the policy was accepted or the error is not a
// *ValidationError.
func parseErrors(t *testing.T, src string) []FieldError {
	t.Helper()
	p, err := Parse([]byte(src), "test.yaml")
	if err == nil {
		t.Fatalf("Parse accepted the policy, want an error; got %+v", p)
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Parse error is %T (%v), want *ValidationError", err, err)
	}
	if len(ve.Errors) == 0 {
		t.Fatal("ValidationError has no errors")
	}
	return ve.Errors
}

// mustParse parses src and fails the test if it is not valid.
func mustParse(t *testing.T, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src), "test.yaml")
	if err != nil {
		t.Fatalf("Parse rejected a valid policy:\n%v\npolicy:\n%s", err, src)
	}
	return p
}

// findError returns the problem at path whose message contains frag.
func findError(errs []FieldError, path, frag string) (FieldError, bool) {
	for _, e := range errs {
		if e.Path == path && strings.Contains(e.Msg, frag) {
			return e, true
		}
	}
	return FieldError{}, false
}

// dump formats problems one per line for failure messages.
func dump(errs []FieldError) string {
	return (&ValidationError{Errors: errs}).Error()
}

// contains is strings.Contains, short for use in conditions.
func contains(s, sub string) bool { return strings.Contains(s, sub) }
