package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRPCCountsByTenantMethodAndCode guarantees the series of
// sandboxd_rpc_total and sandboxd_audit_dropped_total.
func TestRPCCountsByTenantMethodAndCode(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := NewRPC(reg)
	r.Called("team-a", "/sandbox.v1.SandboxService/Exec", "OK")
	r.Called("team-a", "/sandbox.v1.SandboxService/Exec", "OK")
	r.Called("", "/sandbox.v1.SandboxService/Exec", "Unauthenticated")
	r.AuditDropped()
	want := `
# HELP sandboxd_audit_dropped_total Audit log lines lost: the write queue was full (the disk could not keep up) or the write failed.
# TYPE sandboxd_audit_dropped_total counter
sandboxd_audit_dropped_total 1
# HELP sandboxd_rpc_total Calls of the sandbox API, by tenant, full gRPC method and gRPC status code (refused calls included).
# TYPE sandboxd_rpc_total counter
sandboxd_rpc_total{code="OK",method="/sandbox.v1.SandboxService/Exec",tenant="team-a"} 2
sandboxd_rpc_total{code="Unauthenticated",method="/sandbox.v1.SandboxService/Exec",tenant=""} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sandboxd_rpc_total", "sandboxd_audit_dropped_total"); err != nil {
		t.Fatal(err)
	}
}
