package policy

import (
	"time"

	"github.com/sandboxd/sandboxd/runtime/egress"
)

// Policy is a loaded and validated policy file. Every field has been given
// its default where the file left it out, so users of a Policy never need to
// know the defaults.
type Policy struct {
	// Host holds the host-wide settings.
	Host Host
	// DefaultTemplate names the template used when a CreateSandbox request
	// names none. It is always a key of Templates.
	DefaultTemplate string
	// Templates maps each template name to its settings; it has at least one
	// entry, and each Template's Name equals its key.
	Templates map[string]*Template
	// Pools lists the warm pools in file order, at most one per template.
	// It is empty when the file declares no pools.
	Pools []Pool
	// Tenants maps each tenant name to how it authenticates and its
	// quotas. Empty: every caller is the tenant "local" with no quota, and
	// the API may only listen on loopback. Never nil.
	Tenants map[string]*Tenant
	// TenantsFile is the file the tenants were read from (top-level
	// tenants_file, made absolute against the policy file's directory), so
	// that they can live apart from the rest, e.g. in a Kubernetes Secret
	// while the policy is a ConfigMap; empty when the tenants, if any, are
	// in the policy file.
	TenantsFile string
	// Source is where the policy came from: the file path given to Load, the
	// source given to Parse, or "embedded default" for Default.
	Source string
}

// Host holds the settings that apply to the whole host rather than to one
// template.
type Host struct {
	// MaxSandboxes caps the sandboxes of all templates on this host, idle
	// pool members included. At least 1.
	MaxSandboxes int
	// Socket is the Unix socket path the daemon serves its API on; the
	// daemon's --socket flag overrides it. Always an absolute path.
	Socket string
	// ListenTCP is an optional loopback TCP address ("127.0.0.1:PORT",
	// "[::1]:PORT" or "localhost:PORT") to serve the API on as well; empty
	// means none.
	ListenTCP string
	// MetricsListen is an optional loopback TCP address for the Prometheus
	// metrics HTTP listener; empty means none.
	MetricsListen string
	// MaxPausedBytes caps the disk space of all paused sandboxes' images;
	// over it the oldest paused sandboxes are destroyed. At least 1Mi.
	MaxPausedBytes int64
	// ShutdownTimeout bounds pausing every live sandbox when the daemon
	// stops; what is not paused by then is destroyed. Greater than 0.
	ShutdownTimeout time.Duration
	// TLS makes the TCP listener serve TLS (and, with ClientCAFile, ask
	// for client certificates). A TCP listener on a non-loopback address
	// needs it, and tenants that authenticate.
	TLS TLS
	// AuditLog is the file that gets one JSON line per RPC; empty: none.
	// An absolute path; the daemon's --audit-log flag overrides it.
	AuditLog string
	// AuditLogMaxBytes is the size at which the audit log is rotated. At
	// least 1Mi.
	AuditLogMaxBytes int64
	// AuditLogKeep is how many rotated audit logs are kept. At least 1.
	AuditLogKeep int
}

// TLS configures the API's TCP listener. CertFile and KeyFile are both set
// or both empty; all paths are absolute. The files are read when the
// daemon starts.
type TLS struct {
	// CertFile and KeyFile are the server's certificate chain and key (PEM).
	CertFile, KeyFile string
	// ClientCAFile, if set, holds the CAs (PEM) that client certificates
	// must chain to: mutual TLS. A client certificate's subject can then
	// name a tenant (Tenant.CertSubjects).
	ClientCAFile string
}

// Tenant is a caller of the API with its own sandboxes and quotas.
type Tenant struct {
	// Name matches the template name pattern.
	Name string
	// TokenHashes are the lowercase hex SHA-256 digests of the bearer
	// tokens that authenticate the tenant (`sandboxd hash-token` prints
	// one); the policy never holds a token itself.
	TokenHashes []string
	// CertSubjects are client-certificate subjects (RFC 2253 strings, as
	// Go's pkix.Name.String writes them, e.g. "CN=orchestrator,O=Example")
	// that authenticate the tenant over mutual TLS.
	CertSubjects []string
	// UnixUIDs and UnixGIDs make callers on the unix socket with one of
	// these peer uids or gids this tenant. For the tenant "local" they are
	// an allow list: when either is set, other unix callers are refused.
	UnixUIDs, UnixGIDs []int
	// MaxSandboxes caps the tenant's sandboxes (running and paused); 0: no
	// quota but the host's.
	MaxSandboxes int
	// Templates lists the templates the tenant may use; empty: all.
	Templates []string
	// Limits lowers the templates' limits for this tenant's sandboxes: a
	// zero field keeps the template's, a higher one has no effect.
	Limits Limits
}

// NetworkMode says what network a sandbox of a template gets.
type NetworkMode string

// The network modes.
const (
	// NetworkNone gives a sandbox no network interface but loopback, and
	// no way out.
	NetworkNone NetworkMode = "none"
	// NetworkAllowlist gives a sandbox no network interface either, but an
	// HTTP proxy on its loopback through which it reaches the destinations
	// in Template.Egress.Allow: the daemon decides, resolves and dials each
	// connection on the host.
	NetworkAllowlist NetworkMode = "allowlist"
)

// DefaultRootfs is the Template.Rootfs value that means "the rootfs built by
// rootfs/build.sh"; the daemon knows where that is. Any other value is an
// absolute host path.
const DefaultRootfs = "default"

// Template is one kind of sandbox a client can ask for.
type Template struct {
	// Name is the template's name, matching ^[a-z0-9][a-z0-9_-]{0,62}$.
	Name string
	// Rootfs is DefaultRootfs or an absolute host path to a root file
	// system. Load does not check that the path exists.
	Rootfs string
	// Network is the sandbox's network mode: NetworkNone or
	// NetworkAllowlist.
	Network NetworkMode
	// Egress says where a sandbox may connect to; its list is empty with
	// NetworkNone and not empty with NetworkAllowlist.
	Egress Egress
	// Limits are the resource limits of each sandbox.
	Limits Limits
	// ExecTimeout bounds how long one Exec may run.
	ExecTimeout ExecTimeout
	// Lifetime is how long after its creation a sandbox is destroyed.
	Lifetime time.Duration
	// IdleTimeout is how long a sandbox may go without an RPC, running or
	// paused, before it is destroyed. Never longer than Lifetime.
	IdleTimeout time.Duration
	// PauseAfter is how long a running sandbox may go without an RPC
	// before it is paused to disk; 0 never pauses it by itself.
	PauseAfter time.Duration
	// Env is extra environment for the sandboxed code. Never nil.
	Env map[string]string
	// WarmImports lists Python modules (dotted names) imported while the
	// sandbox is warmed, before a client gets it. Never nil.
	WarmImports []string
	// Snapshot makes the daemon checkpoint one warmed sandbox of the
	// template and restore pool refills and misses from that image instead
	// of booting them.
	Snapshot bool
}

// Egress is what a template's sandboxes may reach through the daemon.
type Egress struct {
	// Allow lists the destinations, in file order (see package
	// runtime/egress for the entry syntax and the address rules). A
	// CreateSandbox request or UpdateSandboxEgress may narrow it for one
	// sandbox, never widen it. Nil when the file lists none.
	Allow egress.List
}

// Limits are the resource limits of one sandbox. Sizes are in bytes.
type Limits struct {
	// CPU is the number of cores the sandbox may use (cgroup CPU quota);
	// fractions are allowed. Greater than 0, at most 64.
	CPU float64
	// Memory is the cgroup memory limit. At least 128Mi.
	Memory int64
	// Disk is the size of the sandbox's writable layer. At least 16Mi.
	Disk int64
	// FileSize is RLIMIT_FSIZE: the largest file sandboxed code may write.
	FileSize int64
	// Output caps stdout and stderr together for one Exec.
	Output int64
	// UploadFile is the largest single file a client may upload.
	UploadFile int64
	// UploadTotal caps the bytes uploaded into one sandbox over its life.
	// At least UploadFile.
	UploadTotal int64
	// DownloadFile is the largest single file a client may download.
	DownloadFile int64
	// DownloadTotal caps the bytes downloaded from one sandbox over its
	// life. At least DownloadFile.
	DownloadTotal int64
	// Processes is RLIMIT_NPROC for the sandbox user. 8 to 65536.
	Processes int
	// OpenFiles is RLIMIT_NOFILE. 64 to 1048576.
	OpenFiles int
	// PythonAddressSpace is RLIMIT_AS of the Python interpreter: over it an
	// allocation raises MemoryError and the session survives, instead of
	// the whole sandbox going over Memory and being killed. 0: no cap;
	// otherwise at least 64Mi and below Memory.
	PythonAddressSpace int64
	// Images bounds the matplotlib figures one Python Exec returns.
	Images ImageLimits
	// EgressBytes caps the bytes a sandbox sends and receives through its
	// egress proxy, both directions of all connections, over its life.
	// Greater than 0.
	EgressBytes int64
	// EgressConnections caps the egress connections a sandbox has open at
	// once. 1 to MaxEgressConnections.
	EgressConnections int
}

// ImageLimits bounds the figures one Python Exec returns (ExecResult.images).
type ImageLimits struct {
	// Count is the most figures returned. 0 returns none; at most
	// MaxImages.
	Count int
	// Bytes is the most PNG bytes returned in all. At most MaxImageBytes.
	Bytes int64
}

// ExecTimeout bounds how long one Exec may run.
type ExecTimeout struct {
	// Default is the timeout of an Exec that asks for none.
	Default time.Duration
	// Max is the longest timeout an Exec may ask for. At least Default.
	Max time.Duration
}

// Pool keeps warm sandboxes of one template ready.
type Pool struct {
	// Template names the template this pool serves; a key of
	// Policy.Templates.
	Template string
	// Idle is how many idle warm sandboxes to keep ready. At least 0, at
	// most MaxTotal.
	Idle int
	// MaxTotal caps the sandboxes of this template, idle and in use. At
	// least 1, at most Host.MaxSandboxes.
	MaxTotal int
	// MaxBooting is how many sandboxes may boot at once while the pool
	// refills. At least 1.
	MaxBooting int
}
