package policy

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sandboxd/sandboxd/runtime/egress"
)

// decoder turns the YAML node tree of a policy into a Policy with defaults
// filled in. It checks structure and types only (unknown or repeated
// fields, a list where a mapping belongs, a size that does not parse) and
// records the line of every field; validate checks the values.
type decoder struct {
	p *problems
	// file names the file being decoded when it is not the policy file
	// itself (the tenants_file), for the positions of its problems.
	file string
}

// pos returns the position of n in the file being decoded.
func (d *decoder) pos(n *yaml.Node) pos {
	at := posOfNode(n)
	at.file = d.file
	return at
}

// field is one allowed key of a YAML mapping and how to decode its value.
type field struct {
	name   string
	decode func(v *yaml.Node, path string)
}

// decodePolicy decodes the document node of a policy file.
func decodePolicy(doc *yaml.Node, p *problems) *Policy {
	pol := &Policy{
		Host: Host{
			MaxSandboxes: DefaultMaxSandboxes, Socket: DefaultSocket,
			MaxPausedBytes: DefaultMaxPausedBytes, ShutdownTimeout: DefaultShutdownTimeout,
			AuditLogMaxBytes: DefaultAuditLogMaxBytes, AuditLogKeep: DefaultAuditLogKeep,
		},
		Templates: map[string]*Template{},
		Tenants:   map[string]*Tenant{},
	}
	d := &decoder{p: p}
	root := doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	root = resolve(root)
	if isNull(root) {
		p.at(d.pos(root), "", "the policy is empty: it needs at least one template, e.g. `templates: {python: {}}`")
		return pol
	}
	if root.Kind != yaml.MappingNode {
		p.at(d.pos(root), "", "the top level must be a mapping with the fields host, default_template, templates, pools, tenants and tenants_file, got %s", describe(root))
		return pol
	}
	d.mapping(root, "", []field{
		{"host", func(v *yaml.Node, path string) { d.host(v, path, &pol.Host) }},
		{"default_template", func(v *yaml.Node, path string) { d.str(v, path, &pol.DefaultTemplate) }},
		{"templates", func(v *yaml.Node, path string) { d.templates(v, path, pol.Templates) }},
		{"pools", func(v *yaml.Node, path string) { pol.Pools = d.pools(v, path) }},
		{"tenants", func(v *yaml.Node, path string) { d.tenants(v, path, pol.Tenants) }},
		{"tenants_file", func(v *yaml.Node, path string) { d.str(v, path, &pol.TenantsFile) }},
	})
	if !p.set("templates") {
		p.at(d.pos(root), "templates", "missing: a policy needs at least one template, e.g. `templates: {python: {}}`")
	}
	return pol
}

func (d *decoder) host(n *yaml.Node, path string, h *Host) {
	d.mapping(n, path, []field{
		{"max_sandboxes", func(v *yaml.Node, path string) { d.integer(v, path, &h.MaxSandboxes) }},
		{"socket", func(v *yaml.Node, path string) { d.str(v, path, &h.Socket) }},
		{"listen_tcp", func(v *yaml.Node, path string) { d.optStr(v, path, &h.ListenTCP) }},
		{"metrics_listen", func(v *yaml.Node, path string) { d.optStr(v, path, &h.MetricsListen) }},
		{"max_paused_bytes", func(v *yaml.Node, path string) { d.size(v, path, &h.MaxPausedBytes) }},
		{"shutdown_timeout", func(v *yaml.Node, path string) { d.duration(v, path, &h.ShutdownTimeout) }},
		{"tls", func(v *yaml.Node, path string) {
			d.mapping(v, path, []field{
				{"cert_file", func(v *yaml.Node, path string) { d.optStr(v, path, &h.TLS.CertFile) }},
				{"key_file", func(v *yaml.Node, path string) { d.optStr(v, path, &h.TLS.KeyFile) }},
				{"client_ca_file", func(v *yaml.Node, path string) { d.optStr(v, path, &h.TLS.ClientCAFile) }},
			})
		}},
		{"audit_log", func(v *yaml.Node, path string) { d.optStr(v, path, &h.AuditLog) }},
		{"audit_log_max_bytes", func(v *yaml.Node, path string) { d.size(v, path, &h.AuditLogMaxBytes) }},
		{"audit_log_keep", func(v *yaml.Node, path string) { d.integer(v, path, &h.AuditLogKeep) }},
	})
}

func (d *decoder) tenants(n *yaml.Node, path string, out map[string]*Tenant) {
	d.entries(n, path, "tenants", func(name string, v *yaml.Node, sub string) {
		t := &Tenant{Name: name}
		out[name] = t
		strs := func(v *yaml.Node, path string, out *[]string) {
			d.list(v, path, func(v *yaml.Node, sub string) {
				var s string
				d.str(v, sub, &s)
				*out = append(*out, s)
			})
		}
		ints := func(v *yaml.Node, path string, out *[]int) {
			d.list(v, path, func(v *yaml.Node, sub string) {
				var i int
				d.integer(v, sub, &i)
				*out = append(*out, i)
			})
		}
		d.mapping(v, sub, []field{
			{"tokens", func(v *yaml.Node, path string) { strs(v, path, &t.TokenHashes) }},
			{"cert_subjects", func(v *yaml.Node, path string) { strs(v, path, &t.CertSubjects) }},
			{"unix", func(v *yaml.Node, path string) {
				d.mapping(v, path, []field{
					{"uids", func(v *yaml.Node, path string) { ints(v, path, &t.UnixUIDs) }},
					{"gids", func(v *yaml.Node, path string) { ints(v, path, &t.UnixGIDs) }},
				})
			}},
			{"max_sandboxes", func(v *yaml.Node, path string) { d.integer(v, path, &t.MaxSandboxes) }},
			{"templates", func(v *yaml.Node, path string) { strs(v, path, &t.Templates) }},
			{"limits", func(v *yaml.Node, path string) { d.limits(v, path, &t.Limits) }},
		})
	})
}

func (d *decoder) templates(n *yaml.Node, path string, out map[string]*Template) {
	d.entries(n, path, "templates", func(name string, v *yaml.Node, sub string) {
		t := newTemplate(name)
		out[name] = t
		d.template(v, sub, t)
	})
}

func (d *decoder) template(n *yaml.Node, path string, t *Template) {
	d.mapping(n, path, []field{
		{"rootfs", func(v *yaml.Node, path string) { d.str(v, path, &t.Rootfs) }},
		{"network", func(v *yaml.Node, path string) {
			var s string
			d.str(v, path, &s)
			t.Network = NetworkMode(s)
		}},
		{"egress", func(v *yaml.Node, path string) {
			d.mapping(v, path, []field{
				{"allow", func(v *yaml.Node, path string) { d.egressAllow(v, path, &t.Egress.Allow) }},
			})
		}},
		{"limits", func(v *yaml.Node, path string) { d.limits(v, path, &t.Limits) }},
		{"exec_timeout", func(v *yaml.Node, path string) {
			d.mapping(v, path, []field{
				{"default", func(v *yaml.Node, path string) { d.duration(v, path, &t.ExecTimeout.Default) }},
				{"max", func(v *yaml.Node, path string) { d.duration(v, path, &t.ExecTimeout.Max) }},
			})
		}},
		{"lifetime", func(v *yaml.Node, path string) { d.duration(v, path, &t.Lifetime) }},
		{"idle_timeout", func(v *yaml.Node, path string) { d.duration(v, path, &t.IdleTimeout) }},
		{"pause_after", func(v *yaml.Node, path string) { d.durationOrZero(v, path, &t.PauseAfter) }},
		{"env", func(v *yaml.Node, path string) {
			d.entries(v, path, "environment variables", func(key string, v *yaml.Node, sub string) {
				var s string
				if d.envValue(v, sub, &s) {
					t.Env[key] = s
				}
			})
		}},
		{"snapshot", func(v *yaml.Node, path string) { d.boolean(v, path, &t.Snapshot) }},
		{"warm_imports", func(v *yaml.Node, path string) {
			d.list(v, path, func(v *yaml.Node, sub string) {
				var s string
				d.str(v, sub, &s)
				t.WarmImports = append(t.WarmImports, s)
			})
		}},
	})
}

func (d *decoder) limits(n *yaml.Node, path string, l *Limits) {
	d.mapping(n, path, []field{
		{"cpu", func(v *yaml.Node, path string) { d.cpu(v, path, &l.CPU) }},
		{"memory", func(v *yaml.Node, path string) { d.size(v, path, &l.Memory) }},
		{"processes", func(v *yaml.Node, path string) { d.integer(v, path, &l.Processes) }},
		{"disk", func(v *yaml.Node, path string) { d.size(v, path, &l.Disk) }},
		{"open_files", func(v *yaml.Node, path string) { d.integer(v, path, &l.OpenFiles) }},
		{"file_size", func(v *yaml.Node, path string) { d.size(v, path, &l.FileSize) }},
		{"output", func(v *yaml.Node, path string) { d.size(v, path, &l.Output) }},
		{"upload_file", func(v *yaml.Node, path string) { d.size(v, path, &l.UploadFile) }},
		{"upload_total", func(v *yaml.Node, path string) { d.size(v, path, &l.UploadTotal) }},
		{"download_file", func(v *yaml.Node, path string) { d.size(v, path, &l.DownloadFile) }},
		{"download_total", func(v *yaml.Node, path string) { d.size(v, path, &l.DownloadTotal) }},
		{"python_address_space", func(v *yaml.Node, path string) { d.size(v, path, &l.PythonAddressSpace) }},
		{"images", func(v *yaml.Node, path string) {
			d.mapping(v, path, []field{
				{"count", func(v *yaml.Node, path string) { d.integer(v, path, &l.Images.Count) }},
				{"bytes", func(v *yaml.Node, path string) { d.size(v, path, &l.Images.Bytes) }},
			})
		}},
		{"egress_bytes", func(v *yaml.Node, path string) { d.size(v, path, &l.EgressBytes) }},
		{"egress_connections", func(v *yaml.Node, path string) { d.integer(v, path, &l.EgressConnections) }},
	})
}

// egressAllow decodes a list of egress entries, parsing each with
// egress.ParseRule; an entry that does not parse is reported at its own
// path and kept as a zero Rule, so that indices match the file.
func (d *decoder) egressAllow(n *yaml.Node, path string, out *egress.List) {
	d.list(n, path, func(v *yaml.Node, sub string) {
		var r egress.Rule
		if s, ok := d.scalar(v, sub, "an egress entry such as pypi.org, \"*.example.com:443\" or 10.0.0.0/8"); ok {
			var err error
			if r, err = egress.ParseRule(s); err != nil {
				d.p.fail(d.pos(v), sub, err)
			}
		}
		*out = append(*out, r)
	})
}

func (d *decoder) pools(n *yaml.Node, path string) []Pool {
	pools := []Pool{}
	d.list(n, path, func(v *yaml.Node, sub string) {
		pool := newPool("")
		if resolve(v).Kind != yaml.MappingNode {
			d.p.fail(d.pos(v), sub, fmt.Errorf("a pool must be a mapping with at least `template: NAME`, got %s", describe(v)))
		} else {
			d.mapping(v, sub, []field{
				{"template", func(v *yaml.Node, path string) { d.str(v, path, &pool.Template) }},
				{"idle", func(v *yaml.Node, path string) { d.integer(v, path, &pool.Idle) }},
				{"max_total", func(v *yaml.Node, path string) { d.integer(v, path, &pool.MaxTotal) }},
				{"max_booting", func(v *yaml.Node, path string) { d.integer(v, path, &pool.MaxBooting) }},
			})
		}
		pools = append(pools, pool)
	})
	return pools
}

// mapping decodes a YAML mapping whose allowed keys are fields, reporting
// unknown and repeated keys. An empty value counts as an empty mapping, so
// every field keeps its default.
func (d *decoder) mapping(n *yaml.Node, path string, fields []field) {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	at := d.pos(n)
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.p.fail(at, path, fmt.Errorf("must be a mapping with the fields %s, got %s", strings.Join(names, ", "), describe(n)))
		return
	}
	d.keys(n, path, func(key string, k, v *yaml.Node, sub string) {
		for _, f := range fields {
			if f.name == key {
				f.decode(v, sub)
				return
			}
		}
		switch {
		case k.ShortTag() == "!!merge":
			d.p.at(d.pos(k), sub, "YAML merge keys (<<) are not supported: write the fields out")
		default:
			d.p.at(d.pos(k), sub, "unknown field %q%s; the fields allowed here are %s", key, didYouMean(key, names), strings.Join(names, ", "))
		}
	})
}

// entries decodes a YAML mapping with arbitrary keys (template names,
// environment variables), reporting repeated keys. An empty value counts
// as an empty mapping.
func (d *decoder) entries(n *yaml.Node, path, what string, each func(key string, v *yaml.Node, sub string)) {
	at := d.pos(n)
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.p.fail(at, path, fmt.Errorf("must be a mapping of %s by name, got %s", what, describe(n)))
		return
	}
	d.keys(n, path, func(key string, _, v *yaml.Node, sub string) { each(key, v, sub) })
}

// keys calls each for every key of mapping n, after recording its line
// and rejecting keys that are not plain scalars or that repeat.
func (d *decoder) keys(n *yaml.Node, path string, each func(key string, k, v *yaml.Node, sub string)) {
	first := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.p.at(d.pos(k), path, "a key must be a plain name, got %s", describe(k))
			continue
		}
		key := k.Value
		sub := joinPath(path, key)
		if line, dup := first[key]; dup {
			d.p.at(d.pos(k), sub, "set twice (first on line %d): remove one", line)
			continue
		}
		first[key] = k.Line
		d.p.lines[sub] = d.pos(k)
		each(key, k, v, sub)
	}
}

// list decodes a YAML sequence, calling each for every item. An empty
// value counts as an empty list.
func (d *decoder) list(n *yaml.Node, path string, each func(v *yaml.Node, sub string)) {
	at := d.pos(n)
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.p.fail(at, path, fmt.Errorf("must be a list, got %s", describe(n)))
		return
	}
	for i, item := range n.Content {
		sub := indexPath(path, i)
		d.p.lines[sub] = d.pos(item)
		each(item, sub)
	}
}

// scalar returns n's text if n is a non-empty scalar, else records a
// problem saying it should be what.
func (d *decoder) scalar(n *yaml.Node, path, what string) (string, bool) {
	r := resolve(n)
	if r.Kind != yaml.ScalarNode || isNull(r) {
		d.p.fail(d.pos(n), path, fmt.Errorf("must be %s, got %s", what, describe(r)))
		return "", false
	}
	return r.Value, true
}

func (d *decoder) str(n *yaml.Node, path string, out *string) {
	if s, ok := d.scalar(n, path, "a string"); ok {
		*out = s
	}
}

// optStr is str for fields where an empty value means "off".
func (d *decoder) optStr(n *yaml.Node, path string, out *string) {
	if isNull(n) {
		*out = ""
		return
	}
	d.str(n, path, out)
}

// envValue reads an environment variable's value; YAML numbers and
// booleans are taken as written, so FOO: 1 means "1".
func (d *decoder) envValue(n *yaml.Node, path string, out *string) bool {
	if isNull(n) {
		d.p.fail(d.pos(n), path, fmt.Errorf(`has no value: write %s: "" for an empty variable`, path[strings.LastIndexByte(path, '.')+1:]))
		return false
	}
	s, ok := d.scalar(n, path, "a string")
	*out = s
	return ok
}

func (d *decoder) boolean(n *yaml.Node, path string, out *bool) {
	s, ok := d.scalar(n, path, "true or false")
	if !ok {
		return
	}
	switch s {
	case "true":
		*out = true
	case "false":
		*out = false
	default:
		d.p.fail(d.pos(n), path, fmt.Errorf("must be true or false, got %q", s))
	}
}

func (d *decoder) integer(n *yaml.Node, path string, out *int) {
	s, ok := d.scalar(n, path, "a whole number")
	if !ok {
		return
	}
	v, err := strconv.Atoi(s)
	switch {
	case err == nil:
		*out = v
	case strings.Contains(err.Error(), "out of range"):
		d.p.fail(d.pos(n), path, fmt.Errorf("%s is too large", s))
	default:
		d.p.fail(d.pos(n), path, fmt.Errorf("must be a whole number, got %q", s))
	}
}

// cpu reads a core count: a number (1, 0.5) or Kubernetes millicores
// ("500m").
func (d *decoder) cpu(n *yaml.Node, path string, out *float64) {
	s, ok := d.scalar(n, path, "a number of cores such as 1 or 0.5")
	if !ok {
		return
	}
	var v float64
	var err error
	if milli, found := strings.CutSuffix(s, "m"); found {
		var m int
		m, err = strconv.Atoi(milli)
		v = float64(m) / 1000
	} else {
		v, err = strconv.ParseFloat(s, 64)
	}
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		d.p.fail(d.pos(n), path, fmt.Errorf("must be a number of cores such as 1, 0.5 or 500m, got %q", s))
		return
	}
	*out = v
}

func (d *decoder) size(n *yaml.Node, path string, out *int64) {
	var s Size
	if err := s.UnmarshalYAML(n); err != nil {
		d.p.fail(d.pos(n), path, err)
		return
	}
	*out = int64(s)
}

// durationOrZero is duration, but 0 (written 0 or 0s) is allowed too: it
// turns the setting off.
func (d *decoder) durationOrZero(n *yaml.Node, path string, out *time.Duration) {
	if v := resolve(n); v.Kind == yaml.ScalarNode {
		if z, err := time.ParseDuration(v.Value); (err == nil && z == 0) || v.Value == "0" {
			*out = 0
			return
		}
	}
	d.duration(n, path, out)
}

func (d *decoder) duration(n *yaml.Node, path string, out *time.Duration) {
	var v Duration
	if err := v.UnmarshalYAML(n); err != nil {
		d.p.fail(d.pos(n), path, err)
		return
	}
	*out = time.Duration(v)
}
