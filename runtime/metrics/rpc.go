package metrics

import "github.com/prometheus/client_golang/prometheus"

// RPC counts the calls of the sandbox API and the audit log's losses.
type RPC struct {
	calls        *prometheus.CounterVec
	auditDropped prometheus.Counter
}

// NewRPC registers the API's collectors on reg.
func NewRPC(reg prometheus.Registerer) *RPC {
	r := &RPC{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandboxd_rpc_total", Help: "Calls of the sandbox API, by tenant, full gRPC method and gRPC status code (refused calls included).",
		}, []string{"tenant", "method", "code"}),
		auditDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sandboxd_audit_dropped_total", Help: "Audit log lines lost: the write queue was full (the disk could not keep up) or the write failed.",
		}),
	}
	reg.MustRegister(r.calls, r.auditDropped)
	return r
}

// Called records one call of method for tenant that ended with the gRPC
// code (its String form, e.g. "OK", "NotFound").
func (r *RPC) Called(tenant, method, code string) {
	r.calls.WithLabelValues(tenant, method, code).Inc()
}

// AuditDropped records an audit line that was not written.
func (r *RPC) AuditDropped() { r.auditDropped.Inc() }
