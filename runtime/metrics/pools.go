package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandboxd/sandboxd/runtime/pool"
)

var (
	poolSandboxes = prometheus.NewDesc("sandboxd_pool_sandboxes", "Sandboxes of a pool's template, by state (idle, in_use, booting).", []string{"template", "state"}, nil)
	poolTarget    = prometheus.NewDesc("sandboxd_pool_target_idle", "Idle sandboxes the pool keeps ready.", []string{"template"}, nil)
	poolMax       = prometheus.NewDesc("sandboxd_pool_max_total", "Most sandboxes of the pool's template at once.", []string{"template"}, nil)
)

// poolCollector reads the pools at scrape time, so the gauges are never
// stale and the pools need no metrics code.
type poolCollector struct{ pools func() []pool.Status }

func (poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- poolSandboxes
	ch <- poolTarget
	ch <- poolMax
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.pools() {
		ch <- prometheus.MustNewConstMetric(poolSandboxes, prometheus.GaugeValue, float64(p.Idle), p.Template, "idle")
		ch <- prometheus.MustNewConstMetric(poolSandboxes, prometheus.GaugeValue, float64(p.InUse), p.Template, "in_use")
		ch <- prometheus.MustNewConstMetric(poolSandboxes, prometheus.GaugeValue, float64(p.Booting), p.Template, "booting")
		ch <- prometheus.MustNewConstMetric(poolTarget, prometheus.GaugeValue, float64(p.TargetIdle), p.Template)
		ch <- prometheus.MustNewConstMetric(poolMax, prometheus.GaugeValue, float64(p.MaxTotal), p.Template)
	}
}
