package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// leakDump collects, inside the sandbox, every readable file and symlink
// target under /proc and /sys (except memory images, per-thread copies and
// non-regular files such as /proc/gvisor/checkpoint, whose read blocks),
// the directory listings of both and of the places the daemon could have
// put files, and the kernel's environment, as JSON.
const leakDump = `
import json, stat
dump = {}
SKIP = {"mem", "pagemap", "kmsg", "kcore", "sysrq-trigger", "clear_refs"}

def read(p):
    try:
        with open(p, "rb") as f:
            dump[p] = f.read(1 << 20).decode("utf-8", "backslashreplace")
    except OSError:
        pass

def link(p):
    try:
        dump[p + " ->"] = os.readlink(p)
    except OSError:
        pass

def walk(top):
    for dp, dns, fns in os.walk(top):
        dump[dp + "/"] = "\n".join(sorted(dns + fns))
        for n in dns + fns:
            if os.path.islink(os.path.join(dp, n)):
                link(os.path.join(dp, n))
        dns[:] = [n for n in dns if n != "task" and not os.path.islink(os.path.join(dp, n))]
        for n in fns:
            p = os.path.join(dp, n)
            try:  # regular files only: /proc/gvisor/checkpoint, a device, blocks
                regular = stat.S_ISREG(os.lstat(p).st_mode)
            except OSError:
                regular = False
            if regular and n not in SKIP:
                read(p)

for p in CFG["must"]:
    read(p)
walk("/proc")
walk("/sys")
for top in ("/", "/.sandboxd", "/dev", "/tmp", "/run", "/var/run", "/workspace", "/home/sandbox"):
    try:
        dump[top + " (ls)"] = "\n".join(sorted(os.listdir(top)))
    except OSError:
        pass
for p in ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/etc/mtab"):
    read(p)
dump["python os.environ"] = json.dumps(dict(os.environ))
dump["python uname"] = " ".join(os.uname())
print(json.dumps(dump))
`

// hostCgroupParent returns the name of the host cgroup that holds sandbox
// id, found under /sys/fs/cgroup (v1 controller or v2), e.g.
// "sandboxd-0123456789".
func hostCgroupParent(t testing.TB, id string) string {
	t.Helper()
	for _, pattern := range []string{"/sys/fs/cgroup/*/sandboxd-*/" + id, "/sys/fs/cgroup/sandboxd-*/" + id} {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			return filepath.Base(filepath.Dir(m[0]))
		}
	}
	t.Fatalf("no host cgroup sandboxd-*/%s under /sys/fs/cgroup", id)
	return ""
}

// TestProcAndSysLeakNoHostDetails guarantees that sandboxed code reading
// everything it can under /proc and /sys (environ, cmdline, mountinfo,
// mounts, cgroup of PID 1 and of itself, every file under /sys/fs/cgroup,
// fd and cwd links), plus its environment in Python and in bash, finds
// nothing of the host: not the daemon's state, socket, rootfs, runsc or
// binaries directories, not /var/cache/sandboxd, not the host cgroup that
// holds the sandbox, not the sandbox's ID, not the host's addresses, and
// not a secret in the daemon's environment. The daemon then still serves.
func TestProcAndSysLeakNoHostDetails(t *testing.T) {
	secretName, secret := "SANDBOXD_E2E_SECRET_"+strings.ToUpper(randomHex(t, 4)), randomHex(t, 16)
	d := startDaemon(t, daemonOpts{env: []string{secretName + "=" + secret}})
	id := d.create(t)

	cwd, _ := os.Getwd()
	needles := map[string]string{
		"the state directory":      d.stateDir,
		"the socket directory":     filepath.Dir(d.socket),
		"the socket":               d.socket,
		"the rootfs":               os.Getenv("SANDBOXD_ROOTFS"),
		"the runsc binary":         os.Getenv("SANDBOXD_RUNSC"),
		"the binaries directory":   bins.dir,
		"the cache directory":      "/var/cache/sandboxd",
		"the host cgroup parent":   hostCgroupParent(t, id),
		"the sandbox ID":           id,
		"the secret's name":        secretName,
		"the secret":               secret,
		"the daemon's working dir": cwd,
	}
	for _, a := range nonLoopback(hostAddrs(t)) {
		needles["host address "+a] = a
	}
	for what, needle := range needles {
		if needle == "" {
			t.Fatalf("no value for %s", what)
		}
	}
	if h, err := os.Hostname(); err == nil && len(h) >= 6 && h != "sandbox" && h != "localhost" {
		needles["the host name"] = h
	}

	must := []string{"/proc/1/environ", "/proc/self/environ", "/proc/self/mountinfo", "/proc/mounts",
		"/proc/self/cgroup", "/proc/1/cgroup", "/proc/1/cmdline", "/proc/self/cmdline"}
	canary := "canary-" + randomHex(t, 8)
	r, err := d.tryRun(ctx(t), id, &sandboxv1.ExecRequest{
		Language: sandboxv1.Language_LANGUAGE_PYTHON, Timeout: durationpb.New(time.Minute),
		Env:  map[string]string{"LEAK_CANARY": canary},
		Code: pyWith(t, map[string]any{"must": must}, leakDump),
	})
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, r)
	dump := map[string]string{}
	if err := json.Unmarshal([]byte(r.stdout), &dump); err != nil {
		t.Fatalf("dump: %v\n%.2000s", err, r.stdout)
	}
	bashOut := sh(t, d, id, `env; echo; tr '\0' '\n' </proc/$$/environ; echo; tr '\0' ' ' </proc/$$/cmdline; echo; cat /proc/$$/cgroup /proc/$$/mountinfo; uname -a; hostname`)
	wantOK(t, bashOut)
	dump["bash env, environ, cmdline, cgroup, mountinfo, uname"] = bashOut.stdout

	// The dump must hold what the attack is about, or it proves nothing.
	// (/proc/1/environ may be unreadable: the agent, PID 1, can make itself
	// non-dumpable.)
	for _, p := range []string{"/proc/self/environ", "/proc/1/cmdline", "/proc/self/mountinfo", "/proc/mounts", "/proc/self/cgroup", "/proc/1/cgroup"} {
		if dump[p] == "" {
			t.Errorf("%s is empty or unreadable inside: the leak check would be vacuous", p)
		}
	}
	if _, ok := dump["/sys/fs/cgroup/"]; !ok {
		t.Errorf("/sys/fs/cgroup was not listed")
	}
	var files int
	for k := range dump {
		if strings.HasPrefix(k, "/proc/") && !strings.HasSuffix(k, "/") && !strings.HasSuffix(k, " ->") {
			files++
		}
	}
	if files < 100 {
		t.Errorf("only %d files read under /proc", files)
	}
	t.Logf("read %d entries (%d files under /proc); /proc/1/environ %q, /proc/1/cmdline %q, /proc/self/cgroup %q, /sys/fs/cgroup: %q",
		len(dump), files, dump["/proc/1/environ"], dump["/proc/1/cmdline"], dump["/proc/self/cgroup"], dump["/sys/fs/cgroup/"])
	t.Logf("/proc/self/mountinfo:\n%s", dump["/proc/self/mountinfo"])
	t.Logf("/proc/gvisor/: %q, spec_environ: %q", dump["/proc/gvisor/"], dump["/proc/gvisor/spec_environ"])

	// The search finds what is there: the canary given to this Exec.
	if found := leaks(dump, map[string]string{"the canary": canary}); len(found) == 0 {
		t.Errorf("the Exec's canary %q was not found in the dump: the search is broken", canary)
	}
	for _, leak := range leaks(dump, needles) {
		t.Error(leak)
	}
	wantServes(t, d, id)
}

// leaks returns where in dump (path names or contents) each needle occurs.
func leaks(dump, needles map[string]string) []string {
	keys := make([]string, 0, len(dump))
	for k := range dump {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var found []string
	for what, needle := range needles {
		for _, k := range keys {
			v := dump[k]
			if i := strings.Index(v, needle); i >= 0 {
				found = append(found, fmt.Sprintf("%s (%q) leaks in %s: ...%s...", what, needle, k, v[max(0, i-80):min(len(v), i+len(needle)+80)]))
			} else if strings.Contains(k, needle) {
				found = append(found, fmt.Sprintf("%s (%q) leaks in a path name: %s", what, needle, k))
			}
		}
	}
	return found
}
