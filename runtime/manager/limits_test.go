package manager

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/policy"
	"github.com/sandboxd/sandboxd/runtime/errdefs"
)

// TestLowerOnlyLowersLimits guarantees that request overrides can lower a
// template's limits and never raise them, that bad values are
// InvalidArgument naming the field, that dependent limits follow a lowered
// bound, and that only boot-time limits make the request skip the pool.
func TestLowerOnlyLowersLimits(t *testing.T) {
	tmpl, err := policy.Default().Template("python")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		o       Limits
		atBoot  bool
		errFrag string // empty: must succeed
		check   func(*policy.Template) bool
	}{
		{name: "nothing", o: Limits{}, check: func(t *policy.Template) bool { return t.Limits == tmpl.Limits }},
		{name: "lower memory", o: Limits{Limits: policy.Limits{Memory: 512 << 20}}, atBoot: true,
			check: func(t *policy.Template) bool { return t.Limits.Memory == 512<<20 && t.Limits.CPU == tmpl.Limits.CPU }},
		{name: "lower cpu", o: Limits{Limits: policy.Limits{CPU: 0.5}}, atBoot: true,
			check: func(t *policy.Template) bool { return t.Limits.CPU == 0.5 }},
		{name: "lower output keeps the pool", o: Limits{Limits: policy.Limits{Output: 1 << 20}},
			check: func(t *policy.Template) bool { return t.Limits.Output == 1<<20 }},
		{name: "exec max pulls the default down", o: Limits{ExecTimeout: policy.ExecTimeout{Max: 5 * time.Second}},
			check: func(t *policy.Template) bool {
				return t.ExecTimeout.Max == 5*time.Second && t.ExecTimeout.Default == 5*time.Second
			}},
		{name: "lifetime pulls idle down", o: Limits{Lifetime: time.Minute},
			check: func(t *policy.Template) bool { return t.Lifetime == time.Minute && t.IdleTimeout == time.Minute }},
		{name: "upload_total pulls upload_file down", o: Limits{Limits: policy.Limits{UploadTotal: 1 << 20}},
			check: func(t *policy.Template) bool { return t.Limits.UploadFile == 1<<20 }},
		{name: "python cap where the template has none", o: Limits{Limits: policy.Limits{PythonAddressSpace: 768 << 20}}, atBoot: true,
			check: func(t *policy.Template) bool { return t.Limits.PythonAddressSpace == 768<<20 }},
		{name: "raise memory", o: Limits{Limits: policy.Limits{Memory: 2 << 30}}, errFrag: `limits.memory_bytes: 2147483648 is above template "python"'s 1073741824 (policy limits.memory)`},
		{name: "raise cpu", o: Limits{Limits: policy.Limits{CPU: 4}}, errFrag: "limits.cpu: 4 is above"},
		{name: "raise exec max", o: Limits{ExecTimeout: policy.ExecTimeout{Max: time.Hour}}, errFrag: "limits.exec_timeout_max: 1h0m0s is above"},
		{name: "negative disk", o: Limits{Limits: policy.Limits{Disk: -1}}, errFrag: "limits.disk_bytes: -1 is negative"},
		{name: "memory below minimum", o: Limits{Limits: policy.Limits{Memory: 1 << 20}}, errFrag: "below the smallest allowed"},
		{name: "cpu below the kernel's quota", o: Limits{Limits: policy.Limits{CPU: 0.001}}, errFrag: "below the kernel's smallest quota"},
		{name: "egress caps lowered, no boot", o: Limits{Limits: policy.Limits{EgressBytes: 1 << 20, EgressConnections: 2}},
			check: func(t *policy.Template) bool { return t.Limits.EgressBytes == 1<<20 && t.Limits.EgressConnections == 2 }},
		{name: "raise egress bytes", o: Limits{Limits: policy.Limits{EgressBytes: 2 << 30}}, errFrag: "limits.egress_bytes: 2147483648 is above"},
		{name: "images lowered, no boot", o: Limits{Limits: policy.Limits{Images: policy.ImageLimits{Count: 2, Bytes: 1 << 20}}},
			check: func(t *policy.Template) bool { return t.Limits.Images == policy.ImageLimits{Count: 2, Bytes: 1 << 20} }},
		{name: "processes below minimum", o: Limits{Limits: policy.Limits{Processes: 1}}, errFrag: "limits.processes: 1 is below"},
		{name: "python cap not below memory", o: Limits{Limits: policy.Limits{Memory: 256 << 20, PythonAddressSpace: 512 << 20}}, errFrag: "not below the memory limit"},
		{name: "default above max", o: Limits{ExecTimeout: policy.ExecTimeout{Max: 5 * time.Second, Default: 10 * time.Second}}, errFrag: "above the exec timeout maximum"},
	} {
		got, atBoot, err := lower(tmpl, tc.o)
		if tc.errFrag != "" {
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.errFrag) {
				t.Errorf("%s: err %v, want InvalidArgument containing %q", tc.name, err, tc.errFrag)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if atBoot != tc.atBoot || !tc.check(got) {
			t.Errorf("%s: atBoot %v (want %v), template %+v", tc.name, atBoot, tc.atBoot, got)
		}
	}
	if tmpl.Limits.Memory != policy.DefaultMemory {
		t.Fatal("lower changed the policy's template")
	}
}
