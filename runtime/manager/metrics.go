package manager

import (
	"time"

	"github.com/sandboxd/sandboxd/runtime/snapshot"
)

// Metrics receives the manager's measurements (see runtime/metrics for the
// Prometheus implementation).
type Metrics interface {
	// Acquired: a CreateSandbox got a sandbox, from a pool (cold false) or
	// booted for it, after d.
	Acquired(cold bool, d time.Duration)
	// AcquireFailed: a CreateSandbox got no sandbox.
	AcquireFailed()
	// Booted: a sandbox of template booted in d (pool refill or cold).
	Booted(template string, d time.Duration)
	// BootFailed: a boot of template failed.
	BootFailed(template string)
	// Restored: a sandbox of template was restored from its snapshot in d.
	Restored(template string, d time.Duration)
	// RestoreFailed: a restore of template failed (a boot followed).
	RestoreFailed(template string)
	// The snapshot store's measurements.
	snapshot.Metrics
	// Created and Destroyed: a sandbox was handed to a client, and ended.
	Created(template string)
	Destroyed(template string)
	// Paused and Resumed: a sandbox of template was paused to disk, or
	// resumed from its image, in d.
	Paused(template string, d time.Duration)
	Resumed(template string, d time.Duration)
	// PausedImages: the paused sandboxes' images now take bytes on disk.
	PausedImages(bytes int64)
	// EgressDecided: an egress connection of a sandbox of template was
	// allowed (and relayed) or refused.
	EgressDecided(template string, allowed bool)
	// EgressRelayed: an allowed egress connection of a sandbox of template
	// ended, having carried up bytes from the sandbox and down bytes to it.
	EgressRelayed(template string, up, down int64)
}

// nopMetrics records nothing: the Metrics of a Manager configured without.
type nopMetrics struct{}

func (nopMetrics) Acquired(bool, time.Duration)        {}
func (nopMetrics) AcquireFailed()                      {}
func (nopMetrics) Booted(string, time.Duration)        {}
func (nopMetrics) BootFailed(string)                   {}
func (nopMetrics) Restored(string, time.Duration)      {}
func (nopMetrics) RestoreFailed(string)                {}
func (nopMetrics) SnapshotBuilt(string, time.Duration) {}
func (nopMetrics) SnapshotBytes(string, int64)         {}
func (nopMetrics) Created(string)                      {}
func (nopMetrics) Destroyed(string)                    {}
func (nopMetrics) Paused(string, time.Duration)        {}
func (nopMetrics) Resumed(string, time.Duration)       {}
func (nopMetrics) PausedImages(int64)                  {}
func (nopMetrics) EgressDecided(string, bool)          {}
func (nopMetrics) EgressRelayed(string, int64, int64)  {}
