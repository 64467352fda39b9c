package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/runtime/egress"
)

// TestDefaultsApplied guarantees that a policy naming only a template gets
// every documented default: host settings, the template's rootfs, network,
// limits, timeouts, empty env and warm_imports, no pools, and that template
// as default_template.
func TestDefaultsApplied(t *testing.T) {
	for _, src := range []string{
		"templates:\n  python: {}\n",
		"templates:\n  python:\n",
		"host:\ntemplates:\n  python:\n    limits:\n    exec_timeout:\n    env:\n    warm_imports:\npools:\n",
	} {
		p := mustParse(t, src)
		want := &Policy{
			Host:            Host{MaxSandboxes: 16, Socket: "/run/sandboxd/sandboxd.sock", MaxPausedBytes: 16 << 30, ShutdownTimeout: time.Minute, AuditLogMaxBytes: 100 << 20, AuditLogKeep: 5},
			DefaultTemplate: "python",
			Templates: map[string]*Template{"python": {
				Name:    "python",
				Rootfs:  "default",
				Network: "none",
				Limits: Limits{
					CPU: 1, Memory: 1 << 30, Disk: 512 << 20, FileSize: 1 << 30, Output: 16 << 20,
					UploadFile: 1 << 30, UploadTotal: 4 << 30, Processes: 256, OpenFiles: 1024,
					DownloadFile: 1 << 30, DownloadTotal: 16 << 30, Images: ImageLimits{Count: 8, Bytes: 8 << 20},
					EgressBytes: 1 << 30, EgressConnections: 64,
				},
				ExecTimeout: ExecTimeout{Default: 60 * time.Second, Max: 10 * time.Minute},
				Lifetime:    30 * 24 * time.Hour,
				IdleTimeout: 24 * time.Hour,
				PauseAfter:  5 * time.Minute,
				Env:         map[string]string{},
				WarmImports: []string{},
				Snapshot:    true,
			}},
			Tenants: map[string]*Tenant{},
			Source:  "test.yaml",
		}
		if len(p.Pools) != 0 {
			t.Errorf("Pools = %+v, want none", p.Pools)
		}
		p.Pools = nil
		if !reflect.DeepEqual(p, want) {
			t.Errorf("policy %q:\n got %+v / %+v\nwant %+v / %+v", src, p, p.Templates["python"], want, want.Templates["python"])
		}
	}
}

// TestPoolDefaults guarantees that a pool naming only its template gets
// the documented idle, max_total and max_booting.
func TestPoolDefaults(t *testing.T) {
	p := mustParse(t, py+"pools:\n  - template: python\n")
	want := []Pool{{Template: "python", Idle: 2, MaxTotal: 8, MaxBooting: 1}}
	if !reflect.DeepEqual(p.Pools, want) {
		t.Errorf("Pools = %+v, want %+v", p.Pools, want)
	}
}

// TestExplicitValues guarantees that every field set in a file reaches the
// Policy, in each accepted spelling: sizes as YAML integers or quantity
// strings, cpu as a number, a string or millicores, env values that YAML
// would read as numbers or booleans as their text, and YAML anchors and
// aliases.
func TestExplicitValues(t *testing.T) {
	src := `host:
  max_sandboxes: 32
  socket: /tmp/s.sock
  listen_tcp: 127.0.0.1:7070
  metrics_listen: "[::1]:9090"
  max_paused_bytes: 2Gi
  shutdown_timeout: 2m
default_template: small
templates:
  big:
    rootfs: /srv/rootfs
    network: none
    limits: &biglimits
      cpu: 4
      memory: 8Gi
      processes: 1024
      disk: 10G
      open_files: 65536
      file_size: 2147483648
      output: "64Mi"
      upload_file: 1.5Gi
      upload_total: 16Gi
      download_file: 2Gi
      download_total: 32Gi
      python_address_space: 6Gi
      images: {count: 3, bytes: 1Mi}
      egress_bytes: 2Gi
      egress_connections: 8
    exec_timeout:
      default: 5m
      max: 1h
    lifetime: 8h
    idle_timeout: 1h
    pause_after: 30s
    env:
      PYTHONUNBUFFERED: 1
      FLAG: true
      EMPTY: ""
      _under: x
    warm_imports:
      - numpy
      - matplotlib.pyplot
  small:
    limits:
      cpu: 500m
  half:
    limits:
      cpu: "0.5"
  copy:
    limits: *biglimits
pools:
  - template: small
    idle: 0
    max_total: 1
    max_booting: 1
  - {template: big, idle: 4, max_total: 32, max_booting: 2}
`
	p := mustParse(t, src)
	if want := (Host{MaxSandboxes: 32, Socket: "/tmp/s.sock", ListenTCP: "127.0.0.1:7070", MetricsListen: "[::1]:9090", MaxPausedBytes: 2 << 30, ShutdownTimeout: 2 * time.Minute, AuditLogMaxBytes: 100 << 20, AuditLogKeep: 5}); p.Host != want {
		t.Errorf("Host = %+v, want %+v", p.Host, want)
	}
	if p.DefaultTemplate != "small" {
		t.Errorf("DefaultTemplate = %q", p.DefaultTemplate)
	}
	big := p.Templates["big"]
	wantLimits := Limits{CPU: 4, Memory: 8 << 30, Processes: 1024, Disk: 10e9, OpenFiles: 65536, FileSize: 2 << 30, Output: 64 << 20, UploadFile: 3 << 29, UploadTotal: 16 << 30,
		DownloadFile: 2 << 30, DownloadTotal: 32 << 30, PythonAddressSpace: 6 << 30, Images: ImageLimits{Count: 3, Bytes: 1 << 20},
		EgressBytes: 2 << 30, EgressConnections: 8}
	if big.Limits != wantLimits {
		t.Errorf("big limits = %+v, want %+v", big.Limits, wantLimits)
	}
	if p.Templates["copy"].Limits != wantLimits {
		t.Errorf("alias limits = %+v, want %+v", p.Templates["copy"].Limits, wantLimits)
	}
	if big.Rootfs != "/srv/rootfs" || big.Network != NetworkNone || big.ExecTimeout != (ExecTimeout{5 * time.Minute, time.Hour}) || big.Lifetime != 8*time.Hour || big.IdleTimeout != time.Hour || big.PauseAfter != 30*time.Second {
		t.Errorf("big = %+v", big)
	}
	if want := map[string]string{"PYTHONUNBUFFERED": "1", "FLAG": "true", "EMPTY": "", "_under": "x"}; !reflect.DeepEqual(big.Env, want) {
		t.Errorf("env = %v, want %v", big.Env, want)
	}
	if want := []string{"numpy", "matplotlib.pyplot"}; !reflect.DeepEqual(big.WarmImports, want) {
		t.Errorf("warm_imports = %v, want %v", big.WarmImports, want)
	}
	if p.Templates["small"].Limits.CPU != 0.5 || p.Templates["half"].Limits.CPU != 0.5 {
		t.Errorf("cpu 500m = %v, cpu \"0.5\" = %v, want 0.5", p.Templates["small"].Limits.CPU, p.Templates["half"].Limits.CPU)
	}
	for name, tmpl := range p.Templates {
		if tmpl.Name != name {
			t.Errorf("template %q has Name %q", name, tmpl.Name)
		}
	}
	wantPools := []Pool{{"small", 0, 1, 1}, {"big", 4, 32, 2}}
	if !reflect.DeepEqual(p.Pools, wantPools) {
		t.Errorf("Pools = %+v, want %+v", p.Pools, wantPools)
	}
}

// TestAcceptedEdgeValues guarantees that values at the edges of each
// allowed range, and the loopback addresses the daemon accepts, are valid.
func TestAcceptedEdgeValues(t *testing.T) {
	for _, body := range []string{
		"    limits: {cpu: 64, memory: 128Mi, disk: 16Mi, processes: 8, open_files: 64, file_size: 1, output: 1, upload_file: 1, upload_total: 1}\n",
		"    limits: {cpu: 0.01, processes: 65536, open_files: 1048576}\n",
		"    limits: {upload_file: 4Gi, upload_total: 4Gi}\n",
		"    exec_timeout: {default: 10m, max: 10m}\n    lifetime: 15m\n",
		"    pause_after: 0\n",
		"    pause_after: 0s\n    idle_timeout: 1s\n",
		"host: {max_paused_bytes: 1Mi}\n",
		"    rootfs: /\n",
	} {
		mustParse(t, py+body)
	}
	for _, addr := range []string{"127.0.0.1:7070", "127.0.0.2:1", "[::1]:65535", "localhost:7070"} {
		mustParse(t, "host:\n  listen_tcp: \""+addr+"\"\n  metrics_listen: \"127.0.0.1:9999\"\n"+py)
	}
	mustParse(t, "host:\n  max_sandboxes: 2\n"+py+"pools:\n  - {template: python, idle: 2, max_total: 2}\n")
}

// TestTemplateLookup guarantees Policy.Template: "" gives the default
// template, a known name gives that template, and an unknown name gives an
// error that wraps ErrUnknownTemplate and lists the known names.
func TestTemplateLookup(t *testing.T) {
	p := mustParse(t, "default_template: b\ntemplates:\n  a: {}\n  b: {}\n")
	if tm, err := p.Template(""); err != nil || tm.Name != "b" {
		t.Errorf(`Template("") = %v, %v; want b`, tm, err)
	}
	if tm, err := p.Template("a"); err != nil || tm.Name != "a" {
		t.Errorf(`Template("a") = %v, %v; want a`, tm, err)
	}
	_, err := p.Template("c")
	if !errors.Is(err, ErrUnknownTemplate) {
		t.Fatalf(`Template("c") error %v, want ErrUnknownTemplate`, err)
	}
	if !strings.Contains(err.Error(), `"c"`) || !strings.Contains(err.Error(), "a, b") {
		t.Errorf(`Template("c") error %q should name "c" and list a, b`, err)
	}
}

// TestLoad guarantees that Load reads a file, records its path as Source
// and in every problem, and reports an unreadable file as an os error
// rather than a ValidationError.
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(py), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Load(good)
	if err != nil || p.Source != good {
		t.Fatalf("Load(good) = %+v, %v", p, err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(py+"    limits: {memory: 64Mi}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Load(bad) error %T %v, want *ValidationError", err, err)
	}
	if want := bad + ":3: templates.python.limits.memory: must be at least 128Mi, got 64Mi"; err.Error() != want {
		t.Errorf("Load(bad) error\n %q\nwant\n %q", err, want)
	}

	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) || errors.As(err, &ve) {
		t.Errorf("Load(missing) error %T %v, want a wrapped os.ErrNotExist", err, err)
	}
}

// TestSnapshotField guarantees that templates snapshot by default, that
// snapshot: false turns it off, and that anything but a boolean is refused
// with its line.
func TestSnapshotField(t *testing.T) {
	if p := mustParse(t, "default_template: a\ntemplates:\n  a: {}\n  b:\n    snapshot: false\n"); !p.Templates["a"].Snapshot || p.Templates["b"].Snapshot {
		t.Errorf("snapshot a=%v b=%v, want true false", p.Templates["a"].Snapshot, p.Templates["b"].Snapshot)
	}
	errs := parseErrors(t, "templates:\n  a:\n    snapshot: maybe\n")
	if len(errs) != 1 || errs[0].Line != 3 || !contains(errs[0].Msg, "true or false") {
		t.Errorf("got %s, want one problem on line 3 saying true or false", dump(errs))
	}
}

// TestDefaultIdleTimeoutFollowsShortLifetime guarantees that a template
// that sets only a lifetime shorter than the default idle timeout is valid
// and idles out at its lifetime, while an explicit idle timeout is kept.
func TestDefaultIdleTimeoutFollowsShortLifetime(t *testing.T) {
	p := mustParse(t, py+"    lifetime: 10m\n")
	if got := p.Templates["python"].IdleTimeout; got != 10*time.Minute {
		t.Errorf("IdleTimeout = %s, want the lifetime 10m", got)
	}
	p = mustParse(t, py+"    lifetime: 10m\n    idle_timeout: 2m\n")
	if got := p.Templates["python"].IdleTimeout; got != 2*time.Minute {
		t.Errorf("IdleTimeout = %s, want 2m as set", got)
	}
}

// TestTenantsParsed guarantees the tenants section: credentials (token
// hashes normalised to bare hex), unix ids, quotas, templates and limits
// that only lower (unset ones stay zero, not the template defaults).
func TestTenantsParsed(t *testing.T) {
	h := strings.Repeat("ab", 32)
	p, err := Parse([]byte(`templates:
  python: {}
tenants:
  team-a:
    tokens: ["sha256:`+h+`"]
    cert_subjects: ["CN=orchestrator,O=Example"]
    unix: {uids: [1000], gids: [2000]}
    max_sandboxes: 4
    templates: [python]
    limits: {memory: 512Mi, images: {count: 2}}
  local:
    unix: {uids: [0]}
`), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a := p.Tenants["team-a"]
	want := &Tenant{Name: "team-a", TokenHashes: []string{h}, CertSubjects: []string{"CN=orchestrator,O=Example"},
		UnixUIDs: []int{1000}, UnixGIDs: []int{2000}, MaxSandboxes: 4, Templates: []string{"python"},
		Limits: Limits{Memory: 512 << 20, Images: ImageLimits{Count: 2}}}
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("team-a = %+v, want %+v", a, want)
	}
	if l := p.Tenants["local"]; l == nil || !reflect.DeepEqual(l.UnixUIDs, []int{0}) {
		t.Fatalf("local = %+v", l)
	}
	if got := p.TenantNames(); !reflect.DeepEqual(got, []string{"local", "team-a"}) {
		t.Fatalf("TenantNames = %v", got)
	}
}

// TestEgressParsed guarantees that a template's egress list reaches the
// Policy parsed, in file order and canonical form (entries that start
// with * or [ quoted, as YAML requires), that egress limits take their
// defaults or the values written, and that a tenant's egress limits stay
// zero unless set.
func TestEgressParsed(t *testing.T) {
	p := mustParse(t, `default_template: web
templates:
  web:
    network: allowlist
    egress:
      allow:
        - PyPI.org
        - "*.pythonhosted.org:443"
        - 10.20.0.0/16:5432
        - "[fd00::/8]:443,8443"
    limits:
      egress_connections: 16
  offline: {}
tenants:
  a:
    tokens: [`+strings.Repeat("ab", 32)+`]
    limits: {egress_bytes: 100Mi}
`)
	web := p.Templates["web"]
	want := []string{"pypi.org", "*.pythonhosted.org:443", "10.20.0.0/16:5432", "[fd00::/8]:443,8443"}
	if got := web.Egress.Allow.Strings(); web.Network != NetworkAllowlist || !reflect.DeepEqual(got, want) {
		t.Errorf("web: network %q, egress.allow %q; want allowlist, %q", web.Network, got, want)
	}
	if web.Limits.EgressBytes != DefaultEgressBytes || web.Limits.EgressConnections != 16 {
		t.Errorf("web egress limits %d bytes, %d connections; want %d, 16", web.Limits.EgressBytes, web.Limits.EgressConnections, DefaultEgressBytes)
	}
	if off := p.Templates["offline"]; off.Network != NetworkNone || off.Egress.Allow != nil {
		t.Errorf("offline: network %q, egress.allow %v; want none and no list", off.Network, off.Egress.Allow)
	}
	if l := p.Tenants["a"].Limits; l.EgressBytes != 100<<20 || l.EgressConnections != 0 {
		t.Errorf("tenant egress limits %+v, want 100Mi bytes and connections unset", l)
	}
}

// TestEgressListBounded guarantees that a template lists at most
// egress.MaxRules destinations.
func TestEgressListBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString(py + "    network: allowlist\n    egress:\n      allow:\n")
	for i := 0; i <= egress.MaxRules; i++ {
		fmt.Fprintf(&b, "        - h%d.example.com\n", i)
	}
	errs := parseErrors(t, b.String())
	if _, ok := findError(errs, "templates.python.egress.allow", "more than the 256 allowed"); !ok || len(errs) != 1 {
		t.Errorf("got %s, want one problem about the list's length", dump(errs))
	}
}

// TestTenantsFile guarantees the tenants_file: its tenants are the
// policy's (a relative path is read beside the policy file), its problems
// name that file and line, and it cannot be combined with inline tenants,
// be missing, or be used by Parse, which reads no files.
func TestTenantsFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	hash := "sha256:" + strings.Repeat("ab", 32)
	tenants := write("secret/tenants.yaml", "tenants:\n  team-a:\n    tokens: ["+hash+"]\n    max_sandboxes: 3\n")
	policyPath := write("config/policy.yaml", "templates: {python: {}}\ntenants_file: ../secret/tenants.yaml\n")
	p, err := Load(policyPath)
	if err != nil {
		t.Fatal(err)
	}
	if a := p.Tenants["team-a"]; a == nil || a.MaxSandboxes != 3 || len(a.TokenHashes) != 1 || p.TenantsFile != tenants {
		t.Fatalf("tenants %+v from %q, want team-a from %s", p.Tenants, p.TenantsFile, tenants)
	}
	if _, err := Parse([]byte("templates: {python: {}}\ntenants_file: t.yaml\n"), "inline"); err == nil || !strings.Contains(err.Error(), "tenants_file") {
		t.Errorf("Parse with a tenants_file: %v, want a problem at tenants_file", err)
	}
	for name, tc := range map[string]struct{ policy, tenants, want string }{
		"both":       {"templates: {python: {}}\ntenants: {}\ntenants_file: t.yaml\n", "tenants: {}\n", "policy.yaml:3: tenants_file: the policy has tenants of its own"},
		"missing":    {"templates: {python: {}}\ntenants_file: nothere.yaml\n", "", "policy.yaml:2: tenants_file: reading the tenants file"},
		"unknown":    {"templates: {python: {}}\ntenants_file: t.yaml\n", "tenants:\n  team-a:\n    tokns: [x]\n", "t.yaml:3: tenants.team-a.tokns: unknown field"},
		"validation": {"templates: {python: {}}\ntenants_file: t.yaml\n", "tenants:\n  team-a:\n    templates: [nope]\n    tokens: [" + hash + "]\n", "t.yaml:3: tenants.team-a.templates"},
		"not a map":  {"templates: {python: {}}\ntenants_file: t.yaml\n", "- a\n", "t.yaml:1: a tenants file is a mapping"},
		"syntax":     {"templates: {python: {}}\ntenants_file: t.yaml\n", "tenants: [\n", "t.yaml:"},
	} {
		t.Run(name, func(t *testing.T) {
			d := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(d, "policy.yaml"), []byte(tc.policy), 0o644)
			if tc.tenants != "" {
				os.WriteFile(filepath.Join(d, "t.yaml"), []byte(tc.tenants), 0o644)
			}
			_, err := Load(filepath.Join(d, "policy.yaml"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load = %v, want a problem containing %q", err, tc.want)
			}
		})
	}
}
