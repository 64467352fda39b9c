// Package metrics exports sandboxd's measurements to Prometheus: pool
// sizes, CreateSandbox latency by hit or miss, boot and restore durations,
// snapshot builds and sizes, sandbox creations, destructions and
// failures, and egress connections and bytes.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandboxd/sandboxd/runtime/pool"
)

// latencyBuckets span a warm hit (~1 ms) to a slow cold boot with imports
// (~10 s), in seconds.
var latencyBuckets = []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30}

// Metrics implements the manager's Metrics with Prometheus collectors.
type Metrics struct {
	acquire   *prometheus.HistogramVec
	acquireKO prometheus.Counter
	boot      *prometheus.HistogramVec
	bootKO    *prometheus.CounterVec
	created   *prometheus.CounterVec
	destroyed *prometheus.CounterVec
	restore   *prometheus.HistogramVec
	restoreKO *prometheus.CounterVec
	build     *prometheus.HistogramVec
	imageSize *prometheus.GaugeVec
	pause     *prometheus.HistogramVec
	resume    *prometheus.HistogramVec
	paused    prometheus.Gauge
	egress    *prometheus.CounterVec
	egressIO  *prometheus.CounterVec
}

// New registers the collectors on reg. pools is called at each scrape for
// the pool gauges.
func New(reg prometheus.Registerer, pools func() []pool.Status) *Metrics {
	m := &Metrics{
		acquire: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sandboxd_acquire_seconds", Help: "CreateSandbox latency until the sandbox is ready, by result (hit: from a pool; miss: restored or booted for the request).",
			Buckets: latencyBuckets,
		}, []string{"result"}),
		acquireKO: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sandboxd_acquire_failures_total", Help: "CreateSandbox calls that got no sandbox (limits, boot failures).",
		}),
		boot: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sandboxd_boot_seconds", Help: "Cold boot duration (runsc create/start, agent, Python worker, warm imports), by template.",
			Buckets: latencyBuckets,
		}, []string{"template"}),
		bootKO: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandboxd_boot_failures_total", Help: "Failed sandbox boots, by template.",
		}, []string{"template"}),
		created: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandboxd_sandboxes_created_total", Help: "Sandboxes handed to clients, by template.",
		}, []string{"template"}),
		destroyed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandboxd_sandboxes_destroyed_total", Help: "Client sandboxes that ended (destroyed, expired or died), by template.",
		}, []string{"template"}),
		restore: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sandboxd_restore_seconds", Help: "Duration of a restore from a template's snapshot (runsc restore, agent, reseed and readiness probe), by template.",
			Buckets: latencyBuckets,
		}, []string{"template"}),
		restoreKO: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandboxd_restore_failures_total", Help: "Failed restores from a template's snapshot (each followed by a full boot), by template.",
		}, []string{"template"}),
		build: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sandboxd_snapshot_build_seconds", Help: "Duration of a template snapshot build (boot, warm imports, checkpoint), by template.",
			Buckets: latencyBuckets,
		}, []string{"template"}),
		imageSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sandboxd_snapshot_bytes", Help: "Size on disk of the template's ready snapshot image (0: none), by template.",
		}, []string{"template"}),
		pause: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sandboxd_pause_seconds", Help: "Duration of a pause (quiesce, checkpoint, seal), by template.",
			Buckets: latencyBuckets,
		}, []string{"template"}),
		resume: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sandboxd_resume_seconds", Help: "Duration of a resume of a paused sandbox (image check, restore, agent), by template.",
			Buckets: latencyBuckets,
		}, []string{"template"}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sandboxd_paused_bytes", Help: "Disk space taken by the images of paused sandboxes (policy host.max_paused_bytes caps it).",
		}),
		egress: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandboxd_egress_connections_total", Help: "Egress connections of sandboxes, by template and result (allowed: relayed; refused: by the allowlist, the address checks, the caps, or a destination that could not be resolved or dialed).",
		}, []string{"template", "result"}),
		egressIO: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandboxd_egress_bytes_total", Help: "Bytes relayed by closed egress connections, by template and direction (up: from the sandbox; down: to it).",
		}, []string{"template", "direction"}),
	}
	reg.MustRegister(m.acquire, m.acquireKO, m.boot, m.bootKO, m.created, m.destroyed,
		m.restore, m.restoreKO, m.build, m.imageSize, m.pause, m.resume, m.paused, m.egress, m.egressIO, poolCollector{pools})
	return m
}

// Acquired records a CreateSandbox that got a sandbox.
func (m *Metrics) Acquired(cold bool, d time.Duration) {
	result := "hit"
	if cold {
		result = "miss"
	}
	m.acquire.WithLabelValues(result).Observe(d.Seconds())
}

// Paused records a pause.
func (m *Metrics) Paused(template string, d time.Duration) {
	m.pause.WithLabelValues(template).Observe(d.Seconds())
}

// Resumed records a resume.
func (m *Metrics) Resumed(template string, d time.Duration) {
	m.resume.WithLabelValues(template).Observe(d.Seconds())
}

// PausedImages records the paused images' total size.
func (m *Metrics) PausedImages(bytes int64) { m.paused.Set(float64(bytes)) }

// EgressDecided records an egress connection allowed or refused.
func (m *Metrics) EgressDecided(template string, allowed bool) {
	result := "refused"
	if allowed {
		result = "allowed"
	}
	m.egress.WithLabelValues(template, result).Inc()
}

// EgressRelayed records the bytes of a closed egress connection.
func (m *Metrics) EgressRelayed(template string, up, down int64) {
	m.egressIO.WithLabelValues(template, "up").Add(float64(up))
	m.egressIO.WithLabelValues(template, "down").Add(float64(down))
}

// AcquireFailed records a CreateSandbox that got none.
func (m *Metrics) AcquireFailed() { m.acquireKO.Inc() }

// Booted records a successful boot.
func (m *Metrics) Booted(template string, d time.Duration) {
	m.boot.WithLabelValues(template).Observe(d.Seconds())
}

// BootFailed records a failed boot.
func (m *Metrics) BootFailed(template string) { m.bootKO.WithLabelValues(template).Inc() }

// Created records a sandbox handed to a client.
func (m *Metrics) Created(template string) { m.created.WithLabelValues(template).Inc() }

// Destroyed records a client sandbox that ended.
func (m *Metrics) Destroyed(template string) { m.destroyed.WithLabelValues(template).Inc() }

// Restored records a restore from a snapshot.
func (m *Metrics) Restored(template string, d time.Duration) {
	m.restore.WithLabelValues(template).Observe(d.Seconds())
}

// RestoreFailed records a failed restore.
func (m *Metrics) RestoreFailed(template string) { m.restoreKO.WithLabelValues(template).Inc() }

// SnapshotBuilt records a snapshot build.
func (m *Metrics) SnapshotBuilt(template string, d time.Duration) {
	m.build.WithLabelValues(template).Observe(d.Seconds())
}

// SnapshotBytes records the size of a template's ready image.
func (m *Metrics) SnapshotBytes(template string, bytes int64) {
	m.imageSize.WithLabelValues(template).Set(float64(bytes))
}
