// Package cgroups creates and owns one cgroup per sandbox: CPU, memory and
// pids limits, OOM-kill reporting, usage statistics, killing and removal.
//
// gVisor is the isolation boundary; these cgroups are the resource limits
// around it. runsc uses a cgroup only when the OCI spec sets
// linux.cgroupsPath (Group.Path): it then moves its gofer and sentry into
// it and sizes the sentry's memory and CPU count from it. On cgroup v1 it
// uses pre-created controller directories as they are ("managed by
// caller") and never writes or removes them, so creating them here costs
// the sandbox's boot nothing. On cgroup v2 runsc starts its processes in
// the group with CLONE_INTO_CGROUP.
//
// gVisor has no OOM killer of its own: a sandbox over its memory limit is
// killed whole by the host, which the daemon learns from OOMEvents or,
// after the fact, OOMKilled.
//
// The host's mode is detected at run time: unified hosts use v2, legacy
// and hybrid hosts (v1 controllers, an empty cgroup2 mount beside them)
// use v1.
package cgroups
