package manager

import (
	"fmt"
	"math"
	"time"

	"github.com/sandboxd/sandboxd/policy"
	"github.com/sandboxd/sandboxd/runtime/errdefs"
)

// Limits are the limits of one sandbox: in Info, the ones it runs with; in
// a CreateRequest, overrides of its template's, where a zero field keeps
// the template's value and a set one may only lower it.
type Limits struct {
	policy.Limits
	ExecTimeout policy.ExecTimeout
	Lifetime    time.Duration
	IdleTimeout time.Duration
}

// limitsOf returns the limits of a template.
func limitsOf(t *policy.Template) Limits {
	return Limits{Limits: t.Limits, ExecTimeout: t.ExecTimeout, Lifetime: t.Lifetime, IdleTimeout: t.IdleTimeout}
}

// lower returns a copy of t with the overrides o applied, and whether a
// limit fixed at boot changed (then no pooled sandbox fits). It fails with
// InvalidArgument when an override is negative, raises a limit, or is
// below what a sandbox needs.
func lower(t *policy.Template, o Limits) (*policy.Template, bool, error) {
	out := *t
	l := &out.Limits
	c := overrideChecker{template: t.Name}
	if o.CPU != 0 {
		switch {
		case math.IsNaN(o.CPU) || o.CPU < 0:
			c.fail("limits.cpu", fmt.Sprintf("%g is not a positive number of cores", o.CPU))
		case o.CPU < policy.MinCPU:
			c.fail("limits.cpu", fmt.Sprintf("%g cores is below the kernel's smallest quota, %g", o.CPU, policy.MinCPU))
		case o.CPU > l.CPU:
			c.above("limits.cpu", "limits.cpu", fmt.Sprint(o.CPU), fmt.Sprint(l.CPU))
		default:
			l.CPU = o.CPU
		}
	}
	c.size("limits.memory_bytes", "limits.memory", o.Memory, &l.Memory, policy.MinMemory)
	c.size("limits.disk_bytes", "limits.disk", o.Disk, &l.Disk, policy.MinDisk)
	c.size("limits.file_size_bytes", "limits.file_size", o.FileSize, &l.FileSize, 1)
	c.size("limits.output_bytes", "limits.output", o.Output, &l.Output, 1)
	c.size("limits.upload_file_bytes", "limits.upload_file", o.UploadFile, &l.UploadFile, 1)
	c.size("limits.upload_total_bytes", "limits.upload_total", o.UploadTotal, &l.UploadTotal, 1)
	c.size("limits.download_file_bytes", "limits.download_file", o.DownloadFile, &l.DownloadFile, 1)
	c.size("limits.download_total_bytes", "limits.download_total", o.DownloadTotal, &l.DownloadTotal, 1)
	c.count("limits.processes", "limits.processes", o.Processes, &l.Processes, policy.MinProcesses)
	c.count("limits.open_files", "limits.open_files", o.OpenFiles, &l.OpenFiles, policy.MinOpenFiles)
	c.count("limits.images", "limits.images.count", o.Images.Count, &l.Images.Count, 1)
	c.size("limits.image_bytes", "limits.images.bytes", o.Images.Bytes, &l.Images.Bytes, 1)
	c.size("limits.egress_bytes", "limits.egress_bytes", o.EgressBytes, &l.EgressBytes, 1)
	c.count("limits.egress_connections", "limits.egress_connections", o.EgressConnections, &l.EgressConnections, 1)
	if as := o.PythonAddressSpace; as != 0 {
		if l.PythonAddressSpace == 0 {
			// No cap in the template: any cap lowers it.
			l.PythonAddressSpace = math.MaxInt64
		}
		c.size("limits.python_address_space_bytes", "limits.python_address_space", as, &l.PythonAddressSpace, policy.MinPythonAddressSpace)
	}
	c.duration("limits.exec_timeout_max", "exec_timeout.max", o.ExecTimeout.Max, &out.ExecTimeout.Max)
	c.duration("limits.exec_timeout_default", "exec_timeout.default", o.ExecTimeout.Default, &out.ExecTimeout.Default)
	c.duration("limits.lifetime", "lifetime", o.Lifetime, &out.Lifetime)
	c.duration("limits.idle_timeout", "idle_timeout", o.IdleTimeout, &out.IdleTimeout)
	if c.err != nil {
		return nil, false, c.err
	}

	// Keep the limits consistent: a lowered bound pulls down what must stay
	// below it, unless the request set both.
	if out.ExecTimeout.Default > out.ExecTimeout.Max {
		if o.ExecTimeout.Default != 0 {
			return nil, false, fmt.Errorf("limits.exec_timeout_default %s is above the exec timeout maximum %s: %w", out.ExecTimeout.Default, out.ExecTimeout.Max, errdefs.ErrInvalidArgument)
		}
		out.ExecTimeout.Default = out.ExecTimeout.Max
	}
	if out.IdleTimeout > out.Lifetime {
		if o.IdleTimeout != 0 {
			return nil, false, fmt.Errorf("limits.idle_timeout %s is above the lifetime %s: %w", out.IdleTimeout, out.Lifetime, errdefs.ErrInvalidArgument)
		}
		out.IdleTimeout = out.Lifetime
	}
	if l.UploadFile > l.UploadTotal {
		if o.UploadFile != 0 {
			return nil, false, fmt.Errorf("limits.upload_file_bytes %d is above upload_total %d: %w", l.UploadFile, l.UploadTotal, errdefs.ErrInvalidArgument)
		}
		l.UploadFile = l.UploadTotal
	}
	if l.DownloadFile > l.DownloadTotal {
		if o.DownloadFile != 0 {
			return nil, false, fmt.Errorf("limits.download_file_bytes %d is above download_total %d: %w", l.DownloadFile, l.DownloadTotal, errdefs.ErrInvalidArgument)
		}
		l.DownloadFile = l.DownloadTotal
	}
	if l.PythonAddressSpace != 0 && l.PythonAddressSpace >= l.Memory {
		return nil, false, fmt.Errorf("python address space cap %d is not below the memory limit %d, so the sandbox would be killed before Python raised MemoryError: lower limits.python_address_space_bytes too: %w",
			l.PythonAddressSpace, l.Memory, errdefs.ErrInvalidArgument)
	}
	atBoot := l.CPU != t.Limits.CPU || l.Memory != t.Limits.Memory || l.Disk != t.Limits.Disk ||
		l.FileSize != t.Limits.FileSize || l.Processes != t.Limits.Processes ||
		l.OpenFiles != t.Limits.OpenFiles || l.PythonAddressSpace != t.Limits.PythonAddressSpace
	return &out, atBoot, nil
}

// overrideChecker applies overrides one by one and keeps the first error.
type overrideChecker struct {
	template string
	err      error
}

func (c *overrideChecker) fail(field, why string) {
	if c.err == nil {
		c.err = fmt.Errorf("%s: %s: %w", field, why, errdefs.ErrInvalidArgument)
	}
}

func (c *overrideChecker) above(field, key, got, limit string) {
	c.fail(field, fmt.Sprintf("%s is above template %q's %s (policy %s): a request may only lower limits", got, c.template, limit, key))
}

func (c *overrideChecker) size(field, key string, v int64, dst *int64, least int64) {
	switch {
	case v == 0:
	case v < 0:
		c.fail(field, fmt.Sprintf("%d is negative", v))
	case v > *dst:
		c.above(field, key, fmt.Sprint(v), fmt.Sprint(*dst))
	case v < least:
		c.fail(field, fmt.Sprintf("%d is below the smallest allowed, %d", v, least))
	default:
		*dst = v
	}
}

func (c *overrideChecker) count(field, key string, v int, dst *int, least int) {
	v64, dst64 := int64(v), int64(*dst)
	c.size(field, key, v64, &dst64, int64(least))
	*dst = int(dst64)
}

func (c *overrideChecker) duration(field, key string, v time.Duration, dst *time.Duration) {
	switch {
	case v == 0:
	case v < 0:
		c.fail(field, fmt.Sprintf("%s is negative", v))
	case v > *dst:
		c.above(field, key, v.String(), dst.String())
	default:
		*dst = v
	}
}
