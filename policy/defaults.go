package policy

import "time"

// Defaults used where a policy file leaves a field out. default.yaml spells
// out the same values, and a test keeps the two in agreement. The reference
// host these are sized for has 2 cores and 24 GiB of memory.
const (
	// DefaultMaxSandboxes caps the sandboxes on a host: 16 sandboxes at the
	// default 1Gi memory limit commit at most 16 GiB, which leaves a 24 GiB
	// host room for the daemon, gVisor's per-sandbox overhead and the page
	// cache. Memory limits are ceilings, not reservations, so typical use is
	// far lower.
	DefaultMaxSandboxes = 16

	// DefaultSocket is the API socket: /run is root-owned, in memory and
	// cleared at boot, the usual place for a daemon's socket. The daemon's
	// --socket flag overrides it.
	DefaultSocket = "/run/sandboxd/sandboxd.sock"

	// DefaultNetwork is NetworkNone: sandboxed code is untrusted, so a
	// template reaches the network only when it says where to.
	DefaultNetwork = NetworkNone

	// DefaultCPU is one core: plenty for single-threaded Python, and it
	// keeps one busy sandbox from starving its neighbours.
	DefaultCPU = 1.0

	// DefaultMemory is 1Gi: pandas plus a DataFrame of a few hundred MB
	// fits, and 16 sandboxes at this limit fit on a 24 GiB host.
	DefaultMemory int64 = 1 << 30

	// DefaultProcesses is 256 processes: enough for multiprocessing pools
	// and shell pipelines, few enough to stop a fork bomb early.
	DefaultProcesses = 256

	// DefaultDisk is a 512Mi writable layer: room for scratch files, plots
	// and moderate uploads. The runtime currently keeps this layer in
	// memory, so it is kept well below the memory limit: 16 full sandboxes
	// hold at most 8 GiB.
	DefaultDisk int64 = 512 << 20

	// DefaultOpenFiles is 1024, the usual Linux soft limit that programs
	// are written for.
	DefaultOpenFiles = 1024

	// DefaultFileSize is 1Gi, a generous per-file cap; with the default
	// 512Mi disk the writable layer fills first, so this only starts to
	// bind when an operator raises disk.
	DefaultFileSize int64 = 1 << 30

	// DefaultOutput caps one Exec's stdout+stderr at 16Mi: long printouts
	// and tracebacks fit, and a runaway print loop cannot flood the daemon
	// or the client.
	DefaultOutput int64 = 16 << 20

	// DefaultImages returns up to 8 figures per Exec, as the issue that
	// added figures asks: more than a cell usually draws, few enough that
	// a plotting loop does not flood a model's context.
	DefaultImages = 8

	// DefaultImageBytes is 8Mi of PNG per Exec: eight ordinary figures
	// (20-200 KiB each) fit many times over, a dpi=600 poster mostly does.
	DefaultImageBytes int64 = 8 << 20

	// MaxImages caps limits.images.count: the agent renders at most this
	// many figures per Exec whatever the template says.
	MaxImages = 64

	// MaxImageBytes caps limits.images.bytes: an Exec's result travels in
	// one gRPC message, which the daemon and its clients bound (24 MiB).
	MaxImageBytes int64 = 16 << 20

	// DefaultUploadFile is 1Gi: a large CSV or Parquet file can be
	// uploaded (it must still fit in the writable layer).
	DefaultUploadFile int64 = 1 << 30

	// DefaultUploadTotal is 4Gi over a sandbox's life: several large
	// uploads, replaced as the work goes on, without letting one client
	// stream data into a sandbox forever.
	DefaultUploadTotal int64 = 4 << 30

	// DefaultDownloadFile is 1Gi, the default file_size: any file the code
	// may write can be read back.
	DefaultDownloadFile int64 = 1 << 30

	// DefaultDownloadTotal is 16Gi over a sandbox's life: results can be
	// read many times over, but one sandbox cannot stream data out through
	// the daemon without end.
	DefaultDownloadTotal int64 = 16 << 30

	// DefaultEgressBytes caps a sandbox's egress at 1Gi over its life, both
	// directions: a pip install of the scientific stack (~300 MiB) or a
	// few datasets fit, while a sandbox cannot serve as a bulk transfer
	// proxy or flood a network for long.
	DefaultEgressBytes int64 = 1 << 30

	// DefaultEgressConnections allows 64 egress connections open at once:
	// pip and HTTP clients open a dozen or two in parallel, and the cap
	// keeps one sandbox from using up the daemon's sockets.
	DefaultEgressConnections = 64

	// DefaultExecTimeout is 60s: most snippets finish in seconds, and a
	// minute catches an accidental infinite loop without waiting long.
	DefaultExecTimeout = 60 * time.Second

	// DefaultMaxExecTimeout is 10m: long enough to train a small model or
	// crunch a big file when a client asks for it explicitly.
	DefaultMaxExecTimeout = 10 * time.Minute

	// DefaultLifetime is 30 days, as long as the hosted code-execution
	// tools keep a session resumable: an idle sandbox is paused to disk and
	// holds no memory, so a conversation can come back to its state days
	// later, and a leaked sandbox kept busy is still reclaimed in the end.
	DefaultLifetime = 30 * 24 * time.Hour

	// DefaultIdleTimeout is 24h (or the lifetime, if that is shorter): a
	// paused sandbox costs only disk, so a user may come back the next
	// day, but one its client forgot does not stay for the whole lifetime.
	DefaultIdleTimeout = 24 * time.Hour

	// DefaultPauseAfter is 5m: long enough that a user reading output and
	// typing the next cell never waits for a resume, short enough that an
	// abandoned session gives its ~100 MiB back soon.
	DefaultPauseAfter = 5 * time.Minute

	// DefaultMaxPausedBytes is 16Gi of paused images: an idle default
	// sandbox checkpoints to ~100 MiB, so well over a hundred paused
	// sessions fit, while the state directory cannot fill the disk.
	DefaultMaxPausedBytes int64 = 16 << 30

	// DefaultShutdownTimeout is 60s: pausing a sandbox takes about a
	// second and runs in parallel, so a full host pauses well within it,
	// and a stuck checkpoint cannot hold up a restart for long.
	DefaultShutdownTimeout = 60 * time.Second

	// DefaultPoolIdle keeps 2 warm sandboxes ready: two requests arriving
	// together both start at once while the pool refills.
	DefaultPoolIdle = 2

	// DefaultPoolMaxTotal caps a pooled template at 8 sandboxes, half the
	// default host cap, so one template cannot take the whole host.
	DefaultPoolMaxTotal = 8

	// DefaultPoolMaxBooting boots one sandbox at a time while refilling:
	// booting and warming imports is CPU-heavy, and on a 2-core host
	// parallel boots would slow the sandboxes already serving users.
	DefaultPoolMaxBooting = 1
)

// Bounds that validation enforces.
const (
	// MaxCPU is the largest limits.cpu accepted, in cores.
	MaxCPU = 64.0
	// MinCPU is the smallest limits.cpu accepted: the kernel's smallest CFS
	// quota (1 ms per 100 ms period); a lower value would fail every boot.
	MinCPU = 0.01
	// MinMemory is the smallest limits.memory accepted: below it, gVisor's
	// own footprint and a Python interpreter leave too little for user
	// code.
	MinMemory int64 = 128 << 20
	// MinDisk is the smallest limits.disk accepted.
	MinDisk int64 = 16 << 20
	// MinProcesses is the smallest limits.processes accepted.
	MinProcesses = 8
	// MaxProcesses is the largest limits.processes accepted.
	MaxProcesses = 65536
	// MinPythonAddressSpace is the smallest non-zero
	// limits.python_address_space accepted: a bare interpreter maps about
	// 30 MiB, and the cap must leave room for real work.
	MinPythonAddressSpace int64 = 64 << 20
	// MinPausedBytes is the smallest host.max_paused_bytes accepted: any
	// image is larger, so less could never keep a paused sandbox.
	MinPausedBytes int64 = 1 << 20
	// MinOpenFiles is the smallest limits.open_files accepted.
	MinOpenFiles = 64
	// MaxOpenFiles is the largest limits.open_files accepted.
	MaxOpenFiles = 1048576
	// MaxEgressConnections is the largest limits.egress_connections
	// accepted: each open connection holds a host socket, a stream to the
	// agent and two goroutines in the daemon, and 1024 for each of
	// host.max_sandboxes sandboxes stays well within the daemon's file
	// descriptor limit.
	MaxEgressConnections = 1024
)

// DefaultSnapshot: templates are restored from a snapshot of a warmed
// sandbox unless they opt out; a restore is ~10x faster than a boot.
const DefaultSnapshot = true

// newTemplate returns a template called name with every field at its
// default.
func newTemplate(name string) *Template {
	return &Template{
		Name:    name,
		Rootfs:  DefaultRootfs,
		Network: DefaultNetwork,
		Limits: Limits{
			CPU:           DefaultCPU,
			Memory:        DefaultMemory,
			Disk:          DefaultDisk,
			FileSize:      DefaultFileSize,
			Output:        DefaultOutput,
			UploadFile:    DefaultUploadFile,
			UploadTotal:   DefaultUploadTotal,
			DownloadFile:  DefaultDownloadFile,
			DownloadTotal: DefaultDownloadTotal,
			Processes:     DefaultProcesses,
			OpenFiles:     DefaultOpenFiles,
			Images:        ImageLimits{Count: DefaultImages, Bytes: DefaultImageBytes},

			EgressBytes:       DefaultEgressBytes,
			EgressConnections: DefaultEgressConnections,
		},
		ExecTimeout: ExecTimeout{Default: DefaultExecTimeout, Max: DefaultMaxExecTimeout},
		Lifetime:    DefaultLifetime,
		IdleTimeout: DefaultIdleTimeout,
		PauseAfter:  DefaultPauseAfter,
		Env:         map[string]string{},
		WarmImports: []string{},
		Snapshot:    DefaultSnapshot,
	}
}

// newPool returns a pool for template with every other field at its
// default.
func newPool(template string) Pool {
	return Pool{
		Template:   template,
		Idle:       DefaultPoolIdle,
		MaxTotal:   DefaultPoolMaxTotal,
		MaxBooting: DefaultPoolMaxBooting,
	}
}

// Audit log defaults.
const (
	// DefaultAuditLogMaxBytes rotates the audit log at 100Mi: about half a
	// million RPCs a file (a line is ~200 bytes), small enough to ship.
	DefaultAuditLogMaxBytes int64 = 100 << 20
	// DefaultAuditLogKeep keeps 5 rotated files: with the default size,
	// 600Mi of history at most.
	DefaultAuditLogKeep = 5
	// MinAuditLogMaxBytes is the smallest rotation size: below it the log
	// would rotate every few seconds under load.
	MinAuditLogMaxBytes int64 = 1 << 20
)
