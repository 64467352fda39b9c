package policy

import (
	"fmt"
	"strings"
	"testing"
)

// ruleCase is a policy that breaks one rule, and the problem Parse must
// report for it.
type ruleCase struct {
	name string
	src  string
	path string // FieldError.Path wanted
	line int    // FieldError.Line wanted (0: the file as a whole)
	frag string // a fragment the message must contain
}

// py is a valid template body prefix: "templates:\n  python:\n", so a
// case's template fields start on line 3.
const py = "templates:\n  python:\n"

// ruleCases covers every validation rule of the policy format.
var ruleCases = []ruleCase{
	// Unknown and repeated fields.
	{"unknown top-level field", py + "    rootfs: default\ntemplate: x\n", "template", 4, `unknown field "template" (did you mean "templates"?)`},
	{"unknown field in limits", py + "    limits:\n      memroy: 1Gi\n", "templates.python.limits.memroy", 4, `unknown field "memroy" (did you mean "memory"?)`},
	{"unknown field in template", py + "    timeout: 5s\n", "templates.python.timeout", 3, "the fields allowed here are rootfs, network"},
	{"unknown field in host", "host:\n  sokcet: /x\n" + py, "host.sokcet", 2, `did you mean "socket"?`},
	{"unknown field in exec_timeout", py + "    exec_timeout:\n      maximum: 5m\n", "templates.python.exec_timeout.maximum", 4, "allowed here are default, max"},
	{"unknown field in pool", py + "pools:\n  - template: python\n    size: 3\n", "pools[0].size", 5, `unknown field "size"`},
	{"field set twice", py + "    lifetime: 1h\n    lifetime: 2h\n", "templates.python.lifetime", 4, "set twice (first on line 3)"},
	{"template defined twice", py + "    lifetime: 1h\n  python:\n    lifetime: 2h\n", "templates.python", 4, "set twice"},
	{"merge key", "base: &b {cpu: 2}\n" + py, "base", 1, `unknown field "base"`},
	{"merge key in limits", py + "    limits:\n      <<: {cpu: 2}\n", "templates.python.limits.<<", 4, "merge keys (<<) are not supported"},
	{"mapping expected", py + "    limits: 5\n", "templates.python.limits", 3, `must be a mapping with the fields cpu, memory`},
	{"list where mapping expected", "host: [1]\n" + py, "host", 1, "must be a mapping"},
	{"mapping key not a scalar", py + "    env:\n      [a]: b\n", "templates.python.env", 4, "a key must be a plain name"},

	// Sizes.
	{"negative size", py + "    limits:\n      disk: -1Gi\n", "templates.python.limits.disk", 4, `size "-1Gi" is negative`},
	{"size with MB suffix", py + "    limits:\n      memory: 512MB\n", "templates.python.limits.memory", 4, `unknown suffix "MB"; write 512Mi (mebibytes, 2^20 bytes) or 512M (megabytes`},
	{"fractional bytes", py + "    limits:\n      output: 1.5\n", "templates.python.limits.output", 4, "not a whole number of bytes"},
	{"size overflow", py + "    limits:\n      upload_total: 99999999Ti\n", "templates.python.limits.upload_total", 4, "too large"},
	{"size is a list", py + "    limits:\n      memory: [1]\n", "templates.python.limits.memory", 4, "must be a size such as 512Mi"},
	{"size is empty", py + "    limits:\n      memory:\n", "templates.python.limits.memory", 4, "got an empty value"},
	{"memory below minimum", py + "    limits:\n      memory: 64Mi\n", "templates.python.limits.memory", 4, "must be at least 128Mi, got 64Mi"},
	{"disk below minimum", py + "    limits:\n      disk: 1Mi\n", "templates.python.limits.disk", 4, "must be at least 16Mi, got 1Mi"},
	{"file_size zero", py + "    limits:\n      file_size: 0\n", "templates.python.limits.file_size", 4, "must be greater than 0"},
	{"images count over the cap", py + "    limits:\n      images: {count: 65}\n", "templates.python.limits.images.count", 4, "between 0 and 64"},
	{"images bytes over the cap", py + "    limits:\n      images: {bytes: 17Mi}\n", "templates.python.limits.images.bytes", 4, "between 0 and 16Mi"},
	{"images not a mapping", py + "    limits:\n      images: 8\n", "templates.python.limits.images", 4, "must be a mapping"},
	{"output zero", py + "    limits:\n      output: 0\n", "templates.python.limits.output", 4, "must be greater than 0"},
	{"upload_file zero", py + "    limits:\n      upload_file: 0\n", "templates.python.limits.upload_file", 4, "must be greater than 0"},
	{"upload_total zero", py + "    limits:\n      upload_total: 0\n", "templates.python.limits.upload_total", 4, "must be greater than 0"},
	{"upload_file above upload_total", py + "    limits:\n      upload_file: 8Gi\n", "templates.python.limits.upload_file", 4, "upload_file 8Gi is larger than upload_total 4Gi (the default)"},
	{"python_address_space below minimum", py + "    limits:\n      python_address_space: 1Mi\n", "templates.python.limits.python_address_space", 4, "must be 0 (no cap) or at least 64Mi, got 1Mi"},
	{"python_address_space not below default memory", py + "    limits:\n      python_address_space: 1Gi\n", "templates.python.limits.python_address_space", 4, "1Gi is not below memory 1Gi (the default)"},
	{"download_file above download_total", py + "    limits:\n      download_file: 32Gi\n", "templates.python.limits.download_file", 4, "download_file 32Gi is larger than download_total 16Gi (the default)"},
	{"download_total zero", py + "    limits:\n      download_total: 0\n", "templates.python.limits.download_total", 4, "must be greater than 0"},
	{"upload_total below default upload_file", py + "    limits:\n      upload_total: 512Mi\n", "templates.python.limits.upload_total", 4, "upload_file 1Gi (the default) is larger than upload_total 512Mi"},

	// CPU and counts.
	{"cpu zero", py + "    limits:\n      cpu: 0\n", "templates.python.limits.cpu", 4, "must be at least 0.01 (the kernel's smallest quota) and at most 64 cores, got 0"},
	{"cpu below the kernel's quota", py + "    limits:\n      cpu: 0.001\n", "templates.python.limits.cpu", 4, "must be at least 0.01"},
	{"cpu negative", py + "    limits:\n      cpu: -1\n", "templates.python.limits.cpu", 4, "got -1"},
	{"cpu above 64", py + "    limits:\n      cpu: 65\n", "templates.python.limits.cpu", 4, "at most 64 cores, got 65"},
	{"cpu not a number", py + "    limits:\n      cpu: lots\n", "templates.python.limits.cpu", 4, `must be a number of cores such as 1, 0.5 or 500m, got "lots"`},
	{"cpu nan", py + "    limits:\n      cpu: .nan\n", "templates.python.limits.cpu", 4, "must be a number of cores"},
	{"processes below minimum", py + "    limits:\n      processes: 7\n", "templates.python.limits.processes", 4, "must be between 8 and 65536, got 7"},
	{"processes above maximum", py + "    limits:\n      processes: 65537\n", "templates.python.limits.processes", 4, "must be between 8 and 65536, got 65537"},
	{"processes fractional", py + "    limits:\n      processes: 2.5\n", "templates.python.limits.processes", 4, `must be a whole number, got "2.5"`},
	{"processes overflow", py + "    limits:\n      processes: 99999999999999999999\n", "templates.python.limits.processes", 4, "too large"},
	{"open_files below minimum", py + "    limits:\n      open_files: 63\n", "templates.python.limits.open_files", 4, "must be between 64 and 1048576, got 63"},
	{"open_files above maximum", py + "    limits:\n      open_files: 1048577\n", "templates.python.limits.open_files", 4, "must be between 64 and 1048576"},

	// Durations.
	{"unparsable duration", py + "    exec_timeout:\n      default: 10 minutes\n", "templates.python.exec_timeout.default", 4, `invalid duration "10 minutes": use Go duration syntax`},
	{"duration without unit", py + "    lifetime: 3600\n", "templates.python.lifetime", 3, `has no unit: write 3600s for seconds`},
	{"negative duration", py + "    idle_timeout: -5m\n", "templates.python.idle_timeout", 3, "must be greater than 0, got -5m"},
	{"zero duration", py + "    lifetime: 0s\n", "templates.python.lifetime", 3, "must be greater than 0"},
	{"duration is a mapping", py + "    lifetime: {h: 1}\n", "templates.python.lifetime", 3, "must be a duration such as 90s"},
	{"exec default above max", py + "    exec_timeout:\n      default: 20m\n      max: 5m\n", "templates.python.exec_timeout.default", 4, "exec_timeout.default 20m is longer than exec_timeout.max 5m: lower default or raise max"},
	{"exec default above default max", py + "    exec_timeout:\n      default: 1h\n", "templates.python.exec_timeout.default", 4, "exec_timeout.max 10m (the default)"},
	{"exec max below default default", py + "    exec_timeout:\n      max: 30s\n", "templates.python.exec_timeout.max", 4, "exec_timeout.default 1m (the default) is longer than exec_timeout.max 30s"},
	{"idle_timeout above lifetime", py + "    lifetime: 1h\n    idle_timeout: 2h\n", "templates.python.idle_timeout", 4, "idle_timeout 2h is longer than lifetime 1h"},
	{"pause_after not below idle_timeout", py + "    idle_timeout: 10m\n    pause_after: 10m\n", "templates.python.pause_after", 4, "pause_after 10m is not shorter than idle_timeout 10m, so it could never fire"},
	{"pause_after negative", py + "    pause_after: -1m\n", "templates.python.pause_after", 3, "must be greater than 0"},
	{"max_paused_bytes too small", "host:\n  max_paused_bytes: 1Ki\n" + py, "host.max_paused_bytes", 2, "must be at least 1Mi"},
	{"shutdown_timeout zero", "host:\n  shutdown_timeout: 0s\n" + py, "host.shutdown_timeout", 2, "must be greater than 0"},

	// Template names, rootfs, network.
	{"uppercase template name", "templates:\n  Python: {}\n", "templates.Python", 2, `invalid template name "Python": use 1 to 63 lowercase letters, digits, '_' or '-', starting with a letter or digit, e.g. "python"`},
	{"template name starting with dash", "templates:\n  -x: {}\n", "templates.-x", 2, "invalid template name"},
	{"template name too long", "templates:\n  " + strings.Repeat("a", 64) + ": {}\n", "templates." + strings.Repeat("a", 64), 2, "1 to 63"},
	{"relative rootfs", py + "    rootfs: rootfs/out\n", "templates.python.rootfs", 3, `"rootfs/out" is not an absolute path: write "default"`},
	{"empty rootfs", py + "    rootfs: \"\"\n", "templates.python.rootfs", 3, "is not an absolute path"},
	{"network host", py + "    network: host\n", "templates.python.network", 3, `unknown network "host": write none (no network) or allowlist`},
	{"network typo", py + "    network: allowlst\n", "templates.python.network", 3, `unknown network "allowlst" (did you mean "allowlist"?)`},

	// Egress.
	{"allowlist without egress", py + "    network: allowlist\n", "templates.python.network", 3, "network: allowlist needs destinations in egress.allow"},
	{"allowlist with an empty list", py + "    network: allowlist\n    egress:\n      allow: []\n", "templates.python.network", 3, "needs destinations"},
	{"egress with network none", py + "    egress:\n      allow: [pypi.org]\n", "templates.python.egress.allow", 4, "network is none (the default), so none of them can be reached: set network: allowlist"},
	{"egress entry with two wildcards", py + "    network: allowlist\n    egress:\n      allow:\n        - pypi.org\n        - \"*.*.example.com\"\n", "templates.python.egress.allow[1]", 7, `egress entry "*.*.example.com" has a '*' that is not a whole first label`},
	{"egress entry bare address", py + "    network: allowlist\n    egress:\n      allow: [10.0.0.1]\n", "templates.python.egress.allow[0]", 5, "is an address, not a CIDR: write 10.0.0.1/32"},
	{"egress entry bad port", py + "    network: allowlist\n    egress:\n      allow: [\"pypi.org:https\"]\n", "templates.python.egress.allow[0]", 5, `has port "https": a port is a number from 1 to 65535`},
	{"egress entry twice", py + "    network: allowlist\n    egress:\n      allow: [pypi.org, \"PyPI.org.:80,443\"]\n", "templates.python.egress.allow[1]", 5, `"pypi.org" is listed twice (also at templates.python.egress.allow[0])`},
	{"egress entry not a string", py + "    network: allowlist\n    egress:\n      allow: [{host: pypi.org}]\n", "templates.python.egress.allow[0]", 5, "must be an egress entry such as pypi.org"},
	{"egress allow not a list", py + "    network: allowlist\n    egress:\n      allow: pypi.org\n", "templates.python.egress.allow", 5, "must be a list"},
	{"unknown field in egress", py + "    network: allowlist\n    egress:\n      allow: [pypi.org]\n      alow: [x.org]\n", "templates.python.egress.alow", 6, `unknown field "alow" (did you mean "allow"?)`},
	{"egress_bytes zero", py + "    limits:\n      egress_bytes: 0\n", "templates.python.limits.egress_bytes", 4, "must be greater than 0"},
	{"egress_bytes bad size", py + "    limits:\n      egress_bytes: 1GB\n", "templates.python.limits.egress_bytes", 4, `unknown suffix "GB"`},
	{"egress_connections zero", py + "    limits:\n      egress_connections: 0\n", "templates.python.limits.egress_connections", 4, "must be between 1 and 1024, got 0"},
	{"egress_connections above the cap", py + "    limits:\n      egress_connections: 1025\n", "templates.python.limits.egress_connections", 4, "must be between 1 and 1024, got 1025"},
	{"tenant negative egress_bytes", py + "tenants:\n  a:\n    tokens: [" + strings.Repeat("ab", 32) + "]\n    limits: {egress_bytes: -1}\n", "tenants.a.limits.egress_bytes", 6, "is negative"},
	{"tenant negative egress_connections", py + "tenants:\n  a:\n    tokens: [" + strings.Repeat("ab", 32) + "]\n    limits: {egress_connections: -1}\n", "tenants.a.limits.egress_connections", 6, "must not be negative"},

	// Environment and warm imports.
	{"env key starting with a digit", py + "    env:\n      1BAD: x\n", "templates.python.env.1BAD", 4, `invalid variable name "1BAD"`},
	{"env key with dash", py + "    env:\n      MY-VAR: x\n", "templates.python.env.MY-VAR", 4, "use letters, digits and '_'"},
	{"env value with NUL", py + "    env:\n      A: \"x\\0y\"\n", "templates.python.env.A", 4, "NUL byte"},
	{"env value empty", py + "    env:\n      A:\n", "templates.python.env.A", 4, `write A: "" for an empty variable`},
	{"env is a list", py + "    env: [A]\n", "templates.python.env", 3, "must be a mapping of environment variables"},
	{"warm import with import keyword", py + "    warm_imports: [numpy, import pandas]\n", "templates.python.warm_imports[1]", 3, `"import pandas" is not a Python module name`},
	{"warm import with dash", py + "    warm_imports:\n      - scikit-learn\n", "templates.python.warm_imports[0]", 4, "not a Python module name"},
	{"warm import trailing dot", py + "    warm_imports: [numpy.]\n", "templates.python.warm_imports[0]", 3, "not a Python module name"},
	{"warm import twice", py + "    warm_imports: [numpy, numpy]\n", "templates.python.warm_imports[1]", 3, `"numpy" is listed twice (also at templates.python.warm_imports[0])`},
	{"warm_imports not a list", py + "    warm_imports: numpy\n", "templates.python.warm_imports", 3, "must be a list"},

	// Host.
	{"max_sandboxes zero", "host:\n  max_sandboxes: 0\n" + py, "host.max_sandboxes", 2, "must be at least 1, got 0"},
	{"listen_tcp on all interfaces", "host:\n  listen_tcp: 0.0.0.0:7070\n" + py, "host.listen_tcp", 2, "0.0.0.0:7070 is not a loopback address: serving the API there needs TLS"},
	{"listen_tcp without host", "host:\n  listen_tcp: \":7070\"\n" + py, "host.listen_tcp", 2, ":7070 is not a loopback address: serving the API there needs TLS"},
	{"listen_tcp public address", "host:\n  listen_tcp: \"[2001:db8::1]:7070\"\n" + py, "host.listen_tcp", 2, "callers that authenticate (tenants with tokens, or host.tls.client_ca_file"},
	{"listen_tcp hostname", "host:\n  listen_tcp: example.com:7070\n" + py, "host.listen_tcp", 2, "example.com:7070 is not a loopback address"},
	{"listen_tcp public with TLS but no auth", "host:\n  listen_tcp: 0.0.0.0:7070\n  tls: {cert_file: /c.pem, key_file: /k.pem}\n" + py, "host.listen_tcp", 2, "callers that authenticate"},
	{"tls cert without key", "host:\n  tls: {cert_file: /c.pem}\n" + py, "host.tls", 2, "set both"},
	{"tls client CA without cert", "host:\n  tls: {client_ca_file: /ca.pem}\n" + py, "host.tls.client_ca_file", 2, "needs cert_file"},
	{"tls relative path", "host:\n  tls: {cert_file: c.pem, key_file: /k.pem}\n" + py, "host.tls.cert_file", 2, "relative path"},
	{"audit log relative", "host:\n  audit_log: audit.log\n" + py, "host.audit_log", 2, "relative path"},
	{"audit log tiny rotation", "host:\n  audit_log_max_bytes: 1Ki\n" + py, "host.audit_log_max_bytes", 2, "at least 1Mi"},
	{"tenant token not a hash", py + "tenants:\n  a:\n    tokens: [secret]\n", "tenants.a.tokens[0]", 5, "never the token itself"},
	{"tenant token twice", py + "tenants:\n  a:\n    tokens: [" + strings.Repeat("ab", 32) + "]\n  b:\n    tokens: [sha256:" + strings.Repeat("ab", 32) + "]\n", "tenants.b.tokens[0]", 7, "also authenticates tenant \"a\""},
	{"tenant unknown template", py + "tenants:\n  a:\n    tokens: [" + strings.Repeat("ab", 32) + "]\n    templates: [gpu]\n", "tenants.a.templates", 6, "template \"gpu\" is not defined"},
	{"tenant without credentials", py + "tenants:\n  a:\n    max_sandboxes: 2\n", "tenants.a", 4, "no way to authenticate"},
	{"tenant uid twice", py + "tenants:\n  a:\n    unix: {uids: [1000]}\n  b:\n    unix: {uids: [1000]}\n", "tenants.b.unix.uids", 7, "also names tenant \"a\""},
	{"tenant negative quota", py + "tenants:\n  a:\n    tokens: [" + strings.Repeat("ab", 32) + "]\n    max_sandboxes: -1\n", "tenants.a.max_sandboxes", 6, "must be 0"},
	{"listen_tcp without port", "host:\n  listen_tcp: 127.0.0.1\n" + py, "host.listen_tcp", 2, "write HOST:PORT"},
	{"listen_tcp port zero", "host:\n  listen_tcp: 127.0.0.1:0\n" + py, "host.listen_tcp", 2, "port number from 1 to 65535"},
	{"metrics_listen not loopback", "host:\n  metrics_listen: 10.0.0.1:9090\n" + py, "host.metrics_listen", 2, "only loopback is allowed (the metrics listener has no authentication)"},
	{"metrics_listen same as listen_tcp", "host:\n  listen_tcp: 127.0.0.1:7070\n  metrics_listen: 127.0.0.1:7070\n" + py, "host.metrics_listen", 3, "same address as host.listen_tcp"},
	{"relative socket", "host:\n  socket: sandboxd.sock\n" + py, "host.socket", 2, "is a relative path"},
	{"empty socket", "host:\n  socket: \"\"\n" + py, "host.socket", 2, "must not be empty: leave the field out to use /run/sandboxd/sandboxd.sock"},
	{"socket too long", "host:\n  socket: /" + strings.Repeat("s", 120) + "\n" + py, "host.socket", 2, "at most 107"},

	// Templates and default_template.
	{"no templates field", "host:\n  max_sandboxes: 4\n", "templates", 1, "missing: a policy needs at least one template"},
	{"empty templates", "templates: {}\n", "templates", 1, "no templates defined"},
	{"templates is a list", "templates: [python]\n", "templates", 1, "must be a mapping of templates by name"},
	{"missing default_template with two templates", "templates:\n  python: {}\n  r: {}\n", "default_template", 1, "missing: with more than one template (python, r) the policy must say which one"},
	{"unknown default_template", "default_template: pyton\ntemplates:\n  python: {}\n  r: {}\n", "default_template", 1, `unknown template "pyton" (did you mean "python"?): the templates defined are python, r`},
	{"empty default_template", "default_template:\n" + py, "default_template", 1, "must be a string, got an empty value"},

	// Pools.
	{"pool names unknown template", py + "pools:\n  - template: pyton\n", "pools[0].template", 4, `unknown template "pyton" (did you mean "python"?)`},
	{"pool without template", py + "pools:\n  - idle: 1\n", "pools[0]", 4, "missing template: add `template: NAME` naming one of python"},
	{"two pools for one template", py + "pools:\n  - template: python\n  - template: python\n", "pools[1].template", 5, `template "python" already has a pool (pools[0])`},
	{"idle above max_total", py + "pools:\n  - template: python\n    idle: 5\n    max_total: 4\n", "pools[0].idle", 5, "idle 5 is larger than max_total 4"},
	{"default idle above max_total", py + "pools:\n  - template: python\n    max_total: 1\n", "pools[0].max_total", 5, "idle 2 (the default) is larger than max_total 1"},
	{"max_total above host max", "host:\n  max_sandboxes: 4\n" + py + "pools:\n  - template: python\n    max_total: 6\n", "pools[0].max_total", 7, "max_total 6 is larger than host.max_sandboxes 4"},
	{"default max_total above host max", "host:\n  max_sandboxes: 4\n" + py + "pools:\n  - template: python\n", "pools[0].max_total", 6, "max_total 8 (the default) is larger than host.max_sandboxes 4"},
	{"negative idle", py + "pools:\n  - template: python\n    idle: -1\n", "pools[0].idle", 5, "must be 0 or more, got -1"},
	{"max_total zero", py + "pools:\n  - template: python\n    idle: 0\n    max_total: 0\n", "pools[0].max_total", 6, "must be at least 1, got 0"},
	{"max_booting zero", py + "pools:\n  - template: python\n    max_booting: 0\n", "pools[0].max_booting", 5, "must be at least 1, got 0"},
	{"idle sum above host max", "host:\n  max_sandboxes: 4\ndefault_template: a\ntemplates:\n  a: {}\n  b: {}\npools:\n  - {template: a, idle: 3, max_total: 4}\n  - {template: b, idle: 3, max_total: 4}\n",
		"pools", 7, "the pools keep 6 idle sandboxes in total (a 3 + b 3), more than host.max_sandboxes 4"},
	{"pool is not a mapping", py + "pools:\n  - python\n", "pools[0]", 4, "a pool must be a mapping with at least `template: NAME`"},
	{"pools is a mapping", py + "pools:\n  python: {idle: 1}\n", "pools", 3, "must be a list"},

	// The file as a whole.
	{"empty file", "", "", 0, "the file is empty"},
	{"only comments", "# nothing here\n", "", 0, "the file is empty"},
	{"null document", "~\n", "", 1, "the policy is empty"},
	{"top level is a list", "- python\n", "", 1, "the top level must be a mapping"},
	{"multiple documents", py + "    lifetime: 1h\n---\n" + py, "", 4, "a second YAML document starts here"},
	{"empty second document", py + "    lifetime: 1h\n---\n", "", 4, "a second YAML document"},
	{"syntax error", py + "    limits: [1\n", "", 3, "invalid YAML"},
	{"tab indentation", "templates:\n\tpython: {}\n", "", 2, "YAML must be indented with spaces"},
}

// TestValidationRules guarantees that every validation rule of the format
// is enforced, and that its problem is reported at the right field path
// and line, with a message saying what to change.
func TestValidationRules(t *testing.T) {
	for _, tc := range ruleCases {
		t.Run(tc.name, func(t *testing.T) {
			errs := parseErrors(t, tc.src)
			e, ok := findError(errs, tc.path, tc.frag)
			if !ok {
				t.Fatalf("no problem at path %q containing %q; got:\n%s", tc.path, tc.frag, dump(errs))
			}
			if e.Line != tc.line {
				t.Errorf("problem %q at line %d, want %d", e.Error(), e.Line, tc.line)
			}
			if e.Source != "test.yaml" {
				t.Errorf("Source = %q, want test.yaml", e.Source)
			}
		})
	}
}

// TestValidationRulesReportOnlyTheirProblem guarantees that breaking one
// rule produces no unrelated complaints, such as a cross-field check
// tripping over a value that failed to parse, so a user is not sent after
// problems that are not there.
func TestValidationRulesReportOnlyTheirProblem(t *testing.T) {
	for _, tc := range ruleCases {
		t.Run(tc.name, func(t *testing.T) {
			errs := parseErrors(t, tc.src)
			if len(errs) != 1 {
				t.Errorf("got %d problems, want 1:\n%s", len(errs), dump(errs))
			}
		})
	}
}

// TestMultipleErrorsReportedTogether guarantees that Parse lists every
// problem in a file at once, in file order, and that the error text has
// one "FILE:LINE: PATH: MSG" line per problem.
func TestMultipleErrorsReportedTogether(t *testing.T) {
	src := `host:
  max_sandboxes: 0
  bogus: 1
templates:
  python:
    network: bridge
    limits:
      memory: 512MB
      disk: -1Gi
    exec_timeout:
      default: 10 minutes
pools:
  - template: nope
`
	errs := parseErrors(t, src)
	want := []struct {
		line int
		path string
	}{
		{2, "host.max_sandboxes"},
		{3, "host.bogus"},
		{6, "templates.python.network"},
		{8, "templates.python.limits.memory"},
		{9, "templates.python.limits.disk"},
		{11, "templates.python.exec_timeout.default"},
		{13, "pools[0].template"},
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(errs), len(want), dump(errs))
	}
	for i, w := range want {
		if errs[i].Line != w.line || errs[i].Path != w.path {
			t.Errorf("problem %d is %s:%d %s, want line %d path %s", i, errs[i].Source, errs[i].Line, errs[i].Path, w.line, w.path)
		}
	}
	_, err := Parse([]byte(src), "test.yaml")
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("Error() has %d lines, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		prefix := fmt.Sprintf("test.yaml:%d: %s: ", w.line, w.path)
		if !strings.HasPrefix(lines[i], prefix) {
			t.Errorf("line %d of Error() = %q, want prefix %q", i, lines[i], prefix)
		}
	}
}

// TestFieldErrorFormat guarantees the documented "FILE:LINE: PATH: MSG"
// format, and how it shortens when the line or path is unknown.
func TestFieldErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    FieldError
		want string
	}{
		{FieldError{"p.yaml", 7, "templates.python.limits.memory", "must be at least 128Mi, got 64Mi"}, "p.yaml:7: templates.python.limits.memory: must be at least 128Mi, got 64Mi"},
		{FieldError{"p.yaml", 0, "", "the file is empty"}, "p.yaml: the file is empty"},
		{FieldError{"p.yaml", 3, "", "invalid YAML: x"}, "p.yaml:3: invalid YAML: x"},
		{FieldError{"", 3, "host", "m"}, "line 3: host: m"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

// TestEgressProblemsAtTheirEntries guarantees that each egress entry's
// problem is reported at that entry's own index, also after an entry that
// failed to parse.
func TestEgressProblemsAtTheirEntries(t *testing.T) {
	errs := parseErrors(t, py+"    network: allowlist\n    egress:\n      allow: [\"*x\", pypi.org, pypi.org]\n")
	if len(errs) != 2 || errs[0].Path != "templates.python.egress.allow[0]" || errs[1].Path != "templates.python.egress.allow[2]" ||
		!contains(errs[1].Msg, "also at templates.python.egress.allow[1]") {
		t.Errorf("got %s, want the bad entry at [0] and the repeat at [2]", dump(errs))
	}
}
