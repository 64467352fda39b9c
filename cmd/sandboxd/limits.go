package main

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"github.com/sandboxd/sandboxd/runtime/manager"
)

// limitsFromProto translates a request's limit overrides; the manager
// validates them. A nil message overrides nothing.
func limitsFromProto(l *sandboxv1.Limits) manager.Limits {
	var out manager.Limits
	if l == nil {
		return out
	}
	out.CPU = l.GetCpu()
	out.Memory = l.GetMemoryBytes()
	out.Disk = l.GetDiskBytes()
	out.Processes = clampInt(l.GetProcesses())
	out.OpenFiles = clampInt(l.GetOpenFiles())
	out.FileSize = l.GetFileSizeBytes()
	out.Output = l.GetOutputBytes()
	out.UploadFile = l.GetUploadFileBytes()
	out.UploadTotal = l.GetUploadTotalBytes()
	out.DownloadFile = l.GetDownloadFileBytes()
	out.DownloadTotal = l.GetDownloadTotalBytes()
	out.PythonAddressSpace = l.GetPythonAddressSpaceBytes()
	out.Images.Count = clampInt(l.GetImages())
	out.Images.Bytes = l.GetImageBytes()
	out.EgressBytes = l.GetEgressBytes()
	out.EgressConnections = clampInt(l.GetEgressConnections())
	out.ExecTimeout.Max = duration(l.GetExecTimeoutMax())
	out.ExecTimeout.Default = duration(l.GetExecTimeoutDefault())
	out.Lifetime = duration(l.GetLifetime())
	out.IdleTimeout = duration(l.GetIdleTimeout())
	return out
}

// duration converts a proto duration; an invalid one becomes negative so
// that validation rejects it.
func duration(d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	if d.CheckValid() != nil {
		return -1
	}
	return d.AsDuration()
}

// clampInt narrows v to an int, keeping its sign so validation sees an
// out-of-range value as such.
func clampInt(v int64) int {
	return int(max(min(v, int64(1<<31-1)), -1<<31))
}

func limitsToProto(l manager.Limits) *sandboxv1.Limits {
	return &sandboxv1.Limits{
		Cpu: l.CPU, MemoryBytes: l.Memory, DiskBytes: l.Disk,
		Processes: int64(l.Processes), OpenFiles: int64(l.OpenFiles), FileSizeBytes: l.FileSize,
		OutputBytes: l.Output, UploadFileBytes: l.UploadFile, UploadTotalBytes: l.UploadTotal,
		DownloadFileBytes: l.DownloadFile, DownloadTotalBytes: l.DownloadTotal,
		PythonAddressSpaceBytes: l.PythonAddressSpace,
		Images:                  int64(l.Images.Count), ImageBytes: l.Images.Bytes,
		EgressBytes: l.EgressBytes, EgressConnections: int64(l.EgressConnections),
		ExecTimeoutMax:     durationpb.New(l.ExecTimeout.Max),
		ExecTimeoutDefault: durationpb.New(l.ExecTimeout.Default),
		Lifetime:           durationpb.New(l.Lifetime),
		IdleTimeout:        durationpb.New(l.IdleTimeout),
	}
}

func usageToProto(u *manager.Usage) *sandboxv1.ResourceUsage {
	if u == nil {
		return nil
	}
	return &sandboxv1.ResourceUsage{CpuTime: durationpb.New(u.CPU), MemoryBytes: u.Memory}
}
