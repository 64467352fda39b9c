package tenant

import (
	"context"
	"testing"
)

// TestContextCarriesTheTenant guarantees the round trip, and that a
// context without one says "" (never Local by accident).
func TestContextCarriesTheTenant(t *testing.T) {
	if got := FromContext(context.Background()); got != "" {
		t.Fatalf("empty context: %q", got)
	}
	if got := FromContext(NewContext(context.Background(), "team-a")); got != "team-a" {
		t.Fatalf("got %q", got)
	}
}
