// Package tenant carries the tenant a call acts for in its context: the
// daemon's authentication sets it once per RPC from the caller's
// credentials, and the manager, the audit log and the metrics read it.
// Every sandbox belongs to the tenant that created it.
package tenant

import "context"

// Local is the tenant of callers on the daemon's unix socket when the
// policy names no other, and of every caller when the policy has no
// tenants at all.
const Local = "local"

type key struct{}

// NewContext returns ctx carrying the tenant name.
func NewContext(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, key{}, name)
}

// FromContext returns the tenant ctx carries, or "" when it carries none
// (a call that was not authenticated, e.g. health or reflection).
func FromContext(ctx context.Context) string {
	name, _ := ctx.Value(key{}).(string)
	return name
}
