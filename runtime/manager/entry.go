package manager

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/sandboxd/sandboxd/policy"
	"github.com/sandboxd/sandboxd/runtime/sandbox"
	"github.com/sandboxd/sandboxd/runtime/snapshot"
)

// State is a sandbox's place in its life, as the manager sees it.
type State string

const (
	// StateRunning: booted and serving.
	StateRunning State = "running"
	// StateDead: ended on its own or expired; its resources are freed and
	// its record is kept for DeadRetention so clients learn why.
	StateDead State = "dead"
	// StatePaused: checkpointed to disk; no processes or memory. The next
	// call that needs it resumes it.
	StatePaused State = "paused"
)

// StartKind says how a sandbox was made ready for its client.
type StartKind string

const (
	// StartPool: taken warm from the template's pool.
	StartPool StartKind = "pool"
	// StartRestore: restored for the request from the template's snapshot.
	StartRestore StartKind = "restore"
	// StartBoot: booted for the request.
	StartBoot StartKind = "boot"
)

// DeadRetention is how long the record of a dead sandbox is kept: long
// enough for a client to see why its sandbox ended, short enough that dead
// records cannot pile up.
const DeadRetention = 10 * time.Minute

// Info describes a sandbox to callers.
type Info struct {
	ID        string
	Template  string
	State     State
	Reason    string
	CreatedAt time.Time
	ExpiresAt time.Time
	Labels    map[string]string
	// Start says how the sandbox came to be; anything but StartPool is a
	// cold start.
	Start     StartKind
	OOMKilled bool
	// Limits are the limits the sandbox runs with.
	Limits Limits
	// Usage is what the sandbox uses now; set by Get for a running sandbox
	// whose cgroup could be read.
	Usage *Usage
	// PausedAt is when the sandbox was paused; zero unless it is paused.
	PausedAt time.Time
	// EgressAllow is the egress allowlist in force, canonical entries;
	// nil for a sandbox of a template without egress.
	EgressAllow []string
}

// Usage is what a sandbox uses, as its host cgroup counts it.
type Usage struct {
	// CPU is the CPU time used since boot.
	CPU time.Duration
	// Memory is the memory in use now, in bytes.
	Memory int64
}

// entry is the manager's record of one sandbox.
//
// op orders the sandbox's life: calls that use the running sandbox (Exec,
// Upload, Download) hold it shared; pause, resume and the final clean-up
// hold it alone. sb and release change only with op held alone and mu
// held, so a holder of op reads them freely and anyone else under mu.
type entry struct {
	id        string
	tenant    string // the tenant that created it; only it may see or use it
	tmpl      *policy.Template
	labels    map[string]string
	createdAt time.Time // when the client got it (a pooled sandbox booted earlier)
	start     StartKind
	// egress is the sandbox's egress; nil for a template without.
	egress *egressState

	op sync.RWMutex
	sb *sandbox.Sandbox // nil while paused, or dead after a failed resume
	// release gives back the running sandbox's place (pool or host slot);
	// nil while it holds none (paused, or released).
	release func()
	// destroyedOnce counts the sandbox's end in the metrics once.
	destroyedOnce sync.Once

	lastUsed   atomic.Int64 // unix nanoseconds of the last request
	uploaded   atomic.Int64 // bytes uploaded over the sandbox's life
	downloaded atomic.Int64 // bytes downloaded over the sandbox's life
	inflight   atomic.Int32 // requests in progress; a busy sandbox is not idle

	// recordMu orders the writes of the sandbox's state record;
	// recordGone: the record was deleted for good.
	recordMu   sync.Mutex
	recordGone bool

	mu       sync.Mutex
	state    State
	reason   string
	deadAt   time.Time
	gone     bool      // destroyed: removed from the registry
	pausedAt time.Time // set while paused
	// image is the paused sandbox's checkpoint directory ("" while
	// running); sealed its fingerprint, nil until verified (an image
	// adopted after a restart is verified in full at its first resume).
	image      string
	imageBytes int64
	sealed     *snapshot.Sealed
}

// sandbox returns the running sandbox, nil while paused.
func (e *entry) sandbox() *sandbox.Sandbox {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sb
}

func (e *entry) touch() { e.lastUsed.Store(now().UnixNano()) }

func (e *entry) idleSince() time.Time { return time.Unix(0, e.lastUsed.Load()) }

func (e *entry) expiresAt() time.Time { return e.createdAt.Add(e.tmpl.Lifetime) }

func (e *entry) status() (State, string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.state, e.reason
}

// markDead records that the sandbox ended; it returns false if it already
// had.
func (e *entry) markDead(reason string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state == StateDead {
		return false
	}
	e.state, e.reason, e.deadAt = StateDead, reason, now()
	return true
}

func (e *entry) info() Info {
	e.mu.Lock()
	st, reason, sb, pausedAt := e.state, e.reason, e.sb, e.pausedAt
	e.mu.Unlock()
	var allow []string
	if e.egress != nil {
		allow = e.egress.allow().Strings()
	}
	return Info{
		ID: e.id, Template: e.tmpl.Name, State: st, Reason: reason,
		CreatedAt: e.createdAt, ExpiresAt: e.expiresAt(), Labels: e.labels, Start: e.start,
		OOMKilled: st == StateDead && sb != nil && sb.OOMKilled(), Limits: limitsOf(e.tmpl),
		PausedAt: pausedAt, EgressAllow: allow,
	}
}
