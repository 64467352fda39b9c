package manager

import (
	"bytes"
	"errors"
	"math"
	"path"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sandboxd/sandboxd/policy"
	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"github.com/sandboxd/sandboxd/runtime/errdefs"
	"github.com/sandboxd/sandboxd/runtime/identifiers"
)

// wantInvalid fails the fuzz case unless err is an InvalidArgument error:
// a refused request must tell the client to fix it, not look like the
// daemon's fault.
func wantInvalid(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("%s: %v, want InvalidArgument", what, err)
	}
}

// FuzzCheckEdit guarantees that checkEdit accepts exactly the EditFile
// requests with a known command, at most MaxEditText bytes of text, a
// view_range of none or two numbers, max_characters in 0 to
// MaxViewCharacters and a non-negative insert_line, and refuses every
// other with InvalidArgument.
func FuzzCheckEdit(f *testing.F) {
	f.Add(int32(sandboxv1.EditCommand_EDIT_COMMAND_VIEW), "", "", "", int32(0), uint8(0), int32(0), int32(0), int32(0))
	f.Add(int32(sandboxv1.EditCommand_EDIT_COMMAND_VIEW), "", "", "", int32(0), uint8(2), int32(3), int32(-1), int32(MaxViewCharacters))
	f.Add(int32(sandboxv1.EditCommand_EDIT_COMMAND_VIEW), "", "", "", int32(0), uint8(1), int32(3), int32(0), int32(0))
	f.Add(int32(sandboxv1.EditCommand_EDIT_COMMAND_VIEW), "", "", "", int32(0), uint8(3), int32(1), int32(2), int32(MaxViewCharacters+1))
	f.Add(int32(sandboxv1.EditCommand_EDIT_COMMAND_CREATE), "print(1)\n", "", "", int32(0), uint8(0), int32(0), int32(0), int32(-1))
	f.Add(int32(sandboxv1.EditCommand_EDIT_COMMAND_STR_REPLACE), "", "old", "new", int32(0), uint8(0), int32(0), int32(0), int32(0))
	f.Add(int32(sandboxv1.EditCommand_EDIT_COMMAND_INSERT), "", "", "line\n", int32(-1), uint8(0), int32(0), int32(0), int32(0))
	f.Add(int32(0), "", "", "", int32(0), uint8(0), int32(0), int32(0), int32(0))
	f.Add(int32(99), "", "", "", int32(0), uint8(0), int32(0), int32(0), int32(0))
	f.Add(int32(-1), "", "", "", int32(math.MaxInt32), uint8(0), int32(0), int32(0), int32(math.MinInt32))
	f.Fuzz(func(t *testing.T, command int32, fileText, oldStr, newStr string, insertLine int32, rangeLen uint8, first, last, maxChars int32) {
		req := &sandboxv1.EditFileRequest{
			Command: sandboxv1.EditCommand(command), FileText: fileText, OldStr: oldStr, NewStr: newStr,
			InsertLine: insertLine, MaxCharacters: maxChars,
		}
		for i := range int(rangeLen % 4) {
			req.ViewRange = append(req.ViewRange, []int32{first, last}[i%2])
		}
		known := false
		switch req.Command {
		case sandboxv1.EditCommand_EDIT_COMMAND_VIEW, sandboxv1.EditCommand_EDIT_COMMAND_CREATE,
			sandboxv1.EditCommand_EDIT_COMMAND_STR_REPLACE, sandboxv1.EditCommand_EDIT_COMMAND_INSERT:
			known = true
		}
		want := known && len(fileText)+len(oldStr)+len(newStr) <= MaxEditText &&
			(len(req.ViewRange) == 0 || len(req.ViewRange) == 2) &&
			maxChars >= 0 && maxChars <= MaxViewCharacters && insertLine >= 0
		err := checkEdit(req)
		switch {
		case err != nil:
			wantInvalid(t, "checkEdit", err)
			if want {
				t.Fatalf("checkEdit refused a valid request %v: %v", req, err)
			}
		case !want:
			t.Fatalf("checkEdit accepted an invalid request %v", req)
		}
	})
}

// FuzzDirPath guarantees that a directory path from a client (ListFiles,
// an EditFile VIEW) is refused with InvalidArgument or comes back as the
// workspace, the root, or a clean path that SandboxPath accepts as well:
// without NUL, at most MaxPathLength bytes, and inside /workspace when
// relative.
func FuzzDirPath(f *testing.F) {
	for _, p := range []string{"", ".", "/", "./", "//", "/..", "a/..", "sub", "sub/dir/", "/etc", "..", "../x", "a\x00b", "/\x00", "\x00/..",
		strings.Repeat("/", identifiers.MaxPathLength+1), strings.Repeat("a/../", 1000)} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, err := dirPath(p)
		if err != nil {
			wantInvalid(t, "dirPath("+strconv.Quote(p)+")", err)
			return
		}
		if got == identifiers.Workspace || got == "/" {
			return
		}
		switch {
		case strings.ContainsRune(got, 0) || len(got) > identifiers.MaxPathLength || path.Clean(got) != got:
			t.Fatalf("dirPath(%q) = %q: not a clean path of at most %d bytes without NUL", p, got, identifiers.MaxPathLength)
		case !path.IsAbs(got) && (got == "." || got == ".." || strings.HasPrefix(got, "../")):
			t.Fatalf("dirPath(%q) = %q is not inside %s", p, got, identifiers.Workspace)
		}
		if again, err := identifiers.SandboxPath(got); err != nil || again != got {
			t.Fatalf("dirPath(%q) = %q, which SandboxPath turns into %q, %v", p, got, again, err)
		}
	})
}

// validEnvName is the rule for environment variable names written out, as
// the fuzzers' oracle.
func validEnvName(k string) bool {
	for i, c := range []byte(k) {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return k != ""
}

// fuzzEnv makes an Exec environment from a fuzz input: its lines as
// NAME=value, then extra generated variables (to cross MaxEnvEntries) and
// a variable of pad bytes (to cross MaxEnvBytes).
func fuzzEnv(data string, extra, pad uint16) map[string]string {
	env := map[string]string{}
	if data != "" {
		for _, line := range strings.Split(data, "\n") {
			k, v, _ := strings.Cut(line, "=")
			env[k] = v
		}
	}
	for i := range int(extra % (2 * MaxEnvEntries)) {
		env["GEN_"+strconv.Itoa(i)] = ""
	}
	if pad > 0 {
		env["PAD"] = strings.Repeat("x", int(pad)*2)
	}
	return env
}

// FuzzCheckEnv guarantees that checkEnv accepts exactly the environments
// of at most MaxEnvEntries variables and MaxEnvBytes bytes, with names of
// letters, digits and '_' not starting with a digit and values without
// NUL, and refuses every other with InvalidArgument.
func FuzzCheckEnv(f *testing.F) {
	f.Add("A_1=x\n_b=", uint16(0), uint16(0))
	f.Add("=x", uint16(0), uint16(0))
	f.Add("1A=x", uint16(0), uint16(0))
	f.Add("A-B=x", uint16(0), uint16(0))
	f.Add("A=x\x00y", uint16(0), uint16(0))
	f.Add("PATH=/bin\nLD_PRELOAD=/x.so", uint16(0), uint16(0))
	f.Add("", uint16(MaxEnvEntries), uint16(0))
	f.Add("A=1", uint16(MaxEnvEntries), uint16(0))
	f.Add("", uint16(0), uint16(MaxEnvBytes/2-1))
	f.Add("", uint16(0), uint16(MaxEnvBytes/2))
	f.Add("É=1", uint16(0), uint16(0))
	f.Fuzz(func(t *testing.T, data string, extra, pad uint16) {
		env := fuzzEnv(data, extra, pad)
		want := len(env) <= MaxEnvEntries
		size := 0
		for k, v := range env {
			want = want && validEnvName(k) && !strings.ContainsRune(v, 0)
			size += len(k) + len(v)
		}
		want = want && size <= MaxEnvBytes
		err := checkEnv(env)
		switch {
		case err != nil:
			wantInvalid(t, "checkEnv", err)
			if want {
				t.Fatalf("checkEnv refused a valid environment of %d variables, %d bytes: %v", len(env), size, err)
			}
		case !want:
			t.Fatalf("checkEnv accepted an invalid environment of %d variables, %d bytes", len(env), size)
		}
	})
}

// FuzzCheckExec guarantees that checkExec refuses a bad Exec request with
// InvalidArgument, and that an accepted one has a known language, code,
// stdin, environment and workdir within bounds, and a timeout in (0, the
// template's exec_timeout.max]: the one asked for, or the template's
// default when none was.
func FuzzCheckExec(f *testing.F) {
	py, bash := int32(sandboxv1.Language_LANGUAGE_PYTHON), int32(sandboxv1.Language_LANGUAGE_BASH)
	f.Add(py, "print(1)", "", "", "", false, int64(0), int32(0))
	f.Add(bash, "echo hi", "input", "sub/dir", "A=1", true, int64(5), int32(0))
	f.Add(int32(sandboxv1.Language_LANGUAGE_BASH_SESSION), "cd /tmp", "", "/tmp", "", true, int64(0), int32(1))
	f.Add(int32(0), "1", "", "", "", false, int64(0), int32(0))
	f.Add(int32(42), "1", "", "", "", false, int64(0), int32(0))
	f.Add(py, "1", "", "../..", "", false, int64(0), int32(0))
	f.Add(py, "1", "", "", "1BAD=x", false, int64(0), int32(0))
	f.Add(py, "1", "", "", "", true, int64(0), int32(0))
	f.Add(py, "1", "", "", "", true, int64(-1), int32(0))
	f.Add(py, "1", "", "", "", true, int64(600), int32(0))
	f.Add(py, "1", "", "", "", true, int64(600), int32(1))
	f.Add(py, "1", "", "", "", true, int64(1), int32(-5))
	f.Add(py, "1", "", "", "", true, int64(1), int32(1_000_000_000))
	f.Add(py, "1", "", "", "", true, int64(math.MaxInt64), int32(999_999_999))
	tmpl, err := policy.Default().Template("")
	if err != nil {
		f.Fatal(err)
	}
	e := &entry{id: "sb-fuzz", tmpl: tmpl}
	f.Fuzz(func(t *testing.T, lang int32, code, stdin, workdir, env string, hasTimeout bool, seconds int64, nanos int32) {
		req := &sandboxv1.ExecRequest{
			Language: sandboxv1.Language(lang), Code: code, Stdin: []byte(stdin), Workdir: workdir, Env: fuzzEnv(env, 0, 0),
		}
		if hasTimeout {
			req.Timeout = &durationpb.Duration{Seconds: seconds, Nanos: nanos}
		}
		got, err := checkExec(req, e)
		if err != nil {
			wantInvalid(t, "checkExec", err)
			return
		}
		switch req.Language {
		case sandboxv1.Language_LANGUAGE_PYTHON, sandboxv1.Language_LANGUAGE_BASH, sandboxv1.Language_LANGUAGE_BASH_SESSION:
		default:
			t.Fatalf("checkExec accepted language %v", req.Language)
		}
		if len(code) > MaxCodeBytes || len(stdin) > MaxStdinBytes || checkEnv(req.Env) != nil {
			t.Fatalf("checkExec accepted code, stdin or env beyond the bounds: %d, %d bytes, env %q", len(code), len(stdin), req.Env)
		}
		if _, err := identifiers.SandboxPath(workdir); workdir != "" && err != nil {
			t.Fatalf("checkExec accepted workdir %q: %v", workdir, err)
		}
		want := tmpl.ExecTimeout.Default
		if hasTimeout {
			want = req.Timeout.AsDuration()
		}
		if got != want || got <= 0 || got > tmpl.ExecTimeout.Max {
			t.Fatalf("checkExec timeout %v for %v, want %v within (0, %v]", got, req.Timeout, want, tmpl.ExecTimeout.Max)
		}
	})
}

// fuzzTemplates are the templates FuzzLower lowers: the default policy's
// and a tight one with a Python address-space cap and a zero image count.
func fuzzTemplates(f *testing.F) []*policy.Template {
	const tight = `
templates:
  tight:
    limits:
      cpu: 0.5
      memory: 256Mi
      disk: 64Mi
      processes: 64
      open_files: 256
      file_size: 16Mi
      output: 1Mi
      upload_file: 1Mi
      upload_total: 8Mi
      download_file: 2Mi
      download_total: 4Mi
      python_address_space: 192Mi
      images: {count: 0, bytes: 1Mi}
    exec_timeout: {default: 10s, max: 30s}
    lifetime: 5m
    idle_timeout: 1m
`
	p, err := policy.Parse([]byte(tight), "fuzz-tight.yaml")
	if err != nil {
		f.Fatal(err)
	}
	var out []*policy.Template
	for _, pol := range []*policy.Policy{policy.Default(), p} {
		for _, name := range pol.TemplateNames() {
			out = append(out, pol.Templates[name])
		}
	}
	return out
}

// FuzzLower guarantees that request overrides, whatever they are, never
// raise a template's limit: lower either refuses them with InvalidArgument
// (always when one is negative, NaN or above the template's) or returns
// limits each at most the template's, at least the minimum a sandbox
// needs, and consistent (exec default <= max, idle <= lifetime, per-file
// <= total, Python's cap below memory). A set override is kept as asked, a
// zero one keeps the template's value unless a lowered bound pulls it
// down; repeating the template's own values changes nothing; atBoot says
// exactly whether a boot-time limit changed; the template is not touched.
func FuzzLower(f *testing.F) {
	templates := fuzzTemplates(f)
	def := templates[0]
	l := def.Limits
	f.Add(uint8(0), 0.0, int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0))
	f.Add(uint8(0), l.CPU, l.Memory, l.Disk, l.FileSize, l.Output, l.UploadFile, l.UploadTotal, l.DownloadFile, l.DownloadTotal,
		l.PythonAddressSpace, int64(l.Processes), int64(l.OpenFiles), int64(l.Images.Count), l.Images.Bytes,
		int64(def.ExecTimeout.Max), int64(def.ExecTimeout.Default), int64(def.Lifetime), int64(def.IdleTimeout))
	f.Add(uint8(0), 0.5, int64(512<<20), int64(0), int64(0), int64(1<<20), int64(0), int64(1<<20), int64(0), int64(0), int64(384<<20), int64(0), int64(0), int64(0), int64(0), int64(5*time.Second), int64(0), int64(time.Minute), int64(0))
	f.Add(uint8(0), 4.0, int64(2<<30), int64(-1), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(1), int64(0), int64(0), int64(0), int64(time.Hour), int64(0), int64(0), int64(0))
	f.Add(uint8(0), math.NaN(), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0))
	f.Add(uint8(0), 0.0, int64(256<<20), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(512<<20), int64(0), int64(0), int64(0), int64(0), int64(5*time.Second), int64(10*time.Second), int64(0), int64(0))
	f.Add(uint8(1), 0.0, int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(1), int64(0), int64(0), int64(0), int64(0), int64(0))
	f.Add(uint8(1), 0.25, int64(128<<20), int64(16<<20), int64(1), int64(1), int64(1), int64(1), int64(1), int64(1), int64(64<<20), int64(8), int64(64), int64(0), int64(1), int64(1), int64(1), int64(1), int64(1))
	f.Add(uint8(1), math.Inf(1), int64(math.MaxInt64), int64(math.MinInt64), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(math.MaxInt64), int64(math.MinInt64), int64(math.MaxInt64), int64(0), int64(0), int64(math.MinInt64), int64(0), int64(0), int64(0))
	f.Fuzz(func(t *testing.T, which uint8, cpu float64, memory, disk, fileSize, output, uploadFile, uploadTotal, downloadFile, downloadTotal,
		pythonAS, processes, openFiles, images, imageBytes, execMax, execDefault, lifetime, idle int64) {
		tmpl := templates[int(which)%len(templates)]
		before := *tmpl
		o := Limits{
			Limits: policy.Limits{
				CPU: cpu, Memory: memory, Disk: disk, FileSize: fileSize, Output: output,
				UploadFile: uploadFile, UploadTotal: uploadTotal, DownloadFile: downloadFile, DownloadTotal: downloadTotal,
				PythonAddressSpace: pythonAS, Processes: int(processes), OpenFiles: int(openFiles),
				Images: policy.ImageLimits{Count: int(images), Bytes: imageBytes},
			},
			ExecTimeout: policy.ExecTimeout{Max: time.Duration(execMax), Default: time.Duration(execDefault)},
			Lifetime:    time.Duration(lifetime), IdleTimeout: time.Duration(idle),
		}
		got, atBoot, err := lower(tmpl, o)
		if !reflect.DeepEqual(before, *tmpl) {
			t.Fatalf("lower changed template %q: %+v, was %+v", tmpl.Name, *tmpl, before)
		}
		fields := asked(overrideFields(tmpl, o))
		if err != nil {
			wantInvalid(t, "lower", err)
			if got != nil {
				t.Fatalf("lower refused with %v but returned %+v", err, got)
			}
			if repeatsTemplate(fields) {
				t.Fatalf("lower refused overrides that repeat template %q's own values: %v", tmpl.Name, err)
			}
			return
		}
		for _, fl := range fields {
			if fl.asked < 0 || fl.asked > fl.template || math.IsNaN(fl.asked) {
				t.Fatalf("lower accepted %s = %v, template %q has %v", fl.name, fl.asked, tmpl.Name, fl.template)
			}
		}
		if repeatsTemplate(fields) && (!reflect.DeepEqual(*got, *tmpl) || atBoot) {
			t.Fatalf("overrides that repeat template %q's values changed it: %+v (atBoot %v)", tmpl.Name, *got, atBoot)
		}
		for _, fl := range overrideFields(tmpl, limitsOf(got)) {
			uncapped := fl.name == "python_address_space" && fl.asked == 0
			if fl.asked > fl.template || fl.asked < 0 || uncapped && !math.IsInf(fl.template, 1) {
				t.Fatalf("lower raised %s of template %q from %v to %v", fl.name, tmpl.Name, fl.template, fl.asked)
			}
		}
		wantConsistent(t, tmpl, got, o)
		gl, tl := got.Limits, tmpl.Limits
		boot := gl.CPU != tl.CPU || gl.Memory != tl.Memory || gl.Disk != tl.Disk || gl.FileSize != tl.FileSize ||
			gl.Processes != tl.Processes || gl.OpenFiles != tl.OpenFiles || gl.PythonAddressSpace != tl.PythonAddressSpace
		if atBoot != boot {
			t.Fatalf("lower said atBoot %v, but boot-time limits changed: %v", atBoot, boot)
		}
		if got.Name != tmpl.Name || got.Rootfs != tmpl.Rootfs || got.PauseAfter != tmpl.PauseAfter || got.Snapshot != tmpl.Snapshot ||
			!reflect.DeepEqual(got.Env, tmpl.Env) || !reflect.DeepEqual(got.WarmImports, tmpl.WarmImports) {
			t.Fatalf("lower changed more than limits: %+v from %+v", *got, *tmpl)
		}
	})
}

// overrideField is one limit as asked for (or as it came out of lower)
// against the template's, as numbers; the template's Python address-space
// cap of 0 (none) counts as the largest.
type overrideField struct {
	name            string
	asked, template float64
}

func overrideFields(t *policy.Template, o Limits) []overrideField {
	tl, ol := t.Limits, o.Limits
	pythonAS := math.Inf(1) // no cap
	if tl.PythonAddressSpace != 0 {
		pythonAS = float64(tl.PythonAddressSpace)
	}
	return []overrideField{
		{"cpu", ol.CPU, tl.CPU},
		{"memory", float64(ol.Memory), float64(tl.Memory)},
		{"disk", float64(ol.Disk), float64(tl.Disk)},
		{"file_size", float64(ol.FileSize), float64(tl.FileSize)},
		{"output", float64(ol.Output), float64(tl.Output)},
		{"upload_file", float64(ol.UploadFile), float64(tl.UploadFile)},
		{"upload_total", float64(ol.UploadTotal), float64(tl.UploadTotal)},
		{"download_file", float64(ol.DownloadFile), float64(tl.DownloadFile)},
		{"download_total", float64(ol.DownloadTotal), float64(tl.DownloadTotal)},
		{"processes", float64(ol.Processes), float64(tl.Processes)},
		{"open_files", float64(ol.OpenFiles), float64(tl.OpenFiles)},
		{"images.count", float64(ol.Images.Count), float64(tl.Images.Count)},
		{"images.bytes", float64(ol.Images.Bytes), float64(tl.Images.Bytes)},
		{"python_address_space", float64(ol.PythonAddressSpace), pythonAS},
		{"exec_timeout.max", float64(o.ExecTimeout.Max), float64(t.ExecTimeout.Max)},
		{"exec_timeout.default", float64(o.ExecTimeout.Default), float64(t.ExecTimeout.Default)},
		{"lifetime", float64(o.Lifetime), float64(t.Lifetime)},
		{"idle_timeout", float64(o.IdleTimeout), float64(t.IdleTimeout)},
	}
}

// asked keeps the fields an override sets: 0 asks for nothing.
func asked(fields []overrideField) []overrideField {
	var set []overrideField
	for _, fl := range fields {
		if fl.asked != 0 {
			set = append(set, fl)
		}
	}
	return set
}

// repeatsTemplate reports whether every override asks for exactly the
// template's value (a Python cap only counts where the template has one).
func repeatsTemplate(fields []overrideField) bool {
	for _, fl := range fields {
		if fl.asked != fl.template {
			return false
		}
	}
	return true
}

// wantConsistent checks the limits lower returned against each other, the
// minimums and the overrides asked for.
func wantConsistent(t *testing.T, tmpl, got *policy.Template, o Limits) {
	t.Helper()
	l := got.Limits
	switch {
	case l.Memory < policy.MinMemory || l.Disk < policy.MinDisk || l.Processes < policy.MinProcesses || l.OpenFiles < policy.MinOpenFiles:
		t.Fatalf("lower went below a minimum: %+v", l)
	case l.PythonAddressSpace != 0 && (l.PythonAddressSpace < policy.MinPythonAddressSpace || l.PythonAddressSpace >= l.Memory):
		t.Fatalf("Python address-space cap %d with memory %d", l.PythonAddressSpace, l.Memory)
	case got.ExecTimeout.Default > got.ExecTimeout.Max || got.IdleTimeout > got.Lifetime:
		t.Fatalf("inconsistent timeouts: %+v, idle %v, lifetime %v", got.ExecTimeout, got.IdleTimeout, got.Lifetime)
	case l.UploadFile > l.UploadTotal || l.DownloadFile > l.DownloadTotal:
		t.Fatalf("per-file limit above its total: %+v", l)
	}
	// What was asked is what was set; what was not is the template's,
	// unless a lowered bound pulled it down to that bound.
	kept := func(name string, asked, out, template, bound int64) {
		switch {
		case asked != 0 && out != asked:
			t.Fatalf("%s: asked %d, got %d", name, asked, out)
		case asked == 0 && out != template && out != bound:
			t.Fatalf("%s: not asked, got %d, template %d, bound %d", name, out, template, bound)
		}
	}
	tl := tmpl.Limits
	kept("memory", o.Memory, l.Memory, tl.Memory, tl.Memory)
	kept("output", o.Output, l.Output, tl.Output, tl.Output)
	kept("upload_file", o.UploadFile, l.UploadFile, tl.UploadFile, l.UploadTotal)
	kept("download_file", o.DownloadFile, l.DownloadFile, tl.DownloadFile, l.DownloadTotal)
	kept("exec_timeout.default", int64(o.ExecTimeout.Default), int64(got.ExecTimeout.Default), int64(tmpl.ExecTimeout.Default), int64(got.ExecTimeout.Max))
	kept("idle_timeout", int64(o.IdleTimeout), int64(got.IdleTimeout), int64(tmpl.IdleTimeout), int64(got.Lifetime))
	if o.CPU != 0 && l.CPU != o.CPU || o.CPU == 0 && l.CPU != tl.CPU {
		t.Fatalf("cpu: asked %v, got %v, template %v", o.CPU, l.CPU, tl.CPU)
	}
}

// fuzzImages makes the figures an agent reports from a fuzz input: data
// cut at each '|', each piece's first byte choosing whether it is labelled
// image/png (even) and whether it gets the PNG signature (bit 1).
func fuzzImages(data []byte) []*sandboxv1.Image {
	var imgs []*sandboxv1.Image
	for _, piece := range bytes.Split(data, []byte("|")) {
		img := &sandboxv1.Image{MimeType: "image/svg+xml", Data: piece}
		if len(piece) > 0 {
			if piece[0]&1 == 0 {
				img.MimeType = "image/png"
			}
			if piece[0]&2 != 0 {
				img.Data = append([]byte(pngSignature), piece[1:]...)
			}
		}
		imgs = append(imgs, img)
	}
	return imgs
}

// FuzzSanitizeImages guarantees that whatever figures a hostile agent
// reports, the client gets at most limits.images.count of them and
// limits.images.bytes in all, each a PNG labelled image/png, in the
// agent's order, and is told (images_truncated) exactly when any was
// dropped.
func FuzzSanitizeImages(f *testing.F) {
	f.Add([]byte("\x02abc|\x02def"), uint8(8), uint32(1<<20))
	f.Add([]byte("\x02abc|\x02def|\x02ghi"), uint8(2), uint32(1<<20))
	f.Add([]byte("\x02"+strings.Repeat("x", 100)+"|\x02y"), uint8(8), uint32(50))
	f.Add([]byte("\x00<svg/>|\x03png-as-svg"), uint8(8), uint32(1<<20))
	f.Add([]byte("\x02a"), uint8(0), uint32(1<<20))
	f.Add([]byte(""), uint8(1), uint32(0))
	f.Fuzz(func(t *testing.T, data []byte, count uint8, size uint32) {
		limits := policy.ImageLimits{Count: int(count) % (policy.MaxImages + 1), Bytes: int64(size) % (policy.MaxImageBytes + 1)}
		in := fuzzImages(data)
		truncated := false
		out := sanitizeImages(in, limits, &truncated)
		if len(out) > limits.Count {
			t.Fatalf("%d figures kept, limit %d", len(out), limits.Count)
		}
		var total int64
		next := 0 // out must be a subsequence of in
		for _, img := range out {
			total += int64(len(img.Data))
			if img.MimeType != "image/png" || !bytes.HasPrefix(img.Data, []byte(pngSignature)) {
				t.Fatalf("kept a figure that is not a PNG: %q %q", img.MimeType, img.Data)
			}
			for next < len(in) && !bytes.Equal(in[next].Data, img.Data) {
				next++
			}
			if next == len(in) {
				t.Fatalf("kept a figure the agent did not send, or out of order: %q", img.Data)
			}
			next++
		}
		if total > limits.Bytes {
			t.Fatalf("%d bytes of figures kept, limit %d", total, limits.Bytes)
		}
		if truncated != (len(out) < len(in)) {
			t.Fatalf("images_truncated %v with %d of %d figures kept", truncated, len(out), len(in))
		}
	})
}

// FuzzSanitizeFiles guarantees that whatever files a hostile agent
// reports, the client gets at most MaxReportedFiles, each a clean absolute
// path under /workspace without NUL and of at most MaxPathLength bytes,
// with only permission bits in its mode, in the agent's order, and is told
// (files_truncated) exactly when any was dropped. The entries are the
// input's lines plus generated ones, to cross MaxReportedFiles.
func FuzzSanitizeFiles(f *testing.F) {
	f.Add("/workspace/a.csv\n/workspace/sub/b.png", uint16(0), uint32(0o100644))
	f.Add("/etc/passwd\n/workspace/../etc/passwd\nrelative\n/workspace\n/workspace/a\x00b\n/workspacex/a", uint16(0), uint32(0o4755))
	f.Add("/workspace/./a\n/workspace//b\n/workspace/c/", uint16(0), uint32(0xffffffff))
	f.Add("/workspace/x", uint16(MaxReportedFiles), uint32(0o644))
	f.Add("/workspace/"+strings.Repeat("a", identifiers.MaxPathLength), uint16(0), uint32(0o644))
	f.Fuzz(func(t *testing.T, data string, extra uint16, mode uint32) {
		var in []*sandboxv1.FileEntry
		for _, p := range strings.Split(data, "\n") {
			in = append(in, &sandboxv1.FileEntry{Path: p, Mode: mode, Size: int64(len(p))})
		}
		for i := range int(extra % (MaxReportedFiles + 100)) {
			in = append(in, &sandboxv1.FileEntry{Path: "/workspace/gen-" + strconv.Itoa(i), Mode: mode})
		}
		truncated := false
		out := sanitizeFiles(in, &truncated)
		if len(out) > MaxReportedFiles {
			t.Fatalf("%d files kept, more than %d", len(out), MaxReportedFiles)
		}
		next := 0
		for _, fe := range out {
			p := fe.Path
			if !strings.HasPrefix(p, identifiers.Workspace+"/") || path.Clean(p) != p || strings.ContainsRune(p, 0) || len(p) > identifiers.MaxPathLength {
				t.Fatalf("kept a file outside the workspace or not clean: %q", p)
			}
			if fe.Mode&^0o7777 != 0 {
				t.Fatalf("kept mode %#o of %q: more than permission bits", fe.Mode, p)
			}
			for next < len(in) && in[next].Path != p {
				next++
			}
			if next == len(in) {
				t.Fatalf("kept a file the agent did not report, or out of order: %q", p)
			}
			next++
		}
		if truncated != (len(out) < len(in)) {
			t.Fatalf("files_truncated %v with %d of %d files kept", truncated, len(out), len(in))
		}
	})
}

// FuzzClipOutput guarantees that however the agent cuts its output into
// stdout and stderr events, the client receives exactly the first
// limits.output bytes of it, each piece on the stream it came on, and the
// remaining budget goes negative exactly when the output was longer. Each
// byte of plan is one event: its low bit picks the stream, the rest its
// length, taken from data in turn.
func FuzzClipOutput(f *testing.F) {
	f.Add([]byte("abcdefghijklmnopqrstuvwxyz"), []byte{8, 9, 12, 5}, uint32(10))
	f.Add([]byte("1234"), []byte{8}, uint32(4))
	f.Add([]byte("x"), []byte{3, 0, 1}, uint32(0))
	f.Add([]byte(""), []byte{0, 1, 0}, uint32(1))
	f.Add(bytes.Repeat([]byte("y"), 1000), []byte{255, 254, 255, 254}, uint32(300))
	f.Fuzz(func(t *testing.T, data, plan []byte, budget uint32) {
		initial := int64(budget)
		left := initial
		var sent, got bytes.Buffer
		for _, p := range plan {
			if left < 0 {
				break // Exec stops the code and ends the stream here
			}
			n := min(int(p>>1), len(data))
			chunk := data[:n]
			data = data[n:]
			sent.Write(chunk)
			ev := stdout(string(chunk))
			if p&1 == 1 {
				ev = stderr(string(chunk))
			}
			var out *sandboxv1.ExecEvent
			out, left = clipOutput(ev, left)
			if out == nil {
				continue
			}
			_, isStderr := out.GetEvent().(*sandboxv1.ExecEvent_Stderr)
			if isStderr != (p&1 == 1) {
				t.Fatalf("an event of stream %d came out as %v", p&1, out)
			}
			got.Write(out.GetStdout())
			got.Write(out.GetStderr())
		}
		want := sent.Bytes()[:min(int64(sent.Len()), initial)]
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("budget %d, %d bytes sent: the client got %q, want %q", initial, sent.Len(), got.Bytes(), want)
		}
		if over := int64(sent.Len()) > initial; over != (left < 0) || !over && left != initial-int64(sent.Len()) {
			t.Fatalf("budget %d, %d bytes sent: %d left", initial, sent.Len(), left)
		}
	})
}
