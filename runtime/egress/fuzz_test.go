package egress

import (
	"errors"
	"reflect"
	"testing"

	"github.com/sandboxd/sandboxd/runtime/errdefs"
)

// FuzzParseRule guarantees, for any input, that ParseRule never panics;
// that it either returns a rule or an InvalidArgument *EntryError; and
// that the canonical form is a fixed point: parsing r.String() gives r
// back, with the same String, and r lies within a list holding only r.
// testdata/fuzz/FuzzParseRule holds seeds of every entry form.
func FuzzParseRule(f *testing.F) {
	for _, s := range []string{"example.com", "*.example.com:443,8443", "*", "10.0.0.0/8", "[fd00::/8]:443", "127.0.0.2/32:443"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRule(s)
		if err != nil {
			var ee *EntryError
			if !errors.As(err, &ee) || !errors.Is(err, errdefs.ErrInvalidArgument) || ee.Problem == "" {
				t.Fatalf("ParseRule(%q) error %T %v, want an InvalidArgument *EntryError", s, err, err)
			}
			return
		}
		canon := r.String()
		again, err := ParseRule(canon)
		if err != nil {
			t.Fatalf("ParseRule(%q) = %q, which does not parse: %v", s, canon, err)
		}
		if !reflect.DeepEqual(again, r) || again.String() != canon {
			t.Fatalf("ParseRule(%q) = %+v (%q), but its canonical form parses to %+v (%q)", s, r, canon, again, again.String())
		}
		if err := (List{r}).Within(List{r}); err != nil {
			t.Fatalf("%q is not within itself: %v", canon, err)
		}
	})
}
