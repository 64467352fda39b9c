package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sandboxd/sandboxd/runtime/pool"
)

// TestMetricsExport guarantees the exported series: acquire latency by hit
// and miss, boot histograms, counters, and pool gauges read at scrape time.
func TestMetricsExport(t *testing.T) {
	reg := prometheus.NewRegistry()
	idle := 2
	m := New(reg, func() []pool.Status {
		return []pool.Status{{Template: "python", Idle: idle, InUse: 3, Booting: 1, TargetIdle: 2, MaxTotal: 8}}
	})
	m.Acquired(false, time.Millisecond)
	m.Acquired(true, time.Second)
	m.Booted("python", time.Second)
	m.BootFailed("python")
	m.Created("python")
	m.Destroyed("python")
	m.AcquireFailed()
	idle = 1
	if n := testutil.CollectAndCount(reg, "sandboxd_acquire_seconds"); n != 2 {
		t.Fatalf("acquire series %d, want hit and miss", n)
	}
	want := `
# HELP sandboxd_pool_sandboxes Sandboxes of a pool's template, by state (idle, in_use, booting).
# TYPE sandboxd_pool_sandboxes gauge
sandboxd_pool_sandboxes{state="booting",template="python"} 1
sandboxd_pool_sandboxes{state="idle",template="python"} 1
sandboxd_pool_sandboxes{state="in_use",template="python"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sandboxd_pool_sandboxes"); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{"sandboxd_boot_failures_total": 1, "sandboxd_acquire_failures_total": 1} {
		mfs, _ := reg.Gather()
		found := false
		for _, mf := range mfs {
			if mf.GetName() == name {
				found = true
				if got := mf.GetMetric()[0].GetCounter().GetValue(); got != want {
					t.Errorf("%s = %v, want %v", name, got, want)
				}
			}
		}
		if !found {
			t.Errorf("%s not exported", name)
		}
	}
}

// TestEgressMetrics guarantees the egress series: connections by template
// and result, and the bytes of closed connections by direction.
func TestEgressMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, func() []pool.Status { return nil })
	m.EgressDecided("web", true)
	m.EgressDecided("web", false)
	m.EgressDecided("web", false)
	m.EgressRelayed("web", 100, 5000)
	m.EgressRelayed("web", 20, 0)
	want := `
# HELP sandboxd_egress_bytes_total Bytes relayed by closed egress connections, by template and direction (up: from the sandbox; down: to it).
# TYPE sandboxd_egress_bytes_total counter
sandboxd_egress_bytes_total{direction="down",template="web"} 5000
sandboxd_egress_bytes_total{direction="up",template="web"} 120
# HELP sandboxd_egress_connections_total Egress connections of sandboxes, by template and result (allowed: relayed; refused: by the allowlist, the address checks, the caps, or a destination that could not be resolved or dialed).
# TYPE sandboxd_egress_connections_total counter
sandboxd_egress_connections_total{result="allowed",template="web"} 1
sandboxd_egress_connections_total{result="refused",template="web"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sandboxd_egress_connections_total", "sandboxd_egress_bytes_total"); err != nil {
		t.Fatal(err)
	}
}
