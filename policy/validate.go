package policy

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/sandboxd/sandboxd/runtime/egress"
)

var (
	// templateName is the form of a template name.
	templateName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	// envKey is the form of an environment variable name.
	envKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// moduleName is a dotted Python module name.
	moduleName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
)

// maxSocketPath is the longest Unix socket path Linux accepts (sun_path is
// 108 bytes including the terminating NUL).
const maxSocketPath = 107

// validate checks the values of a decoded policy, recording every problem
// in p, and fills in default_template when there is only one template.
func validate(pol *Policy, p *problems) {
	validateHost(&pol.Host, p)
	names := pol.TemplateNames()
	if p.set("templates") && !p.bad["templates"] && len(names) == 0 {
		p.add("templates", "no templates defined: a policy needs at least one, e.g. `templates: {python: {}}`")
	}
	for _, name := range names {
		validateTemplate(pol.Templates[name], "templates."+name, p)
	}
	validateDefaultTemplate(pol, names, p)
	validatePools(pol, names, p)
	validateTenants(pol, p)
	validateListener(pol, p)
}

func validateHost(h *Host, p *problems) {
	if p.ok("host.max_sandboxes") && h.MaxSandboxes < 1 {
		p.add("host.max_sandboxes", "must be at least 1, got %d", h.MaxSandboxes)
	}
	if p.ok("host.max_paused_bytes") && h.MaxPausedBytes < MinPausedBytes {
		p.add("host.max_paused_bytes", "must be at least %s (any paused image is larger), got %s", Size(MinPausedBytes), Size(h.MaxPausedBytes))
	}
	if p.ok("host.socket") {
		switch {
		case h.Socket == "":
			p.add("host.socket", "must not be empty: leave the field out to use %s", DefaultSocket)
		case !filepath.IsAbs(h.Socket):
			p.add("host.socket", "%q is a relative path: write an absolute path such as %s", h.Socket, DefaultSocket)
		case len(h.Socket) > maxSocketPath:
			p.add("host.socket", "is %d bytes long, but Unix socket paths can be at most %d: choose a shorter path", len(h.Socket), maxSocketPath)
		}
	}
	for _, f := range []struct{ key, v string }{
		{"host.tls.cert_file", h.TLS.CertFile}, {"host.tls.key_file", h.TLS.KeyFile},
		{"host.tls.client_ca_file", h.TLS.ClientCAFile}, {"host.audit_log", h.AuditLog},
	} {
		if p.ok(f.key) && f.v != "" && !filepath.IsAbs(f.v) {
			p.add(f.key, "%q is a relative path: write an absolute path", f.v)
		}
	}
	if p.ok("host.tls.cert_file", "host.tls.key_file") && (h.TLS.CertFile == "") != (h.TLS.KeyFile == "") {
		p.add("host.tls", "cert_file and key_file go together: set both (the certificate chain and its key, PEM) or neither")
	}
	if p.ok("host.tls.client_ca_file") && h.TLS.ClientCAFile != "" && h.TLS.CertFile == "" {
		p.add("host.tls.client_ca_file", "needs cert_file and key_file: mutual TLS is TLS with client certificates")
	}
	if p.ok("host.audit_log_max_bytes") && h.AuditLogMaxBytes < MinAuditLogMaxBytes {
		p.add("host.audit_log_max_bytes", "must be at least %s, got %s", Size(MinAuditLogMaxBytes), Size(h.AuditLogMaxBytes))
	}
	if p.ok("host.audit_log_keep") && h.AuditLogKeep < 1 {
		p.add("host.audit_log_keep", "must be at least 1, got %d", h.AuditLogKeep)
	}
	if p.ok("host.metrics_listen") && h.MetricsListen != "" {
		if msg := checkLoopback(h.MetricsListen, "the metrics listener has no authentication"); msg != "" {
			p.add("host.metrics_listen", "%s", msg)
		} else if h.MetricsListen == h.ListenTCP {
			p.add("host.metrics_listen", "is the same address as host.listen_tcp (%s): give the metrics listener its own port", h.ListenTCP)
		}
	}
}

// checkLoopback returns "" if addr is HOST:PORT with a loopback HOST
// (127.0.0.0/8, ::1 or localhost) and a port from 1 to 65535, else a message
// saying what to write; why explains why only loopback is allowed.
func checkLoopback(addr, why string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("invalid address %q: write HOST:PORT with a loopback host, e.g. 127.0.0.1:7070 or [::1]:7070", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("invalid port %q in %q: write a port number from 1 to 65535", port, addr)
	}
	if host == "localhost" {
		return ""
	}
	if host == "" {
		return fmt.Sprintf("%q listens on every interface, but only loopback is allowed (%s): write 127.0.0.1:%s", addr, why, port)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return fmt.Sprintf("host %q in %q is not an IP address: write 127.0.0.1:%s or [::1]:%s", host, addr, port, port)
	}
	if !ip.IsLoopback() {
		return fmt.Sprintf("%s is not a loopback address, and only loopback is allowed (%s): write 127.0.0.1:%s or [::1]:%s", host, why, port, port)
	}
	return ""
}

func validateTemplate(t *Template, path string, p *problems) {
	if !templateName.MatchString(t.Name) {
		p.add(path, "invalid template name %q: use 1 to 63 lowercase letters, digits, '_' or '-', starting with a letter or digit%s", t.Name, nameSuggestion(t.Name))
	}
	if at := path + ".rootfs"; p.ok(at) && t.Rootfs != DefaultRootfs && !filepath.IsAbs(t.Rootfs) {
		p.add(at, "%q is not an absolute path: write %q for the rootfs built by rootfs/build.sh, or an absolute path such as /var/lib/sandboxd/rootfs", t.Rootfs, DefaultRootfs)
	}
	validateNetwork(t, path, p)
	validateLimits(&t.Limits, path+".limits", p)

	def, maxPath := path+".exec_timeout.default", path+".exec_timeout.max"
	if p.ok(def, maxPath) && t.ExecTimeout.Default > t.ExecTimeout.Max {
		at := def
		if !p.set(def) {
			at = maxPath
		}
		p.add(at, "exec_timeout.default %s%s is longer than exec_timeout.max %s%s: lower default or raise max",
			formatDuration(t.ExecTimeout.Default), defaulted(p, def), formatDuration(t.ExecTimeout.Max), defaulted(p, maxPath))
	}
	idle, life, pause := path+".idle_timeout", path+".lifetime", path+".pause_after"
	if p.ok(idle, life) && !p.set(idle) && t.IdleTimeout > t.Lifetime {
		// The default idle timeout is the lifetime's when that is shorter.
		t.IdleTimeout = t.Lifetime
	}
	if p.ok(idle, pause) && p.set(pause) && t.PauseAfter >= t.IdleTimeout {
		p.add(pause, "pause_after %s is not shorter than idle_timeout %s%s, so it could never fire: lower pause_after, raise idle_timeout, or write 0 to never pause",
			formatDuration(t.PauseAfter), formatDuration(t.IdleTimeout), defaulted(p, idle))
	}
	if p.ok(idle, life) && t.IdleTimeout > t.Lifetime {
		at := idle
		if !p.set(idle) {
			at = life
		}
		p.add(at, "idle_timeout %s%s is longer than lifetime %s%s, so it could never fire: lower idle_timeout or raise lifetime",
			formatDuration(t.IdleTimeout), defaulted(p, idle), formatDuration(t.Lifetime), defaulted(p, life))
	}

	keys := make([]string, 0, len(t.Env))
	for k := range t.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		at := path + ".env." + k
		if !envKey.MatchString(k) {
			p.add(at, "invalid variable name %q: use letters, digits and '_', not starting with a digit", k)
		}
		if strings.ContainsRune(t.Env[k], 0) {
			p.add(at, "the value contains a NUL byte, which an environment variable cannot hold: remove it")
		}
	}

	first := map[string]string{}
	for i, m := range t.WarmImports {
		at := indexPath(path+".warm_imports", i)
		if !p.ok(at) {
			continue
		}
		if !moduleName.MatchString(m) {
			p.add(at, "%q is not a Python module name: write a dotted module path such as numpy or matplotlib.pyplot (no spaces, no `import`, no `as`)", m)
			continue
		}
		if prev, dup := first[m]; dup {
			p.add(at, "%q is listed twice (also at %s): remove one", m, prev)
			continue
		}
		first[m] = at
	}
}

// validateNetwork checks a template's network mode and egress list:
// allowlist needs destinations, none takes none, and the list is bounded
// and lists each destination once.
func validateNetwork(t *Template, path string, p *problems) {
	network, allow := path+".network", path+".egress.allow"
	modes := []string{string(NetworkNone), string(NetworkAllowlist)}
	if p.ok(network) && !slices.Contains(modes, string(t.Network)) {
		p.add(network, "unknown network %q%s: write none (no network) or allowlist (only the destinations in egress.allow, through the daemon)",
			t.Network, didYouMean(string(t.Network), modes))
		return
	}
	listed := len(t.Egress.Allow) > 0
	switch {
	case !p.ok(network, path+".egress", allow):
		return
	case t.Network == NetworkAllowlist && !listed:
		p.add(network, "network: allowlist needs destinations in egress.allow, e.g. `egress: {allow: [pypi.org, files.pythonhosted.org]}`; or write network: none")
	case t.Network == NetworkNone && listed:
		p.add(allow, "lists destinations, but network is %s%s, so none of them can be reached: set network: allowlist, or remove egress.allow",
			NetworkNone, defaulted(p, network))
	}
	if n := len(t.Egress.Allow); n > egress.MaxRules {
		p.add(allow, "has %d entries, more than the %d allowed: cover several hosts with *.domain or a CIDR", n, egress.MaxRules)
	}
	first := map[string]string{}
	for i, r := range t.Egress.Allow {
		at := indexPath(allow, i)
		if !p.ok(at) {
			continue
		}
		canon := r.String()
		if prev, dup := first[canon]; dup {
			p.add(at, "%q is listed twice (also at %s)", canon, prev)
			continue
		}
		first[canon] = at
	}
}

func validateLimits(l *Limits, path string, p *problems) {
	at := func(name string) string { return path + "." + name }
	if p.ok(at("cpu")) && (l.CPU < MinCPU || l.CPU > MaxCPU) {
		p.add(at("cpu"), "must be at least %g (the kernel's smallest quota) and at most %g cores, got %g", MinCPU, MaxCPU, l.CPU)
	}
	minSize := func(name string, v, least int64) {
		if p.ok(at(name)) && v < least {
			p.add(at(name), "must be at least %s, got %s", Size(least), Size(v))
		}
	}
	minSize("memory", l.Memory, MinMemory)
	minSize("disk", l.Disk, MinDisk)
	for _, f := range []struct {
		name string
		v    int64
	}{{"file_size", l.FileSize}, {"output", l.Output}, {"upload_file", l.UploadFile}, {"upload_total", l.UploadTotal},
		{"download_file", l.DownloadFile}, {"download_total", l.DownloadTotal}, {"egress_bytes", l.EgressBytes}} {
		if p.ok(at(f.name)) && f.v <= 0 {
			p.add(at(f.name), "must be greater than 0, got %s", Size(f.v))
		}
	}
	between := func(name string, v, lo, hi int) {
		if p.ok(at(name)) && (v < lo || v > hi) {
			p.add(at(name), "must be between %d and %d, got %d", lo, hi, v)
		}
	}
	between("processes", l.Processes, MinProcesses, MaxProcesses)
	between("open_files", l.OpenFiles, MinOpenFiles, MaxOpenFiles)
	between("egress_connections", l.EgressConnections, 1, MaxEgressConnections)
	if as := l.PythonAddressSpace; p.ok(at("python_address_space"), at("memory")) && as != 0 {
		switch {
		case as < MinPythonAddressSpace:
			p.add(at("python_address_space"), "must be 0 (no cap) or at least %s, got %s", Size(MinPythonAddressSpace), Size(as))
		case as >= l.Memory:
			p.add(at("python_address_space"), "%s is not below memory %s%s, so the sandbox would be killed before Python raised MemoryError: leave headroom for gVisor and other processes (e.g. 3/4 of memory)",
				Size(as), Size(l.Memory), defaulted(p, at("memory")))
		}
	}
	perFileBelowTotal(p, path, "upload", l.UploadFile, l.UploadTotal)
	perFileBelowTotal(p, path, "download", l.DownloadFile, l.DownloadTotal)
	between("images.count", l.Images.Count, 0, MaxImages)
	if b := l.Images.Bytes; p.ok(at("images.bytes")) && (b < 0 || b > MaxImageBytes) {
		p.add(at("images.bytes"), "must be between 0 and %s, got %s", Size(MaxImageBytes), Size(b))
	}
}

// perFileBelowTotal checks that limits.<kind>_file fits in
// limits.<kind>_total, kind being upload or download.
func perFileBelowTotal(p *problems, path, kind string, file, total int64) {
	fileKey, totalKey := path+"."+kind+"_file", path+"."+kind+"_total"
	if !p.ok(fileKey, totalKey) || total <= 0 || file <= total {
		return
	}
	where := fileKey
	if !p.set(where) {
		where = totalKey
	}
	p.add(where, "%s_file %s%s is larger than %s_total %s%s, so no %s that big could fit: lower %s_file or raise %s_total",
		kind, Size(file), defaulted(p, fileKey), kind, Size(total), defaulted(p, totalKey), kind, kind, kind)
}

func validateDefaultTemplate(pol *Policy, names []string, p *problems) {
	const at = "default_template"
	switch {
	case !p.ok(at) || len(names) == 0:
	case p.set(at):
		if _, ok := pol.Templates[pol.DefaultTemplate]; !ok {
			p.add(at, "unknown template %q%s: the templates defined are %s", pol.DefaultTemplate, didYouMean(pol.DefaultTemplate, names), strings.Join(names, ", "))
		}
	case len(names) == 1:
		pol.DefaultTemplate = names[0]
	default:
		p.at(p.posOf("templates"), at, "missing: with more than one template (%s) the policy must say which one a request that names none gets, e.g. `default_template: %s`", strings.Join(names, ", "), names[0])
	}
}

func validatePools(pol *Policy, names []string, p *problems) {
	hostMax, hostOK := pol.Host.MaxSandboxes, p.ok("host.max_sandboxes") && pol.Host.MaxSandboxes >= 1
	firstPool := map[string]string{}
	idleSum, idleOK := 0, true
	var idleParts []string
	for i, pool := range pol.Pools {
		path := indexPath("pools", i)
		if !p.ok(path) {
			idleOK = false
			continue
		}
		at := func(name string) string { return path + "." + name }

		tmpl := at("template")
		switch {
		case !p.ok(tmpl):
		case !p.set(tmpl):
			p.add(path, "missing template: add `template: NAME` naming one of %s", strings.Join(names, ", "))
		case pol.Templates[pool.Template] == nil:
			p.add(tmpl, "unknown template %q%s: the templates defined are %s", pool.Template, didYouMean(pool.Template, names), strings.Join(names, ", "))
		default:
			if prev, dup := firstPool[pool.Template]; dup {
				p.add(tmpl, "template %q already has a pool (%s): a template has at most one pool, so merge the two", pool.Template, prev)
			} else {
				firstPool[pool.Template] = path
			}
		}

		idle, total, booting := at("idle"), at("max_total"), at("max_booting")
		if p.ok(idle) && pool.Idle < 0 {
			p.add(idle, "must be 0 or more, got %d", pool.Idle)
		}
		if p.ok(total) && pool.MaxTotal < 1 {
			p.add(total, "must be at least 1, got %d", pool.MaxTotal)
		}
		if p.ok(booting) && pool.MaxBooting < 1 {
			p.add(booting, "must be at least 1, got %d", pool.MaxBooting)
		}
		if p.ok(idle, total) && pool.MaxTotal >= 1 && pool.Idle > pool.MaxTotal {
			where := idle
			if !p.set(idle) {
				where = total
			}
			p.add(where, "idle %d%s is larger than max_total %d%s, so the pool could never hold that many: lower idle or raise max_total",
				pool.Idle, defaulted(p, idle), pool.MaxTotal, defaulted(p, total))
		}
		if hostOK && p.ok(total) && pool.MaxTotal > hostMax {
			p.add(total, "max_total %d%s is larger than host.max_sandboxes %d%s: lower max_total or raise host.max_sandboxes",
				pool.MaxTotal, defaulted(p, total), hostMax, defaulted(p, "host.max_sandboxes"))
		}
		if p.ok(idle) && pool.Idle >= 0 {
			idleSum += pool.Idle
			idleParts = append(idleParts, fmt.Sprintf("%s %d", pool.Template, pool.Idle))
		} else {
			idleOK = false
		}
	}
	if hostOK && idleOK && idleSum > hostMax {
		p.add("pools", "the pools keep %d idle sandboxes in total (%s), more than host.max_sandboxes %d%s: lower idle or raise host.max_sandboxes",
			idleSum, strings.Join(idleParts, " + "), hostMax, defaulted(p, "host.max_sandboxes"))
	}
}

// defaulted returns " (the default)" if the file left the field at path
// out, so messages about a value the user never wrote say where it came
// from.
func defaulted(p *problems, path string) string {
	if p.set(path) {
		return ""
	}
	return " (the default)"
}

// nameSuggestion proposes a valid template name close to name, as
// `, e.g. "my-name"`, or returns "".
func nameSuggestion(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteRune('-')
		}
	}
	s := strings.TrimLeft(b.String(), "-_")
	if len(s) > 63 {
		s = s[:63]
	}
	if s == name || !templateName.MatchString(s) {
		return ""
	}
	return fmt.Sprintf(", e.g. %q", s)
}

// tokenHash is the form of a token hash in the policy: a SHA-256 in hex,
// optionally prefixed "sha256:" as `sandboxd hash-token` prints it.
var tokenHash = regexp.MustCompile(`^(sha256:)?[0-9a-f]{64}$`)

// validateTenants checks each tenant and that no credential names two.
func validateTenants(pol *Policy, p *problems) {
	tokens, subjects, uids, gids := map[string]string{}, map[string]string{}, map[int]string{}, map[int]string{}
	for _, name := range pol.TenantNames() {
		t := pol.Tenants[name]
		path := "tenants." + name
		if !templateName.MatchString(name) {
			p.add(path, "invalid tenant name %q: use 1 to 63 lowercase letters, digits, '_' or '-', starting with a letter or digit", name)
		}
		for i, h := range t.TokenHashes {
			at := fmt.Sprintf("%s.tokens[%d]", path, i)
			if !p.ok(at) {
				continue
			}
			if !tokenHash.MatchString(h) {
				p.add(at, "is not a token hash: write the SHA-256 of the token in hex, as `sandboxd hash-token` prints it (never the token itself)")
				continue
			}
			h = strings.TrimPrefix(h, "sha256:")
			t.TokenHashes[i] = h
			if other, dup := tokens[h]; dup {
				p.add(at, "the same token also authenticates tenant %q: give each tenant its own", other)
			}
			tokens[h] = name
		}
		for i, s := range t.CertSubjects {
			at := fmt.Sprintf("%s.cert_subjects[%d]", path, i)
			if !p.ok(at) {
				continue
			}
			if s == "" {
				p.add(at, "is empty: write a certificate subject such as CN=orchestrator,O=Example")
			} else if other, dup := subjects[s]; dup {
				p.add(at, "subject %q also names tenant %q", s, other)
			}
			subjects[s] = name
		}
		for _, id := range []struct {
			key  string
			ids  []int
			seen map[int]string
		}{{"uids", t.UnixUIDs, uids}, {"gids", t.UnixGIDs, gids}} {
			at := path + ".unix." + id.key
			if !p.ok(at) {
				continue
			}
			for _, v := range id.ids {
				if v < 0 {
					p.add(at, "%d is negative", v)
				} else if other, dup := id.seen[v]; dup {
					p.add(at, "%d also names tenant %q: a unix caller must map to one tenant", v, other)
				}
				id.seen[v] = name
			}
		}
		if at := path + ".max_sandboxes"; p.ok(at) && t.MaxSandboxes < 0 {
			p.add(at, "must be 0 (no quota but the host's) or more, got %d", t.MaxSandboxes)
		}
		if at := path + ".templates"; p.ok(at) {
			for _, tmpl := range t.Templates {
				if _, ok := pol.Templates[tmpl]; !ok {
					p.add(at, "template %q is not defined in templates", tmpl)
				}
			}
		}
		validateTenantLimits(&t.Limits, path+".limits", p)
		if name != "local" && len(t.TokenHashes) == 0 && len(t.CertSubjects) == 0 && len(t.UnixUIDs) == 0 && len(t.UnixGIDs) == 0 {
			p.add(path, "has no way to authenticate: give it tokens, cert_subjects or unix uids/gids")
		}
	}
}

// validateTenantLimits checks a tenant's limits: each one set must be
// positive (zero keeps the template's).
func validateTenantLimits(l *Limits, path string, p *problems) {
	at := func(name string) string { return path + "." + name }
	if p.ok(at("cpu")) && l.CPU != 0 && (l.CPU < MinCPU || l.CPU > MaxCPU) {
		p.add(at("cpu"), "must be at least %g (the kernel's smallest quota) and at most %g cores, got %g", MinCPU, MaxCPU, l.CPU)
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"memory", l.Memory}, {"disk", l.Disk}, {"file_size", l.FileSize}, {"output", l.Output}, {"upload_file", l.UploadFile},
		{"upload_total", l.UploadTotal}, {"download_file", l.DownloadFile}, {"download_total", l.DownloadTotal},
		{"python_address_space", l.PythonAddressSpace}, {"images.bytes", l.Images.Bytes},
		{"processes", int64(l.Processes)}, {"open_files", int64(l.OpenFiles)}, {"images.count", int64(l.Images.Count)},
		{"egress_bytes", l.EgressBytes}, {"egress_connections", int64(l.EgressConnections)}} {
		if p.ok(at(f.name)) && f.v < 0 {
			p.add(at(f.name), "must not be negative (0 or leaving it out keeps the template's), got %d", f.v)
		}
	}
}

// validateListener checks host.listen_tcp with APIListenerProblem.
func validateListener(pol *Policy, p *problems) {
	if !p.ok("host.listen_tcp") || pol.Host.ListenTCP == "" {
		return
	}
	if msg := pol.APIListenerProblem(pol.Host.ListenTCP); msg != "" {
		p.add("host.listen_tcp", "%s", msg)
	}
}

// APIListenerProblem returns "" if the API may listen on TCP address addr
// under pol, else what is wrong: an address that is not HOST:PORT, or one
// off loopback without TLS (host.tls cert and key) and a way for callers to
// authenticate (tenants with tokens, or a client CA). The daemon checks its
// --listen-tcp flag with it too.
func (pol *Policy) APIListenerProblem(addr string) string {
	msg := checkLoopback(addr, "the API would have no authentication")
	if msg == "" || strings.HasPrefix(msg, "invalid") {
		return msg
	}
	h := &pol.Host
	auth := h.TLS.ClientCAFile != ""
	for _, t := range pol.Tenants {
		auth = auth || len(t.TokenHashes) > 0
	}
	if h.TLS.CertFile == "" || !auth {
		return fmt.Sprintf("%s is not a loopback address: serving the API there needs TLS (host.tls.cert_file and key_file) and callers that authenticate (tenants with tokens, or host.tls.client_ca_file for client certificates); or listen on 127.0.0.1", addr)
	}
	return ""
}

// TenantNames returns the tenant names, sorted.
func (pol *Policy) TenantNames() []string {
	names := make([]string, 0, len(pol.Tenants))
	for name := range pol.Tenants {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
