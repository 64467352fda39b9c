package cgroups

import "testing"

// TestParseCgroupFiles guarantees the parsers read the v1 and v2 files
// that Stats, OOMKilled and OOMEvents use, with contents copied from real
// kernels.
func TestParseCgroupFiles(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		want uint64
	}{
		{"cpuacct.usage", "1004519842\n", 1004519842},
		{"memory.max_usage_in_bytes", "67108864\n", 64 << 20},
		{"pids.current", "23\n", 23},
		{"memory.peak", "0\n", 0},
	} {
		got, err := parseUint([]byte(tc.data))
		if err != nil || got != tc.want {
			t.Errorf("%s: parseUint = %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
	if _, err := parseUint([]byte("max\n")); err == nil {
		t.Error(`parseUint("max") succeeded`)
	}

	const (
		oomControl   = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"
		memoryEvents = "low 0\nhigh 0\nmax 112\noom 2\noom_kill 1\noom_group_kill 0\n"
		cpuStat      = "usage_usec 2003121\nuser_usec 1900000\nsystem_usec 103121\nnr_periods 20\nnr_throttled 19\nthrottled_usec 950123\n"
	)
	for _, tc := range []struct {
		name, data, key string
		want            uint64
	}{
		{"memory.oom_control", oomControl, "oom_kill", 3},
		{"memory.oom_control", oomControl, "oom_kill_disable", 0},
		{"memory.events", memoryEvents, "oom_kill", 1},
		{"memory.events", memoryEvents, "oom", 2},
		{"cpu.stat", cpuStat, "usage_usec", 2003121},
		{"cpu.stat", cpuStat, "throttled_usec", 950123},
	} {
		got, err := parseKey([]byte(tc.data), tc.key)
		if err != nil || got != tc.want {
			t.Errorf("%s %s: parseKey = %d, %v; want %d", tc.name, tc.key, got, err, tc.want)
		}
	}
	// Kernels before 4.13 have no oom_kill line; that is an error, not 0.
	if _, err := parseKey([]byte("oom_kill_disable 0\nunder_oom 0\n"), "oom_kill"); err == nil {
		t.Error("parseKey found oom_kill in a file without it")
	}
	// A key must match whole: "oom" is not "oom_kill".
	if got, _ := parseKey([]byte("oom_kill 5\noom 1\n"), "oom"); got != 1 {
		t.Errorf("parseKey(oom) = %d, want 1", got)
	}
}

// TestInCgroup guarantees Kill's membership check reads /proc/<pid>/cgroup
// of v1 (hybrid) and v2 hosts and matches whole path elements only.
func TestInCgroup(t *testing.T) {
	const (
		hybrid = "9:name=systemd:/\n8:pids:/sandboxd/sb-1\n4:memory:/sandboxd/sb-1\n1:cpu:/\n0::/\n"
		v2     = "0::/sandboxd/sb-1\n"
		nested = "0::/sandboxd/sb-1/sub\n"
	)
	for _, tc := range []struct {
		data, path string
		want       bool
	}{
		{hybrid, "/sandboxd/sb-1", true},
		{v2, "/sandboxd/sb-1", true},
		{nested, "/sandboxd/sb-1", true},
		{hybrid, "/sandboxd/sb-2", false},
		{v2, "/sandboxd/sb-", false},
		{"0::/\n", "/sandboxd/sb-1", false},
	} {
		if got := inCgroup([]byte(tc.data), tc.path); got != tc.want {
			t.Errorf("inCgroup(%q, %q) = %v, want %v", tc.data, tc.path, got, tc.want)
		}
	}
}
