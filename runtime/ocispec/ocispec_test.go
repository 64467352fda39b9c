package ocispec

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func valid() Params {
	return Params{RootfsDir: "/var/cache/sandboxd/rootfs/x", AgentBinary: "/usr/lib/sandboxd/agent"}
}

// TestSpecDropsAllPrivilege guarantees that sandboxed code runs as a
// non-root user with no capabilities and no way to gain privileges.
func TestSpecDropsAllPrivilege(t *testing.T) {
	s, err := Build(valid())
	if err != nil {
		t.Fatal(err)
	}
	p := s.Process
	if p.User.UID == 0 || p.User.GID == 0 || p.User.UID != SandboxUID {
		t.Fatalf("user %+v, want uid/gid %d", p.User, SandboxUID)
	}
	if len(p.User.AdditionalGids) != 0 {
		t.Fatalf("extra groups %v", p.User.AdditionalGids)
	}
	c := p.Capabilities
	for name, set := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "inheritable": c.Inheritable, "permitted": c.Permitted, "ambient": c.Ambient} {
		if set == nil || len(set) != 0 {
			t.Errorf("%s capabilities = %v, want an explicit empty set", name, set)
		}
	}
	if !p.NoNewPrivileges {
		t.Error("no_new_privileges is off")
	}
	if p.Terminal {
		t.Error("terminal is on")
	}
}

// TestSpecKeepsHostRootfsUntouched guarantees the root is the shared rootfs
// and is not marked read-only (which would disable gVisor's overlay and so
// the per-sandbox writable layer).
func TestSpecKeepsHostRootfsUntouched(t *testing.T) {
	s, _ := Build(valid())
	if s.Root.Path != valid().RootfsDir || s.Root.Readonly {
		t.Fatalf("root %+v", s.Root)
	}
}

// TestSpecMountsOnlyTheAgentFromTheHost guarantees that the only bind mount
// is the agent binary, read-only, and that it cannot be used to gain
// privileges (nosuid).
func TestSpecMountsOnlyTheAgentFromTheHost(t *testing.T) {
	s, _ := Build(valid())
	var binds []specs.Mount
	for _, m := range s.Mounts {
		if m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind") {
			binds = append(binds, m)
		}
	}
	if len(binds) != 1 {
		t.Fatalf("bind mounts %+v, want only the agent", binds)
	}
	b := binds[0]
	if b.Source != valid().AgentBinary || b.Destination != AgentPath || !slices.Contains(b.Options, "ro") || !slices.Contains(b.Options, "nosuid") {
		t.Fatalf("agent mount %+v", b)
	}
	if s.Process.Args[0] != AgentPath || len(s.Process.Args) != 1 {
		t.Fatalf("args %v", s.Process.Args)
	}
}

// TestSpecRlimits guarantees core dumps are off and the process, file and
// file-size limits are set, from defaults or parameters.
func TestSpecRlimits(t *testing.T) {
	cases := []struct {
		name string
		p    func(*Params)
		want map[string]uint64
	}{
		{"defaults", func(*Params) {}, map[string]uint64{"RLIMIT_CORE": 0, "RLIMIT_NOFILE": DefaultOpenFiles, "RLIMIT_NPROC": DefaultProcesses + AgentProcessReserve, "RLIMIT_FSIZE": DefaultFileSize}},
		{"overrides", func(p *Params) { p.OpenFiles, p.Processes, p.FileSize = 64, 32, 1<<20 }, map[string]uint64{"RLIMIT_CORE": 0, "RLIMIT_NOFILE": 64, "RLIMIT_NPROC": 32 + AgentProcessReserve, "RLIMIT_FSIZE": 1 << 20}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := valid()
			c.p(&p)
			s, _ := Build(p)
			got := map[string]uint64{}
			for _, r := range s.Process.Rlimits {
				if r.Soft != r.Hard {
					t.Errorf("%s soft %d != hard %d: code could raise it", r.Type, r.Soft, r.Hard)
				}
				got[r.Type] = r.Hard
			}
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("%s = %d, want %d", k, got[k], v)
				}
			}
		})
	}
}

// TestSpecEnvironmentHasNoHostState guarantees the environment is the fixed
// base plus the template's variables, nothing inherited from the daemon.
func TestSpecEnvironmentHasNoHostState(t *testing.T) {
	t.Setenv("SANDBOXD_SECRET", "hunter2")
	p := valid()
	p.Env = map[string]string{"FOO": "bar", "LANG": "de_DE.UTF-8"}
	s, _ := Build(p)
	joined := strings.Join(s.Process.Env, "\n")
	if strings.Contains(joined, "hunter2") {
		t.Fatal("daemon environment leaked into the sandbox")
	}
	for _, want := range []string{"FOO=bar", "LANG=de_DE.UTF-8", "HOME=/home/sandbox", "MPLBACKEND=Agg"} {
		if !slices.Contains(s.Process.Env, want) {
			t.Errorf("env lacks %q: %v", want, s.Process.Env)
		}
	}
	if strings.Count(joined, "LANG=") != 1 {
		t.Errorf("LANG set twice: %v", s.Process.Env)
	}
	if s.Hostname != Hostname || s.Process.Cwd != Workspace {
		t.Errorf("hostname %q cwd %q", s.Hostname, s.Process.Cwd)
	}
}

// TestSpecProxyEnvironmentOnlyWithEgress guarantees that a sandbox with
// egress sends every HTTP client through the agent's proxy (both spellings
// of each variable, loopback direct), and that one without egress gets
// none of these variables, so no client there expects a proxy.
func TestSpecProxyEnvironmentOnlyWithEgress(t *testing.T) {
	proxyVars := []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy"}
	s, _ := Build(valid())
	for _, kv := range s.Process.Env {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(proxyVars, k) {
			t.Errorf("a sandbox without egress has %q", kv)
		}
	}
	p := valid()
	p.EgressProxy = "127.0.0.1:3128"
	s, _ = Build(p)
	for _, want := range []string{
		"HTTP_PROXY=http://127.0.0.1:3128", "HTTPS_PROXY=http://127.0.0.1:3128",
		"http_proxy=http://127.0.0.1:3128", "https_proxy=http://127.0.0.1:3128",
		"NO_PROXY=localhost,127.0.0.1", "no_proxy=localhost,127.0.0.1", "HOME=/home/sandbox",
	} {
		if !slices.Contains(s.Process.Env, want) {
			t.Errorf("env lacks %q: %v", want, s.Process.Env)
		}
	}
	if !slices.IsSorted(s.Process.Env) {
		t.Errorf("env is not sorted: %v", s.Process.Env)
	}
}

// TestSpecRejectsRelativePaths guarantees that host paths in the spec are
// absolute, so they cannot depend on the daemon's working directory.
func TestSpecRejectsRelativePaths(t *testing.T) {
	for _, p := range []Params{{RootfsDir: "rootfs", AgentBinary: "/a"}, {RootfsDir: "/r", AgentBinary: "bin/agent"}} {
		if _, err := Build(p); err == nil {
			t.Errorf("Build(%+v) succeeded", p)
		}
	}
}

// TestSpecIsolatesNamespaces guarantees the sandbox gets its own pid,
// network, ipc, uts and mount namespaces.
func TestSpecIsolatesNamespaces(t *testing.T) {
	s, _ := Build(valid())
	var got []string
	for _, ns := range s.Linux.Namespaces {
		if ns.Path != "" {
			t.Errorf("namespace %s joins %s", ns.Type, ns.Path)
		}
		got = append(got, string(ns.Type))
	}
	for _, want := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace} {
		if !slices.Contains(got, string(want)) {
			t.Errorf("missing %s namespace", want)
		}
	}
}

// TestSpecCapsTmp guarantees /tmp is an explicit, size-capped tmpfs: without
// it gVisor mounts an uncapped one.
func TestSpecCapsTmp(t *testing.T) {
	for _, c := range []struct{ size, want uint64 }{{0, DefaultTmpSize}, {64 << 20, 64 << 20}} {
		p := valid()
		p.TmpSize = c.size
		s, _ := Build(p)
		var tmp *specs.Mount
		for i, m := range s.Mounts {
			if m.Destination == "/tmp" {
				tmp = &s.Mounts[i]
			}
		}
		if tmp == nil || tmp.Type != "tmpfs" || !slices.Contains(tmp.Options, fmt.Sprintf("size=%d", c.want)) {
			t.Fatalf("TmpSize %d: /tmp mount %+v", c.size, tmp)
		}
	}
}

// TestSpecJoinsTheSandboxCgroup guarantees that the cgroup holding the
// sandbox's limits reaches runsc.
func TestSpecJoinsTheSandboxCgroup(t *testing.T) {
	p := valid()
	p.CgroupsPath = "/sandboxd-x/sb-1"
	s, _ := Build(p)
	if s.Linux.CgroupsPath != p.CgroupsPath {
		t.Fatalf("cgroupsPath %q", s.Linux.CgroupsPath)
	}
}

// BenchmarkBuild measures building a sandbox's spec, done once per boot.
func BenchmarkBuild(b *testing.B) {
	p := valid()
	p.Env = map[string]string{"A": "1", "B": "2"}
	for b.Loop() {
		if _, err := Build(p); err != nil {
			b.Fatal(err)
		}
	}
}
